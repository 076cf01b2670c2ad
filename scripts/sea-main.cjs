// The main script of every single executable: runs the integration's bundle with the V8 code cache recorded at build time.
//
// The bundle (SEA asset `bundle.cjs`) is compiled with the cache of a warm-up start (SEA asset `bundle.cache`, made by
// scripts/build-sea.ts makeCodeCache on the build machine's Node of the same version and with the same V8 flags), so
// the functions a start runs are deserialized instead of parsed and compiled. Node's own SEA code cache (`useCodeCache`)
// only holds the top-level function: every module of an esbuild bundle is a lazy function that it leaves out. V8 checks
// the cache (V8 version, flags, source) and silently compiles from source when it does not match, e.g. when
// NODE_OPTIONS adds V8 flags. An executable built for another platform has no cache.
//
// For the build machine's platform the executable also starts from a V8 startup snapshot (`useSnapshot`) in which this
// file only registers `run` as the function to call after deserialization: nothing else is evaluated at build time, so
// no state of the bundle or of a built-in module is frozen into the executable. What the snapshot brings is Node's
// code cache for its own built-in modules, made with the executables' V8 flags: Node's shipped one is refused under
// them (`--initial-old-space-size`), and compiling http2, tls, crypto, streams… from source was most of a start.
//
// At build time the same file runs under plain Node to record the cache: KLOSET_TS_CODE_CACHE_BUNDLE names the bundle,
// KLOSET_TS_CODE_CACHE_IN an earlier cache to start from (one warm-up per connector kind, chained),
// KLOSET_TS_CODE_CACHE_OUT where to write the cache when the process exits. Inside an executable these are ignored.
'use strict';
const { startupSnapshot } = require('node:v8');

/** Same parameters as Node's CommonJS wrapper; the source length (part of V8's cache check) must match at build time. */
const HEAD = '(function (exports, require, module, __filename, __dirname) {';
const TAIL = '\n})';

/** Runs the bundle as the executable's main module (`require` only resolves built-in modules, as in any executable). */
function run(requireBuiltin, mainModule, filename, dirname) {
  const { Script } = requireBuiltin('node:vm');
  const sea = requireBuiltin('node:sea');
  let source;
  let cachedData;
  let record;
  if (sea.isSea()) {
    source = Buffer.from(sea.getRawAsset('bundle.cjs')).toString('utf8');
    try {
      cachedData = new Uint8Array(sea.getRawAsset('bundle.cache'));
    } catch {
      // Built for another platform: no cache.
    }
  } else {
    const { readFileSync, writeFileSync } = requireBuiltin('node:fs');
    const bundle = process.env.KLOSET_TS_CODE_CACHE_BUNDLE;
    const out = process.env.KLOSET_TS_CODE_CACHE_OUT;
    const from = process.env.KLOSET_TS_CODE_CACHE_IN;
    if (!bundle || !out) {
      throw new Error('sea-main.cjs is the main script of a single executable (at build time it needs KLOSET_TS_CODE_CACHE_BUNDLE and KLOSET_TS_CODE_CACHE_OUT)');
    }
    source = readFileSync(bundle, 'utf8');
    if (from) cachedData = readFileSync(from);
    record = (script) => process.on('exit', () => writeFileSync(out, script.createCachedData()));
  }

  const script = new Script(HEAD + source + TAIL, { filename, cachedData });
  // What became of the cache, for the debug log (shared/entry.ts).
  globalThis[Symbol.for('kloset-ts.code-cache')] =
    cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'accepted';
  if (record) record(script);
  script.runInThisContext()(mainModule.exports, requireBuiltin, mainModule, filename, dirname);
}

if (startupSnapshot.isBuildingSnapshot()) {
  // Snapshot builder (build time): only `require`, `__filename` and `__dirname` exist here, and `__filename` is this
  // file on the build machine; at run time the main module is the executable, as without a snapshot.
  startupSnapshot.setDeserializeMainFunction(() => {
    const { dirname } = require('node:path');
    run(require, { exports: {}, filename: process.execPath }, process.execPath, dirname(process.execPath));
  });
} else {
  run(require, module, __filename, __dirname);
}
