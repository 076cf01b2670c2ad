// `npm run package`: turns each staged dist/ folder into a .ptar with `plakar pkg create`, or prints the commands.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  exeFileName,
  goArch,
  goOs,
  hostTarget,
  parseStagedPath,
  ptarFileName,
  shellQuote,
  versionTag,
  type Target,
} from './build-lib.ts';
import { which } from './build-runtime.ts';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The usage text of `npm run package`. */
export const PACKAGE_USAGE = `usage: npm run package -- [--dist DIR] [--only a,b]

For every dist/<name>/manifest.yaml (build machine's target) and dist/<target>/<name>/manifest.yaml, runs
  [GOOS=.. GOARCH=..] plakar pkg create -out dist/<name>_v<version>_<goos>_<goarch>.ptar <manifest> v<version>
when plakar is on PATH, else prints those commands. The version is package.json's, prefixed with "v".`;

/** One staged package directory found under dist/. */
export interface Staged {
  readonly name: string;
  readonly target: Target;
  readonly manifest: string;
}

/** Finds the staged manifests under `dist` (two levels deep), sorted by name then target. */
export async function findStaged(dist: string, host: Target): Promise<Staged[]> {
  if (!existsSync(dist)) return [];
  const found: Staged[] = [];
  for (const entry of await readdir(dist, { recursive: true })) {
    const parsed = parseStagedPath(entry, host);
    if (parsed) found.push({ ...parsed, manifest: join(dist, entry) });
  }
  return found.sort(
    (a, b) => a.name.localeCompare(b.name) || a.target.id.localeCompare(b.target.id),
  );
}

function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function parseArgs(argv: readonly string[]): {
  dist: string | undefined;
  only: string[] | undefined;
  help: boolean;
} {
  let dist: string | undefined;
  let only: string[] | undefined;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const [flag, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    const value = (): string => {
      const next = inline ?? argv[++i];
      if (next === undefined) throw new Error(`${flag} needs a value\n\n${PACKAGE_USAGE}`);
      return next;
    };
    if (flag === '--dist') dist = value();
    else if (flag === '--only')
      only = value()
        .split(',')
        .map((name) => name.trim())
        .filter(Boolean);
    else if (flag === '--help' || flag === '-h') help = true;
    else throw new Error(`unknown argument "${arg}"\n\n${PACKAGE_USAGE}`);
  }
  return { dist, only, help };
}

function runPlakar(plakar: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(plakar, args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolvePromise()
        : reject(new Error(`plakar ${args.join(' ')} exited ${code ?? '?'}`)),
    );
  });
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.help) {
    process.stdout.write(`${PACKAGE_USAGE}\n`);
    return;
  }
  const dist = resolve(opts.dist ?? join(REPO, 'dist'));
  const host = hostTarget();
  const tag = versionTag(
    (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version,
  );
  let staged = await findStaged(dist, host);
  if (opts.only) staged = staged.filter((item) => opts.only?.includes(item.name));
  if (staged.length === 0) {
    process.stdout.write(`package: nothing staged under ${shown(dist)}; run npm run build first\n`);
    return;
  }
  const plakar = await which('plakar');
  const lines: string[] = [];
  for (const item of staged) {
    const out = join(dist, ptarFileName(item.name, tag, item.target));
    const foreign = item.target.id !== host.id;
    // Always explicit, so a GOOS/GOARCH left in the user's environment cannot mislabel the host's package.
    const env = { ...process.env, GOOS: goOs(item.target), GOARCH: goArch(item.target) };
    const args = ['pkg', 'create', '-out', out, item.manifest, tag];
    if (item.target.os === 'darwin') {
      const exe = join(dirname(item.manifest), exeFileName(item.name, item.target));
      lines.push(
        `# ${item.name} ${item.target.id}: on a Mac first: codesign --sign - ${shellQuote(shown(exe))}`,
      );
    }
    const prefix = foreign ? `GOOS=${goOs(item.target)} GOARCH=${goArch(item.target)} ` : '';
    const command = `${prefix}plakar ${['pkg', 'create', '-out', shown(out), shown(item.manifest), tag].map(shellQuote).join(' ')}`;
    if (plakar) {
      process.stderr.write(`package: ${command}\n`);
      await runPlakar(plakar, args, env);
      lines.push(
        `${shown(out)}${foreign ? `  (install on a ${item.target.id} machine)` : `  → plakar pkg add ${shellQuote(shown(out))}`}`,
      );
    } else {
      lines.push(command);
    }
  }
  if (!plakar)
    process.stdout.write('package: plakar is not on PATH; run these to make the .ptar files:\n');
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (process.argv[1] && resolve(fileURLToPath(import.meta.url)) === resolve(process.argv[1])) {
  try {
    await main();
  } catch (error) {
    process.stderr.write(`package: error: ${(error as Error).message}\n`);
    process.exit(1);
  }
}
