// `npm run build`: one Node 24 single executable per integration and target, staged for `plakar pkg create`.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pLimit from 'p-limit';
import {
  ALL_TARGET_IDS,
  BUILD_USAGE,
  checkExt,
  exeFileName,
  formatMb,
  formatTable,
  hostTarget,
  nextCommands,
  parseBuildArgs,
  parseTarget,
  stageDir,
  targetFromGoEnv,
  versionTag,
  type BuildOptions,
  type Target,
} from './build-lib.ts';
import { RuntimeCache, runtimeVersion } from './build-runtime.ts';
import {
  bundleIntegration,
  injectBlob,
  makeBlob,
  codeCacheState,
  makeCodeCache,
  postjectVersion,
  seaExecArgv,
  SEA_MAIN,
  selfCheck,
  START_FROM_SNAPSHOT,
  verifyExecutable,
  type Bundle,
  type WarmUpConnector,
} from './build-sea.ts';
import { checkManifestDir, filesToStage, stageFiles } from './build-stage.ts';

/** The repository this script belongs to (its caches live here whatever `--root` says). */
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Bumped when the way executables are made changes, to invalidate every cached executable. */
const BUILD_FORMAT = 3;

/** The executables' main script (part of the cache key). */
const SEA_MAIN_SHA256 = createHash('sha256').update(readFileSync(SEA_MAIN)).digest('hex');

/** One integration to build: where its code and its manifest live. */
export interface Unit {
  readonly name: string;
  readonly entry: string;
  readonly manifestDir: string;
  /** Stage only the files the manifest references (the fixture's folder also holds sources). */
  readonly onlyReferenced: boolean;
}

/** One built executable, for the summary. */
export interface Built {
  readonly unit: Unit;
  readonly target: Target;
  readonly exe: string;
  readonly manifestDir: string;
  readonly bytes: number;
  readonly status: 'built' | 'cached';
}

function log(line: string): void {
  process.stderr.write(`build: ${line}\n`);
}

function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Finds the integrations to build: `integrations/<name>/index.ts`, filtered by `--only`, plus the fixture. */
export async function findUnits(root: string, opts: BuildOptions): Promise<Unit[]> {
  const dir = join(root, 'integrations');
  const found = existsSync(dir)
    ? (await readdir(dir, { withFileTypes: true }))
        .filter((entry) => entry.isDirectory() && existsSync(join(dir, entry.name, 'index.ts')))
        .map((entry) => entry.name)
        .sort()
    : [];
  let names = found;
  if (opts.only) {
    const unknown = opts.only.filter((name) => !found.includes(name));
    if (unknown.length > 0) {
      const have = found.length > 0 ? found.join(', ') : 'none';
      throw new Error(
        `no integrations/<name>/index.ts for ${unknown.join(', ')} (found: ${have}; "fixture" = test/fixture)`,
      );
    }
    names = found.filter((name) => opts.only?.includes(name));
  }
  const units: Unit[] = names.map((name) => ({
    name,
    entry: join(dir, name, 'index.ts'),
    manifestDir: join(root, 'manifests', name),
    onlyReferenced: false,
  }));
  if (opts.fixture) {
    const fixture = join(root, 'test', 'fixture');
    if (!existsSync(join(fixture, 'index.ts'))) throw new Error('test/fixture/index.ts is missing');
    units.push({
      name: 'fixture',
      entry: join(fixture, 'index.ts'),
      manifestDir: fixture,
      onlyReferenced: true,
    });
  }
  if (units.length === 0) {
    throw new Error(
      'nothing to build: no integrations/<name>/index.ts found (use --fixture for the test fixture)',
    );
  }
  return units;
}

/** Decides the targets from the options, leaving out (with a note) those `--all-targets` cannot build. */
export function chooseTargets(opts: BuildOptions, host: Target, notes: Set<string>): Target[] {
  if (opts.allTargets) {
    const targets: Target[] = [];
    for (const id of ALL_TARGET_IDS) {
      const target = parseTarget(id);
      try {
        runtimeVersion(target);
        targets.push(target);
      } catch (error) {
        notes.add(`skipped ${id}: ${(error as Error).message}`);
      }
    }
    return targets;
  }
  const targets = opts.targets ?? [
    (opts.outInPlace ? targetFromGoEnv(process.env, host) : undefined) ?? host,
  ];
  for (const target of targets) runtimeVersion(target);
  return [...targets];
}

/** The connectors a code-cache warm-up starts: those of the unit's manifest, with their arguments and first protocol. */
function warmUpConnectors(unit: Unit, target: Target): WarmUpConnector[] {
  const doc = checkManifestDir(unit.manifestDir, shown(unit.manifestDir), unit.name, target, false) as {
    connectors: Array<{ type: WarmUpConnector['kind']; args?: string[]; protocols: string[] }>;
  };
  return doc.connectors.map((c) => ({ kind: c.type, args: c.args ?? [], protocol: c.protocols[0] ?? unit.name }));
}

async function readStamp(
  file: string,
): Promise<{ key: string; size: number; mtimeMs: number } | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as {
      key: string;
      size: number;
      mtimeMs: number;
    };
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const opts = parseBuildArgs(process.argv.slice(2));
  if (opts.help) {
    process.stdout.write(`${BUILD_USAGE}\n`);
    return;
  }
  const root = resolve(opts.root ?? REPO);
  const dist = resolve(opts.dist ?? join(root, 'dist'));
  const host = hostTarget();
  const packageJson = existsSync(join(root, 'package.json'))
    ? join(root, 'package.json')
    : join(REPO, 'package.json');
  const tag = versionTag(
    (JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string }).version,
  );
  const notes = new Set<string>();
  const targets = chooseTargets(opts, host, notes);
  if (targets.length === 0) throw new Error('no target can be built');
  if (opts.ext !== undefined) for (const target of targets) checkExt(opts.ext, target);
  const units = await findUnits(root, opts);

  // Check every manifest before the slow work, reporting all problems at once.
  const preflight: string[] = [];
  for (const unit of units) {
    for (const target of targets) {
      try {
        checkManifestDir(unit.manifestDir, shown(unit.manifestDir), unit.name, target, false);
      } catch (error) {
        preflight.push((error as Error).message);
      }
    }
  }
  if (preflight.length > 0) throw new Error([...new Set(preflight)].join('\n'));

  const cacheDir = join(REPO, '.cache');
  const runtimes = new RuntimeCache(join(cacheDir, 'node-runtimes'), host, log);
  const versions = new Map(targets.map((target) => [target.id, runtimeVersion(target)]));
  // Fetch and prepare every runtime (and the host Node of each version in use) while bundling.
  const runtimeReady = Promise.all(
    targets.map(async (target) => {
      const version = versions.get(target.id) ?? '';
      const [prepared] = await Promise.all([
        runtimes.prepared(target, version),
        runtimes.hostBinary(version),
      ]);
      return [target.id, prepared] as const;
    }),
  ).then((entries) => new Map(entries));
  runtimeReady.catch(() => undefined);

  const bundles = new Map<string, Bundle>();
  await Promise.all(
    units.map(async (unit) => {
      const t = Date.now();
      const bundle = await bundleIntegration({
        root,
        integrationFile: unit.entry,
        name: unit.name,
        outFile: join(cacheDir, 'build', unit.name, 'bundle.cjs'),
        minify: opts.minify,
      });
      for (const warning of bundle.warnings)
        log(`${unit.name}: esbuild warning:\n${warning.trimEnd()}`);
      log(`${unit.name}: bundled ${formatMb(bundle.bytes)} in ${seconds(Date.now() - t)}`);
      bundles.set(unit.name, bundle);
    }),
  );
  const prepared = await runtimeReady;

  const limit = pLimit(opts.jobs ?? Math.max(1, Math.min(availableParallelism(), 4)));
  const postject = postjectVersion();
  const built: Built[] = [];
  await Promise.all(
    units.flatMap((unit) =>
      targets.map((target) =>
        limit(async () => {
          const bundle = bundles.get(unit.name);
          const runtime = prepared.get(target.id);
          const version = versions.get(target.id) ?? '';
          if (!bundle || !runtime)
            throw new Error(`internal error: ${unit.name} ${target.id} not prepared`);
          const outDir = opts.outInPlace
            ? unit.manifestDir
            : stageDir(dist, unit.name, target, host);
          const exe = join(outDir, exeFileName(unit.name, target));
          // A code cache is recorded by running the bundle on the build machine's Node (same V8 build as the runtime),
          // and a startup snapshot only runs on the platform that made it.
          const useCodeCache = target.id === host.id;
          // The executable's V8 flags: part of the cache key, and those the code cache and the snapshot are made under.
          const execArgv = seaExecArgv(unit.name);
          const key = createHash('sha256')
            .update(
              JSON.stringify([
                BUILD_FORMAT,
                bundle.sha256,
                target.id,
                runtime.spec,
                runtime.integrity,
                runtime.stripped,
                useCodeCache,
                postject,
                execArgv,
                SEA_MAIN_SHA256,
                START_FROM_SNAPSHOT,
              ]),
            )
            .digest('hex');
          const stampFile = join(
            cacheDir,
            'build',
            'stamps',
            `${createHash('sha1').update(exe).digest('hex')}.json`,
          );
          const stamp = await readStamp(stampFile);
          const current = existsSync(exe) ? await stat(exe) : undefined;
          let status: Built['status'] = 'cached';
          if (
            opts.force ||
            !current ||
            stamp?.key !== key ||
            stamp.size !== current.size ||
            stamp.mtimeMs !== current.mtimeMs
          ) {
            const t = Date.now();
            // Per process, so that two builds of one checkout (e.g. two test runs) do not share a blob, and the bundle
            // the code cache is recorded from is byte for byte the one in the blob (V8 checks only its length).
            const prep = join(cacheDir, 'build', unit.name, target.id, `sea-prep-${process.pid}`);
            const blob = `${prep}.blob`;
            const bundleFile = `${prep}.cjs`;
            const codeCache = useCodeCache ? `${prep}.cache` : undefined;
            try {
              await mkdir(dirname(prep), { recursive: true });
              await writeFile(bundleFile, bundle.text);
              const node = await runtimes.hostBinary(version);
              if (codeCache) {
                await makeCodeCache({
                  node,
                  execArgv,
                  bundle: bundleFile,
                  outFile: codeCache,
                  connectors: warmUpConnectors(unit, target),
                });
              }
              await makeBlob({ node, execArgv, bundle: bundleFile, outFile: blob, codeCache, useSnapshot: useCodeCache && START_FROM_SNAPSHOT });
              await injectBlob({ runtime: runtime.path, blob, outFile: exe, target });
            } finally {
              await rm(blob, { force: true });
              await rm(`${blob}.sea-config.json`, { force: true });
              await rm(bundleFile, { force: true });
              if (codeCache) await rm(codeCache, { force: true });
            }
            await verifyExecutable(exe, target);
            if (codeCache) {
              const [first] = warmUpConnectors(unit, target);
              const state = first ? await codeCacheState(exe, first) : 'none';
              if (state !== 'accepted') {
                log(`warning: ${unit.name} ${target.id}: V8 did not take the code cache (${state}): the executable starts slower`);
              }
            }
            const info = await stat(exe);
            await mkdir(dirname(stampFile), { recursive: true });
            await writeFile(
              stampFile,
              JSON.stringify({ key, size: info.size, mtimeMs: info.mtimeMs, exe }),
            );
            log(
              `${unit.name} ${target.id}: ${shown(exe)} (node ${version}) in ${seconds(Date.now() - t)}`,
            );
            status = 'built';
          }
          if (!opts.outInPlace) {
            const doc = checkManifestDir(
              unit.manifestDir,
              shown(unit.manifestDir),
              unit.name,
              target,
              false,
            );
            await stageFiles(
              unit.manifestDir,
              outDir,
              await filesToStage(unit.manifestDir, unit.name, doc, unit.onlyReferenced),
              unit.name,
              target,
            );
          }
          checkManifestDir(outDir, shown(outDir), unit.name, target, true);
          built.push({
            unit,
            target,
            exe,
            manifestDir: outDir,
            bytes: (await stat(exe)).size,
            status,
          });
        }),
      ),
    ),
  );
  built.sort(
    (a, b) => a.unit.name.localeCompare(b.unit.name) || a.target.id.localeCompare(b.target.id),
  );

  if (opts.check) {
    // Only executables made in this run: a cached one is byte-identical to one checked before.
    const fresh = built.filter((b) => b.target.id === host.id && b.status === 'built');
    const results = await Promise.all(fresh.map((item) => selfCheck(item.exe)));
    fresh.forEach((item, i) => {
      const result = results[i];
      if (!result) return;
      const exe = shown(item.exe);
      if (result.ok)
        log(`${item.unit.name}: ${exe} --version → ${result.output} (${result.ms.toFixed(0)} ms)`);
      else log(`warning: ${item.unit.name}: ${exe} --version did not work (${result.output})`);
    });
  }

  const rows = [['integration', 'target', 'node', 'executable', 'size', '']];
  for (const item of built) {
    rows.push([
      item.unit.name,
      item.target.id,
      versions.get(item.target.id) ?? '',
      shown(item.exe),
      formatMb(item.bytes),
      item.status,
    ]);
  }
  const out: string[] = [formatTable(rows), ''];
  if (!opts.outInPlace) {
    out.push('next:');
    for (const item of built) {
      for (const line of nextCommands(
        item.unit.name,
        tag,
        item.target,
        host,
        shown(join(item.manifestDir, 'manifest.yaml')),
      )) {
        out.push(`  ${line}`);
      }
    }
    out.push('  (or: npm run package)', '');
  }
  if (built.some((item) => item.target.os === 'darwin')) {
    notes.add(
      'darwin executables are unsigned (postject drops the LC_CODE_SIGNATURE of Node): sign them ad hoc on a Mac ' +
        '(codesign --sign -) before packaging; Apple Silicon refuses unsigned code, Intel Macs run it',
    );
  }
  if (built.some((item) => item.target.os === 'win')) {
    notes.add(
      "windows executables carry an invalidated Authenticode signature (Node's); sign them with signtool if you need one",
    );
  }
  for (const note of [...notes, ...runtimes.notes]) out.push(`note: ${note}`);
  process.stdout.write(`${out.join('\n').trimEnd()}\n`);
  log(
    `done in ${seconds(Date.now() - started)} (${built.filter((b) => b.status === 'built').length} built, ${built.filter((b) => b.status === 'cached').length} cached)`,
  );
}

if (process.argv[1] && resolve(fileURLToPath(import.meta.url)) === resolve(process.argv[1])) {
  try {
    await main();
  } catch (error) {
    process.stderr.write(`build: error: ${(error as Error).message}\n`);
    process.exit(1);
  }
}
