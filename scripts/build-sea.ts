// The three steps of a Node single executable: esbuild bundle, SEA blob, postject injection; plus format checks.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stripVTControlCharacters } from 'node:util';
import * as esbuild from 'esbuild';
import {
  renderEntry,
  SEA_FUSE,
  SEA_MACHO_SEGMENT,
  SEA_RESOURCE,
  type Target,
} from './build-lib.ts';
import { run } from './build-runtime.ts';

/** A bundle written to disk, with its content hash (the bundle is deterministic, the blob is not). */
export interface Bundle {
  readonly file: string;
  /** The bundle's bytes (what goes into the executable, whatever later happens to `file`). */
  readonly text: Buffer;
  readonly sha256: string;
  readonly bytes: number;
  readonly warnings: readonly string[];
}

/**
 * Built-in modules that a dependency loads when it is evaluated but uses only inside functions an executable's start
 * never reaches, per package: in its modules they are bound to a stand-in that loads the built-in on first use.
 * Compiling a built-in is a real part of a start here: the executables' V8 flags make V8 refuse Node's own code cache
 * for built-ins, so each one is parsed and compiled from source.
 *
 * grpc-js: `zlib` for compressed messages (Plakar's host does not compress), `dns` for a client's name resolution.
 */
export const LAZY_BUILTINS: Readonly<Record<string, readonly string[]>> = {
  '@grpc/grpc-js': ['zlib', 'dns'],
};

/** The stand-in for built-in `name`: a proxy that loads the module the first time anything of it is used. */
function lazyBuiltinSource(name: string): string {
  return [
    `let loaded;`,
    `const load = () => (loaded ??= require(${JSON.stringify(`node:${name}`)}));`,
    `module.exports = new Proxy({}, {`,
    `  get: (_, key) => load()[key],`,
    `  set: (_, key, value) => Reflect.set(load(), key, value),`,
    `  has: (_, key) => key in load(),`,
    `  ownKeys: () => Reflect.ownKeys(load()),`,
    `  getOwnPropertyDescriptor: (_, key) => {`,
    `    const d = Reflect.getOwnPropertyDescriptor(load(), key);`,
    `    return d && { ...d, configurable: true };`,
    `  },`,
    `});`,
    ``,
  ].join('\n');
}

/** The esbuild plugin applying {@link LAZY_BUILTINS}. */
const lazyBuiltins: esbuild.Plugin = {
  name: 'kloset-lazy-builtins',
  setup(build) {
    const names = [...new Set(Object.values(LAZY_BUILTINS).flat())];
    const filter = new RegExp(`^(node:)?(${names.join('|')})$`);
    build.onResolve({ filter }, (args) => {
      const name = args.path.replace(/^node:/, '');
      const importer = args.importer.replaceAll('\\', '/');
      const lazy = Object.entries(LAZY_BUILTINS).some(
        ([pkg, builtins]) => builtins.includes(name) && importer.includes(`/node_modules/${pkg}/`),
      );
      return lazy ? { path: name, namespace: 'kloset-lazy-builtin' } : undefined;
    });
    build.onLoad({ filter: /.*/, namespace: 'kloset-lazy-builtin' }, (args) => ({
      contents: lazyBuiltinSource(args.path),
      loader: 'js',
    }));
  },
};

/**
 * Packages bundled from their ES module build (package.json `module`) instead of their CommonJS one (`main`), when
 * they have no `exports` map (with one, esbuild's conditions already choose). The AWS SDK's CommonJS builds are one
 * file per package, so the bundle held every S3 command and everything `@aws-sdk/core` exports, and its ESM side
 * copied every export of each (esbuild's CommonJS interop); their ES builds (the ones bundlers are meant to use, marked
 * free of side effects) let esbuild keep only what the integration uses: the s3 bundle is ~15% smaller and starts
 * ~10% faster. Same sources, same Node runtime configuration (the `browser` field is not applied for Node).
 */
export const ESM_PACKAGES = /^@(aws-sdk|smithy)\/[^/]+$/;

/** The esbuild plugin applying {@link ESM_PACKAGES}. */
const esmPackages: esbuild.Plugin = {
  name: 'kloset-esm-packages',
  setup(build) {
    build.onResolve({ filter: ESM_PACKAGES }, async (args) => {
      const manifest = await build.resolve(`${args.path}/package.json`, {
        kind: args.kind,
        resolveDir: args.resolveDir,
      });
      if (manifest.errors.length > 0 || !manifest.path) return undefined;
      const pkg = JSON.parse(await readFile(manifest.path, 'utf8')) as { exports?: unknown; module?: unknown };
      if (pkg.exports !== undefined || typeof pkg.module !== 'string') return undefined;
      return { path: join(dirname(manifest.path), pkg.module) };
    });
  },
};

/**
 * Bundles one integration with its generated entry into a single CommonJS file for Node 24.
 *
 * Everything is bundled (a SEA's `require` only resolves built-ins). `import.meta.url`/`dirname`/`filename` are
 * mapped to the CommonJS equivalents, which in a SEA point at the executable itself; without this they would be
 * `undefined` in a CJS bundle.
 */
export async function bundleIntegration(opts: {
  root: string;
  integrationFile: string;
  name: string;
  outFile: string;
  minify: boolean;
}): Promise<Bundle> {
  await mkdir(dirname(opts.outFile), { recursive: true });
  const result = await esbuild.build({
    stdin: {
      contents: renderEntry(opts.root, opts.integrationFile),
      resolveDir: opts.root,
      sourcefile: `entry-${opts.name}.ts`,
      loader: 'ts',
    },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    // Identifiers are not minified, so functions and classes keep their own names without esbuild's keepNames, which
    // wraps every function and class expression in a __name() call redefining `.name`: in closures made per message
    // that is a defineProperty each time (a profile of an imap backup of 50,000 messages: ~1.9 s of ~20 s of importer
    // CPU, in imapflow's response parsing; bench/imap.ts, 50,000 messages with every body read: 0.73 → 0.54 ms of CPU
    // per message, 1,246 → 1,618 messages/s). Dependencies read names at run time (the AWS SDK compares
    // `constructor.name` with "NoOpLogger", node-fetch's errors are named by their class, smithy's error instanceof
    // falls back on names), so minified identifiers would change behaviour; keeping them costs ~0.4 MB per bundle. The
    // only names that change are those esbuild renames to avoid a clash between modules (`AccessDeniedException2`); the
    // SDK's error classes name themselves (shared/errors.ts).
    minifyWhitespace: opts.minify,
    minifySyntax: opts.minify,
    keepNames: false,
    legalComments: 'none',
    define: {
      'import.meta.url': '__kloset_import_meta_url',
      'import.meta.dirname': '__dirname',
      'import.meta.filename': '__filename',
    },
    banner: {
      js: 'var __kloset_import_meta_url = require("node:url").pathToFileURL(__filename).href;',
    },
    // The bundle runs in a vm.Script (scripts/sea-main.cjs), which has no dynamic import(): the few import()s of
    // built-ins in dependencies (AWS SDK's EC2 metadata lookup, googleapis's randomUUID fallback) become require()s.
    supported: { 'dynamic-import': false },
    plugins: [lazyBuiltins, esmPackages],
    outfile: opts.outFile,
    logLevel: 'silent',
    write: false,
  });
  const warnings = await esbuild.formatMessages(result.warnings, { kind: 'warning', color: false });
  const text = Buffer.from(result.outputFiles[0]?.contents ?? new Uint8Array());
  if (text.length === 0) throw new Error(`esbuild produced no output for ${opts.name}`);
  // Written aside and renamed, so a concurrent build never reads a half-written bundle.
  const tmp = `${opts.outFile}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  await rename(tmp, opts.outFile);
  return {
    file: opts.outFile,
    text,
    sha256: createHash('sha256').update(text).digest('hex'),
    bytes: text.length,
    warnings,
  };
}

/**
 * V8 flags every executable starts with (Node ≥ 24.6 reads `execArgv` from the SEA configuration).
 *
 * Streamed bytes live in Buffers whose memory is outside the JavaScript heap but counts against the old generation's
 * allocation limit until a GC frees them. With V8's defaults the young generation is large (16–32 MiB semi-spaces),
 * so scavenges are rare, dead Buffers pile up and peak RSS grows; with a small young generation alone the old
 * generation's limit stays near the tiny live heap (~20 MiB), so a few MiB of Buffers in flight (upload parts, HTTP/2
 * queues) start a full mark-compact every few MiB moved (≈150 per GiB, measured). A 1 MiB semi-space frees
 * short-lived Buffers at frequent, cheap scavenges, and a floor for the old generation leaves room for the Buffers
 * that do live longer. The floor trades CPU for memory (512 MiB s3 Put + Get through the Go host; exporting then
 * importing a 2 GiB object, peak RSS over several runs, limit 200 MB):
 *   no floor: ~150 full GCs, plugin CPU 6.1–8.0 s (Put, Content-MD5 then still computed) and 4.5–5.1 s (Get);
 *   32 MiB:   ~90–120 full GCs, Get CPU barely better; 2 GiB exporter 157–165 MB;
 *   48 MiB:   ~40 full GCs, Put 2.7–3.0 s, Get 3.3–3.5 s; 2 GiB exporter 173–196 MB, importer 154–167 MB;
 *   64 MiB:   3–4 full GCs, Put 3.1 s, Get 2.0 s; 2 GiB exporter 186–195 MB — too close to the 200 MB promise.
 * Those RSS figures include 47–69 MiB of the executable's own pages, which vary with the kernel's page cache and not
 * with the flags; holding that still (executables on tmpfs, 2 GiB export only, three runs each), 48 MiB gave an
 * anonymous peak of 103–118 MiB with 14 full GCs and 32 MiB 93–99 MiB with 64–71 (docs/BENCHMARKS.md, S3 section).
 */
export const SEA_EXEC_ARGV: readonly string[] = ['--max-semi-space-size=1', '--initial-old-space-size=48'];

/**
 * V8 flags of one integration's executable on top of {@link SEA_EXEC_ARGV} (a flag given here replaces the one of the
 * same name there), for what that integration moves.
 *
 * imap: `--optimize-for-size --initial-old-space-size=32`. An imap backup is tens of thousands of small objects per
 * mailbox (a FETCH row, an envelope, a record, a body) rather than a few large Buffers, and V8 let the heap grow to
 * 2–3 times the live set between full GCs (a heap snapshot mid-backup: 15 MiB live of 36 MiB used). The 50,000-message
 * backup of test/integrations/imap/memory.test.ts peaked at 111–131 MiB of anonymous memory (VmHWM 169–189 MB here,
 * 201.5 MB on CI, where the freshly built executable's own pages weigh ~75 MB of it); `--optimize-for-size` (smaller
 * heap growing steps) brought that to 82–90 MiB at the same CPU within this machine's noise, and a 32 MiB old-space
 * floor instead of 48 to 69–76 MiB. bench/imap.ts, 50,000 messages every body read, two runs each in alternation
 * (08:45 UTC, load < 1): 142–147 MB and 0.67–0.86 ms of CPU per message, against 159–173 MB and 0.68–0.80 ms with the
 * 48 MiB floor; a 24 MiB floor saved 20 MB more but doubled the CPU per message (1.08 ms). The s3 executable is not
 * given `--optimize-for-size`: through the Go host it made a 512 MiB Get cost 30–60% more plugin CPU and a Put ~10%,
 * for no change in the 2 GiB s3 memory test (its peak is Buffers in flight).
 *
 * gdrive keeps the common flags: a 32 MiB floor took 10–15 MiB off the anonymous peak of the 300 MiB restore in
 * test/integrations/gdrive/bigfile.test.ts but 0–3 MiB off bench/gdrive.ts's restores, for 35–40% more exporter CPU
 * per GiB (10–17% lower restore throughput); docs/BENCHMARKS.md, Google Drive section.
 */
export const INTEGRATION_V8_FLAGS: Readonly<Record<string, readonly string[]>> = {
  imap: ['--optimize-for-size', '--initial-old-space-size=32'],
};

/** The name of a V8 flag (`--initial-old-space-size=32` → `--initial-old-space-size`). */
function flagName(flag: string): string {
  return flag.split('=')[0] as string;
}

/** Every V8 flag the executable of `integration` starts with: {@link SEA_EXEC_ARGV} with its own in place. */
export function seaExecArgv(integration: string): readonly string[] {
  const own = INTEGRATION_V8_FLAGS[integration] ?? [];
  const replaced = new Set(own.map(flagName));
  return [...SEA_EXEC_ARGV.filter((flag) => !replaced.has(flagName(flag))), ...own];
}

/** The main script of every executable (it runs the bundle with the code cache, see the file's header). */
export const SEA_MAIN = fileURLToPath(new URL('./sea-main.cjs', import.meta.url));

/** The SEA assets holding the bundle and its code cache (names shared with scripts/sea-main.cjs). */
export const SEA_ASSETS = { bundle: 'bundle.cjs', codeCache: 'bundle.cache' } as const;

/**
 * Whether executables for the build machine's platform start from a startup snapshot ({@link makeBlob}): about 35 ms
 * less per start (Node's built-ins come with a code cache made under the executable's flags), for 6.5 MB more per
 * executable and ~5.6 MiB more anonymous memory per process (docs/BENCHMARKS.md, cold start section).
 */
export const START_FROM_SNAPSHOT = true;

/**
 * The V8 random seed while a startup snapshot is made (never at run time: V8 reseeds Math.random, crypto and its
 * string hashes when an executable starts). With a fixed seed two snapshots made from {@link SEA_MAIN} by one Node
 * binary have the same read-only heap, which the bundle's code cache is checked against: the cache is recorded on a
 * snapshot made by {@link makeCodeCache} and then accepted by the executable's own. V8 leaves the random seed out of
 * the flags a cache is checked against.
 */
export const SNAPSHOT_RANDOM_SEED = 1;

/**
 * Makes the SEA preparation blob with `node --experimental-sea-config` (Node 24 has no `--build-sea`).
 *
 * `node` must be the build machine's Node of the same version as the target runtime; it runs with
 * `execArgv`, the executable's V8 flags ({@link seaExecArgv}), so that the code caches made here are accepted by it.
 * The main script is {@link SEA_MAIN}; the bundle and, for the build machine's own platform, its code cache
 * ({@link makeCodeCache}) are assets. For the build machine's platform the executable also starts from a V8 startup
 * snapshot (`useSnapshot`; a snapshot only runs on the platform that made it) in which {@link SEA_MAIN} has only
 * registered its main function: what it brings is the code cache of Node's own built-in modules, made under the
 * executables' flags (Node's shipped one is refused under `--initial-old-space-size`, so every built-in a start loads
 * was compiled from source). Node's `useCodeCache` stays off: it would only cache the few lines of the main script.
 */
export async function makeBlob(opts: {
  node: string;
  /** The executable's V8 flags ({@link seaExecArgv}). */
  execArgv: readonly string[];
  bundle: string;
  outFile: string;
  /** The code cache of the bundle (build machine's platform only, with `useSnapshot`). */
  codeCache?: string;
  /** Start from a V8 startup snapshot (build machine's platform only). */
  useSnapshot: boolean;
}): Promise<void> {
  await mkdir(dirname(opts.outFile), { recursive: true });
  const config = `${opts.outFile}.sea-config.json`;
  const assets: Record<string, string> = { [SEA_ASSETS.bundle]: opts.bundle };
  if (opts.codeCache) assets[SEA_ASSETS.codeCache] = opts.codeCache;
  const seaConfig = {
    main: SEA_MAIN,
    output: opts.outFile,
    disableExperimentalSEAWarning: true,
    useSnapshot: opts.useSnapshot,
    useCodeCache: false,
    // Heap sizing (see SEA_EXEC_ARGV and INTEGRATION_V8_FLAGS).
    execArgv: opts.execArgv,
    assets,
  };
  await writeFile(config, `${JSON.stringify(seaConfig, null, 2)}\n`);
  const seed = opts.useSnapshot ? [`--random-seed=${SNAPSHOT_RANDOM_SEED}`] : [];
  await run(opts.node, [...opts.execArgv, ...seed, '--experimental-sea-config', config], { env: cleanEnv() });
}

/** A connector a warm-up start serves: its kind, the arguments the manifest gives and the protocol Init names. */
export interface WarmUpConnector {
  readonly kind: 'importer' | 'exporter' | 'storage';
  readonly args: readonly string[];
  readonly protocol: string;
}

/** The config of a warm-up Init: a key no connector declares, so Init fails in the SDK's option check. */
export const WARM_UP_KEY = 'kloset_ts_code_cache_warm_up';

/**
 * Starts `executable` (with `args`) as `connector` the way the host does (two pipes), sends one Init that the SDK
 * refuses ({@link WARM_UP_KEY}), closes its stdin and waits for it to exit 0; returns its stderr. Anything else (no
 * reply, a crash, another exit code) is a broken executable or bundle and throws with its stderr.
 */
async function startOnce(
  executable: string,
  args: readonly string[],
  connector: WarmUpConnector,
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<string> {
  const { launchPlugin } = await import('../test/harness/index.ts');
  const full: NodeJS.ProcessEnv = { ...cleanEnv(), KLOSET_TS_LOG: undefined, KLOSET_TS_LOG_FILE: undefined, ...env };
  for (const [key, value] of Object.entries(full)) if (value === undefined) delete full[key];
  const plugin = await launchPlugin({ executable, args: [...args] }, { env: full, cwd, mode: 'socketpair' });
  try {
    await plugin.host.init(connector.kind, connector.protocol, {
      location: `${connector.protocol}://kloset-ts-code-cache-warm-up`,
      [WARM_UP_KEY]: 'true',
    });
  } catch (error) {
    // The expected refusal names the key.
    if (!(error as Error).message.includes(WARM_UP_KEY)) {
      await plugin.dispose().catch(() => undefined);
      throw new Error(
        `the ${connector.kind} of ${executable} did not answer Init: ${(error as Error).message}\n${plugin.process.stderr().trim()}`,
      );
    }
  }
  const exit = await plugin.dispose(10_000);
  if (exit.code !== 0) {
    throw new Error(
      `the ${connector.kind} of ${executable} did not exit cleanly (exit ${exit.code ?? exit.signal ?? '?'}): ${plugin.process.stderr().trim()}`,
    );
  }
  return plugin.process.stderr();
}

/**
 * Records the V8 code cache of a bundle: the bundle is started as each connector the way the host starts it (two
 * pipes), with the executable's flags ({@link seaExecArgv}) and, with {@link START_FROM_SNAPSHOT}, from a startup
 * snapshot made like the executable's ({@link SEA_MAIN}, {@link SNAPSHOT_RANDOM_SEED}), so that V8 accepts the cache
 * in the executable; it is sent one Init, and the functions compiled by then are written out when it exits. Each start
 * begins from the previous one's cache, so the last cache holds what every connector's start compiles.
 *
 * The Init carries an undeclared key ({@link WARM_UP_KEY}): the SDK refuses it while checking options, before any
 * connector code runs, so a warm-up never touches a network, a disk or a service; module evaluation, the gRPC server,
 * the stdio transport and the option parsing it covers are most of a start. The reply doubles as a check that the
 * bundle serves: no reply fails the build with the process's stderr.
 */
export async function makeCodeCache(opts: {
  node: string;
  /** The executable's V8 flags ({@link seaExecArgv}): V8 refuses a code cache made under other flags. */
  execArgv: readonly string[];
  bundle: string;
  outFile: string;
  connectors: readonly WarmUpConnector[];
}): Promise<void> {
  await mkdir(dirname(opts.outFile), { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'kloset-ts-code-cache-'));
  try {
    const snapshot = join(work, 'snapshot.blob');
    if (START_FROM_SNAPSHOT) {
      await run(
        opts.node,
        [...opts.execArgv, `--random-seed=${SNAPSHOT_RANDOM_SEED}`, '--snapshot-blob', snapshot, '--build-snapshot', SEA_MAIN],
        { env: cleanEnv(), cwd: work },
      );
    }
    let previous: string | undefined;
    for (const [i, connector] of opts.connectors.entries()) {
      const out = join(work, `${i}.cache`);
      // argv[1] is the main script, as in an executable (process.argv[1] is the executable there).
      await startOnce(
        opts.node,
        [...opts.execArgv, ...(START_FROM_SNAPSHOT ? ['--snapshot-blob', snapshot] : []), SEA_MAIN, ...connector.args],
        connector,
        { KLOSET_TS_CODE_CACHE_BUNDLE: opts.bundle, KLOSET_TS_CODE_CACHE_OUT: out, KLOSET_TS_CODE_CACHE_IN: previous },
        work,
      );
      if (!existsSync(out)) throw new Error(`the ${connector.kind} of ${opts.bundle} wrote no code cache at build time`);
      previous = out;
    }
    if (!previous) throw new Error(`no connector to warm up for ${opts.bundle}`);
    await copyFile(previous, `${opts.outFile}.tmp-${process.pid}`);
    await rename(`${opts.outFile}.tmp-${process.pid}`, opts.outFile);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Starts a built executable once as `connector` (see {@link startOnce}) with the debug log and returns what became of
 * its code cache (`accepted`, `rejected`, `none`), as it logs it; a build made with a cache expects `accepted`.
 */
export async function codeCacheState(exe: string, connector: WarmUpConnector): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'kloset-ts-start-check-'));
  try {
    const stderr = await startOnce(exe, connector.args, connector, { KLOSET_TS_LOG: 'debug' }, work);
    return / code_cache=(\w+)/.exec(stderr)?.[1] ?? 'unknown';
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The environment for child Node processes, without options a parent (tsx, vitest) may have set. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env['NODE_OPTIONS'];
  delete env['NODE_UNIQUE_ID'];
  return env;
}

const POSTJECT_NOISE = [
  /Can't find string offset for section name/,
  /^Start injection of /,
  /Injection done!/,
  /^\s*$/,
];

/** The postject CLI shipped in node_modules. */
function postjectCli(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('postject/package.json')), 'dist', 'cli.js');
}

/** postject's version, part of the cache key (a new postject may lay the blob out differently). */
export function postjectVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('postject/package.json') as { version: string }).version;
}

/**
 * Copies the runtime to `outFile`, injects the blob and flips the fuse, then makes the file executable.
 *
 * postject runs in a child process (its WebAssembly LIEF takes ~5 s and ~750 MB per executable) so that several
 * injections can run in parallel. Its harmless "Can't find string offset for section name '.note…'" warnings about
 * Node's ELF notes are dropped; anything else it prints is shown when it fails.
 */
export async function injectBlob(opts: {
  runtime: string;
  blob: string;
  outFile: string;
  target: Target;
}): Promise<void> {
  await mkdir(dirname(opts.outFile), { recursive: true });
  const tmp = `${opts.outFile}.tmp-${process.pid}`;
  await copyFile(opts.runtime, tmp);
  try {
    await chmod(tmp, 0o755);
    const args = [postjectCli(), tmp, SEA_RESOURCE, opts.blob, '--sentinel-fuse', SEA_FUSE];
    if (opts.target.os === 'darwin') args.push('--macho-segment-name', SEA_MACHO_SEGMENT);
    const output = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
      const child = spawn(process.execPath, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: cleanEnv(),
      });
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, text }));
    });
    const kept = output.text
      .split('\n')
      .map((line) => stripVTControlCharacters(line))
      .filter((line) => !POSTJECT_NOISE.some((noise) => noise.test(line)));
    if (output.code !== 0) {
      throw new Error(
        `postject failed for ${opts.outFile} (exit ${output.code ?? '?'}): ${kept.join(' / ')}`,
      );
    }
    await rename(tmp, opts.outFile);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** The executable format facts {@link inspectExecutable} found. */
export interface ExecutableFacts {
  readonly format: 'ELF' | 'Mach-O' | 'PE' | 'unknown';
  readonly arch: 'x64' | 'arm64' | 'unknown';
  /** The sentinel fuse was flipped to `:1` (Node will look for the blob). */
  readonly fuseFlipped: boolean;
  /** The blob's resource/section/note name is present. */
  readonly blobMarker: boolean;
}

/** Reads the header of an executable and looks for the SEA fuse and blob marker. */
export function inspectExecutable(data: Buffer): ExecutableFacts {
  let format: ExecutableFacts['format'] = 'unknown';
  let arch: ExecutableFacts['arch'] = 'unknown';
  if (data.length >= 20 && data.readUInt32BE(0) === 0x7f454c46) {
    format = 'ELF';
    const machine = data.readUInt16LE(18);
    arch = machine === 62 ? 'x64' : machine === 183 ? 'arm64' : 'unknown';
  } else if (data.length >= 8 && data.readUInt32LE(0) === 0xfeedfacf) {
    format = 'Mach-O';
    const cpu = data.readUInt32LE(4);
    arch = cpu === 0x01000007 ? 'x64' : cpu === 0x0100000c ? 'arm64' : 'unknown';
  } else if (data.length >= 64 && data.readUInt16LE(0) === 0x5a4d) {
    const pe = data.readUInt32LE(60);
    if (pe + 6 <= data.length && data.readUInt32LE(pe) === 0x00004550) {
      format = 'PE';
      const machine = data.readUInt16LE(pe + 4);
      arch = machine === 0x8664 ? 'x64' : machine === 0xaa64 ? 'arm64' : 'unknown';
    }
  }
  const fuseFlipped = data.includes(`${SEA_FUSE}:1`) && !data.includes(`${SEA_FUSE}:0`);
  const marker =
    format === 'PE'
      ? Buffer.from(SEA_RESOURCE, 'utf16le')
      : Buffer.from(format === 'Mach-O' ? `__${SEA_RESOURCE}` : SEA_RESOURCE, 'latin1');
  return { format, arch, fuseFlipped, blobMarker: data.includes(marker) };
}

/** Throws unless `file` is a SEA executable of the right format and architecture for `target`. */
export async function verifyExecutable(file: string, target: Target): Promise<void> {
  const facts = inspectExecutable(await readFile(file));
  const format = target.os === 'linux' ? 'ELF' : target.os === 'darwin' ? 'Mach-O' : 'PE';
  const problems: string[] = [];
  if (facts.format !== format) problems.push(`format ${facts.format}, expected ${format}`);
  if (facts.arch !== target.arch) problems.push(`arch ${facts.arch}, expected ${target.arch}`);
  if (!facts.fuseFlipped) problems.push('SEA fuse not flipped');
  if (!facts.blobMarker) problems.push(`${SEA_RESOURCE} not found`);
  if (problems.length > 0)
    throw new Error(`${file} is not a valid ${target.id} executable: ${problems.join('; ')}`);
}

/** The result of running `<exe> --version`. */
export interface SelfCheck {
  readonly ok: boolean;
  readonly ms: number;
  readonly output: string;
}

/** Runs `<exe> --version` with a 10 s timeout and reports what it printed and how long it took. */
export function selfCheck(exe: string): Promise<SelfCheck> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const child = spawn(exe, ['--version'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 10_000,
      env: cleanEnv(),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const done = (ok: boolean, output: string): void => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      resolve({ ok, ms, output: output.trim().split('\n')[0] ?? '' });
    };
    child.on('error', (error) => done(false, error.message));
    child.on('close', (code, signal) => {
      if (code === 0 && stdout.trim() !== '') done(true, stdout);
      else
        done(
          false,
          `${signal ? `killed by ${signal}` : `exit ${code ?? '?'}`}: ${stderr.trim() || stdout.trim()}`,
        );
    });
  });
}
