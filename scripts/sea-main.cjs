// The main script of every single executable: runs the integration's bundle with the V8 code cache recorded at build time.
//
// The bundle (SEA asset `bundle.cjs`) is compiled with the cache of a warm-up start (SEA asset `bundle.cache`, made by
// scripts/build-sea.ts makeCodeCache on the build machine's Node of the same version and with the same V8 flags), so
// the functions a start runs are deserialized instead of parsed and compiled. Node's own SEA code cache (`useCodeCache`)
// only holds the top-level function: every module of an esbuild bundle is a lazy function that it leaves out. V8 checks
// the cache (V8 version, flags, source) and silently compiles from source when it does not match, e.g. when
// NODE_OPTIONS adds V8 flags. An executable built for another platform has no cache.
//
// At build time the same file runs under plain Node to record the cache: KLOSET_TS_CODE_CACHE_BUNDLE names the bundle,
// KLOSET_TS_CODE_CACHE_IN an earlier cache to start from (one warm-up per connector kind, chained),
// KLOSET_TS_CODE_CACHE_OUT where to write the cache when the process exits. Inside an executable these are ignored.
'use strict';
const { Script } = require('node:vm');
const sea = require('node:sea');

/** Same parameters as Node's CommonJS wrapper; the source length (part of V8's cache check) must match at build time. */
const HEAD = '(function (exports, require, module, __filename, __dirname) {';
const TAIL = '\n})';

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
  const { readFileSync, writeFileSync } = require('node:fs');
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

const script = new Script(HEAD + source + TAIL, { filename: __filename, cachedData });
// What became of the cache, for the debug log (shared/entry.ts).
globalThis[Symbol.for('kloset-ts.code-cache')] =
  cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'accepted';
if (record) record(script);
script.runInThisContext()(exports, require, module, __filename, __dirname);
