// The three conformance suites for the gdrive connectors against the Drive v3 emulator (the real googleapis client runs).
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { integration } from '../../../integrations/gdrive/index.ts';
import { segmentOf } from '../../../integrations/gdrive/map.ts';
import { runExporterConformance, runImporterConformance, runStorageConformance, standardTree } from '../../conformance/index.ts';
import { CLIENT_SECRET, startDrive } from './helpers.ts';

const target = { integration, packageDir: join(import.meta.dirname, '..', '..', '..', 'dist', 'gdrive') };
// Started while the file is collected: the suites need the secrets when they register their cases.
const drive = await startDrive();
const emu = drive.emu;
const secrets = [CLIENT_SECRET, drive.refreshToken];
let counter = 0;

afterAll(async () => {
  await drive.close();
});

/** Writes the standard tree below a new top-level folder; returns the folder name and the expected records. */
async function seedTree(prefix: string, options: { brokenName?: string } = {}): Promise<{ folder: string; expected: Array<{ path: string; content: Buffer }>; brokenPath?: string }> {
  const folder = `${prefix}-${++counter}`;
  const top = emu.createFolder(undefined, folder);
  const dirs = new Map<string, string>([['', top]]);
  const dirOf = (parts: string[]): string => {
    let key = '';
    let id = top;
    for (const p of parts) {
      key += `/${p}`;
      let next = dirs.get(key);
      if (!next) {
        next = emu.createFolder(id, p);
        dirs.set(key, next);
      }
      id = next;
    }
    return id;
  };
  const expected: Array<{ path: string; content: Buffer }> = [];
  for (const f of standardTree()) {
    const parts = f.path.split('/');
    const name = parts.pop() as string;
    await emu.createFile(dirOf(parts), name, f.content, { modifiedTime: f.mtime.toISOString() });
    expected.push({ path: `/${[folder, ...f.path.split('/')].map(segmentOf).join('/')}`, content: f.content });
  }
  let brokenPath: string | undefined;
  if (options.brokenName) {
    const id = await emu.createFile(top, options.brokenName, 'these bytes do not match the MD5 Drive reports');
    emu.corruptMd5(id);
    brokenPath = `/${folder}/${options.brokenName}`;
  }
  return { folder, expected, brokenPath };
}

/** Reads back a destination folder as path (below it) → bytes. */
async function inspectFolder(location: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const top = emu.lookup(location.replace(/^gdrive:\/\/\/?/, ''));
  if (!top) return out;
  const walk = async (id: string, prefix: string): Promise<void> => {
    for (const c of emu.children(id)) {
      const p = `${prefix}/${c.name}`;
      if (c.mimeType === 'application/vnd.google-apps.folder') await walk(c.id, p);
      else out.set(p, await emu.content(c.id));
    }
  };
  await walk(top.id, '');
  return out;
}

runStorageConformance({
  target,
  freshConfig: async () => drive.config(`gdrive:///stores/store-${++counter}`, { chunk_size: '1MiB' }),
  secrets,
  plantForeign: async (config) => {
    const repo = emu.lookup((config.location as string).replace('gdrive:///', '')) ?? emu.lookup('stores');
    if (!repo) throw new Error('no repository folder to plant into');
    const folder = (rel: string): string => {
      let id = repo.id;
      for (const seg of rel.split('/').filter(Boolean)) id = emu.children(id).find((c) => c.name === seg)?.id ?? emu.createFolder(id, seg);
      return id;
    };
    await emu.createFile(folder('packfiles/zz'), 'not-a-mac', 'junk');
    await emu.createFile(folder('packfiles/ab'), `${'ab'.repeat(32)}.partial-1-0`, 'junk');
    await emu.createFile(folder('packfiles/ab'), 'AB'.repeat(32), 'junk');
    await emu.createFile(folder('locks/nested'), 'x', 'junk');
    await emu.createFile(folder(''), 'README.txt', 'junk');
    await emu.createFile(folder('states/cd'), 'ab'.repeat(32), 'junk');
  },
  badConfig: { config: { location: 'gdrive:///x', chunk_size: '100KiB' }, key: 'chunk_size' },
  manyObjects: Number(process.env.GDRIVE_TEST_MANY ?? 600),
  bigObjectBytes: Number(process.env.GDRIVE_TEST_BIG_MIB ?? 48) * 1024 * 1024,
});

runImporterConformance({
  target,
  seed: async () => {
    const { folder, expected } = await seedTree('conf-src');
    return { config: drive.config(`gdrive:///${folder}`), expected };
  },
  seedBroken: async () => {
    const { folder, expected, brokenPath } = await seedTree('conf-broken', { brokenName: 'corrupted.bin' });
    return { config: drive.config(`gdrive:///${folder}`), expected, brokenPath: brokenPath as string };
  },
  secrets,
  badConfig: { config: { location: 'gdrive://', export_formats: 'docx,doc2' }, key: 'export_formats' },
});

runExporterConformance({
  target,
  freshConfig: async () => drive.config(`gdrive:///restores/restore-${++counter}`, { chunk_size: '1MiB' }),
  inspect: (config) => inspectFolder(config.location as string),
  secrets,
  badConfig: { config: { location: 'gdrive:///r', on_conflict: 'merge' }, key: 'on_conflict' },
});
