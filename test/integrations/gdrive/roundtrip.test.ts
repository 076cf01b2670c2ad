// Backup → restore → compare for the gdrive importer and exporter (bytes, MD5, mtime, names), Google documents back to
// native ones, on_conflict, shortcuts, parallel uploads.
import { createReadStream } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExportEntry, ImportOutcome } from '../../harness/index.ts';
import { MIME, type EmuFile } from '../../servers/drive-emulator.ts';
import { connect, entriesFromImport, SCALE, startDrive, type TestDrive } from './helpers.ts';

let drive: TestDrive;
beforeAll(async () => {
  drive = await startDrive();
});
afterAll(async () => {
  await drive.close();
});

const LARGE = Math.round(Number(process.env.GDRIVE_TEST_LARGE_MIB ?? 24 * SCALE) * 1024 * 1024);

/** Every item of a folder tree with its path (Drive names), same-named items included. */
function listOf(folderId: string): Array<[string, EmuFile]> {
  const out: Array<[string, EmuFile]> = [];
  const walk = (id: string, prefix: string): void => {
    for (const c of drive.emu.children(id)) {
      out.push([`${prefix}/${c.name}`, c]);
      if (c.mimeType === MIME.folder) walk(c.id, `${prefix}/${c.name}`);
    }
  };
  walk(folderId, '');
  return out;
}

/** Path (below `folderId`, with Drive names) → item, for every item of a folder tree. */
function treeOf(folderId: string): Map<string, EmuFile> {
  const out = new Map<string, EmuFile>();
  const walk = (id: string, prefix: string): void => {
    for (const c of drive.emu.children(id)) {
      out.set(`${prefix}/${c.name}`, c);
      if (c.mimeType === MIME.folder) walk(c.id, `${prefix}/${c.name}`);
    }
  };
  walk(folderId, '');
  return out;
}

async function backup(location: string, extra: Record<string, string> = {}): Promise<ImportOutcome> {
  const c = await connect('importer', drive.config(location, extra));
  const out = await c.host.importAll({ content: 'bytes' });
  c.close();
  expect(out.status.code, out.status.details).toBe(0);
  expect(out.errors).toEqual([]);
  expect(out.itemErrors).toEqual([]);
  return out;
}

async function restore(location: string, entries: ExportEntry[], extra: Record<string, string> = {}): Promise<void> {
  const c = await connect('exporter', drive.config(location, { chunk_size: '1MiB', ...extra }));
  const out = await c.host.exportTree(entries);
  c.close();
  expect(out.status.code, out.status.details).toBe(0);
  expect(out.itemErrors).toEqual([]);
}

describe('gdrive: backup, restore, compare', () => {
  it('restores every file with the same bytes, MD5, modification time and name', async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'rt-src');
    const deep = e.createFolder(e.createFolder(top, 'dir one', { modifiedTime: '2021-01-01T00:00:00.000Z' }), 'déjà vu');
    const mtime = '2020-06-07T08:09:10.456Z';
    await e.createFile(top, '日本語.txt', 'unicode name', { modifiedTime: mtime });
    await e.createFile(top, 'empty.bin', '', { modifiedTime: mtime });
    await e.createFile(top, 'dup.txt', 'older', { modifiedTime: mtime, createdTime: '2020-01-01T00:00:00.000Z' });
    await e.createFile(top, 'dup.txt', 'newer', { modifiedTime: mtime, createdTime: '2020-01-02T00:00:00.000Z' });
    await e.createFile(deep, 'slash/in name.txt', 'slash', { modifiedTime: mtime });
    await e.createFile(deep, 'medium.bin', { size: 3 * 1024 * 1024 + 17, seed: 3 }, { modifiedTime: mtime });
    const largeId = await e.createFile(top, 'large.bin', { size: LARGE, seed: 4 }, { modifiedTime: mtime });

    // The large file streams from the emulator's disk instead of the harness's memory.
    const c = await connect('importer', drive.config('gdrive:///rt-src'));
    const out = await c.host.importAll({ content: 'bytes', openContent: (r) => !r.pathname.endsWith('/large.bin') });
    c.close();
    const entries = entriesFromImport(out, '/rt-src');
    const large = entries.find((x) => x.path === '/large.bin') as ExportEntry;
    large.info.size = LARGE;
    large.content = () => createReadStream(e.file(largeId)?.blob as string);

    await restore('gdrive:///rt-dst', entries);
    const src = listOf(top);
    const dst = treeOf(e.lookup('rt-dst')?.id as string);
    expect(dst.size).toBe(src.length);
    for (const [path, f] of src) {
      if (f.mimeType === MIME.folder) {
        expect(dst.get(path)?.mimeType, path).toBe(MIME.folder);
        expect(dst.get(path)?.modifiedTime, path).toBe(f.modifiedTime);
        continue;
      }
      // Both source files are named dup.txt: the newer one is restored under its disambiguated name.
      const newer = path === '/dup.txt' && f.createdTime.startsWith('2020-01-02');
      const name = newer ? `/dup (${f.id}).txt` : path;
      const r = dst.get(name);
      expect(r, `restored ${name}`).toBeDefined();
      expect(r?.name, name).toBe(newer ? `dup (${f.id}).txt` : f.name);
      expect(r?.md5, name).toBe(f.md5);
      expect(r?.size, name).toBe(f.size);
      expect(r?.modifiedTime, name).toBe(mtime);
    }
    expect((await e.content(dst.get('/dup.txt')?.id as string)).toString()).toBe('older');
  });

  it('Google documents come back as native documents with import_as_native, as files without', async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'rt-docs');
    e.createGoogleDoc(top, 'Plan', 'document', 'the plan');
    e.createGoogleDoc(top, 'Numbers', 'spreadsheet', '1,2,3');
    e.createGoogleDoc(top, 'Sketch', 'drawing', '<svg/>');
    await e.createFile(top, 'real.docx', 'not from Google', { mimeType: MIME.docx });
    const out = await backup('gdrive:///rt-docs');
    const entries = entriesFromImport(out, '/rt-docs');

    await restore('gdrive:///rt-docs-native', entries, { import_as_native: 'true' });
    const native = treeOf(e.lookup('rt-docs-native')?.id as string);
    expect(native.get('/Plan')?.mimeType).toBe(MIME.document);
    expect(native.get('/Numbers')?.mimeType).toBe(MIME.spreadsheet);
    expect(native.get('/Sketch.svg')?.mimeType).toBe('image/svg+xml'); // drawings cannot be imported back
    expect(native.get('/real.docx')?.mimeType).toBe(MIME.docx); // no user.gdrive.mime: stays a file
    // A second backup of the restored documents exports the same bytes as the first.
    const again = await backup('gdrive:///rt-docs-native');
    expect(again.contents.get('/rt-docs-native/Plan.docx')).toEqual(out.contents.get('/rt-docs/Plan.docx'));
    expect(again.contents.get('/rt-docs-native/Numbers.xlsx')).toEqual(out.contents.get('/rt-docs/Numbers.xlsx'));

    await restore('gdrive:///rt-docs-files', entries);
    const plain = treeOf(e.lookup('rt-docs-files')?.id as string);
    expect(plain.get('/Plan.docx')?.mimeType).toBe(MIME.docx);
    expect(await e.content(plain.get('/Plan.docx')?.id as string)).toEqual(out.contents.get('/rt-docs/Plan.docx'));
  });

  it('on_conflict: overwrite replaces content in place, skip keeps the file, rename adds a numbered copy', async () => {
    const e = drive.emu;
    const file = (content: string): ExportEntry[] => [
      { path: '/', info: { name: 'x', mode: 0x800001ed } },
      { path: '/sub', info: { name: 'sub', mode: 0x800001ed } },
      { path: '/sub/a.txt', info: { name: 'a.txt', mode: 0o644, size: content.length, modTime: { seconds: 1_600_000_000, nanos: 0 } }, content: Buffer.from(content) },
    ];
    await restore('gdrive:///conflicts', file('version 1'));
    const folder = e.lookup('conflicts/sub')?.id as string;
    const original = e.children(folder)[0] as EmuFile;

    await restore('gdrive:///conflicts', file('version 2'));
    expect(e.children(e.lookup('conflicts')?.id as string).map((c) => c.name)).toEqual(['sub']);
    expect(e.children(folder).map((c) => [c.id, c.name])).toEqual([[original.id, 'a.txt']]);
    expect((await e.content(original.id)).toString()).toBe('version 2');

    await restore('gdrive:///conflicts', file('version 3'), { on_conflict: 'skip' });
    expect((await e.content(original.id)).toString()).toBe('version 2');
    expect(e.children(folder)).toHaveLength(1);

    await restore('gdrive:///conflicts', file('version 4'), { on_conflict: 'rename' });
    await restore('gdrive:///conflicts', file('version 5'), { on_conflict: 'rename' });
    const names = e.children(folder).map((c) => c.name).sort();
    expect(names).toEqual(['a (1).txt', 'a (2).txt', 'a.txt']);
    expect((await e.content(e.lookup('conflicts/sub/a (2).txt')?.id as string)).toString()).toBe('version 5');
  });

  it('shortcuts backed up as links are restored as shortcuts to the restored targets', async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'rt-links');
    const target = await e.createFile(top, 'target.txt', 'pointed at');
    const elsewhere = await e.createFile(undefined, 'outside.txt', 'not in the backup');
    e.createShortcut(top, 'to-target', target);
    e.createShortcut(top, 'to-outside', elsewhere);
    const out = await backup('gdrive:///rt-links', { shortcuts: 'link' });
    await restore('gdrive:///rt-links-dst', entriesFromImport(out, '/rt-links'));
    const dst = treeOf(e.lookup('rt-links-dst')?.id as string);
    expect(dst.get('/to-target')?.shortcut?.targetId).toBe(dst.get('/target.txt')?.id);
    expect(dst.get('/to-outside')?.shortcut?.targetId).toBe(elsewhere);
  });

  it('an upload whose MD5 Drive reports differently is an error for that file only, and the damaged file is removed', async () => {
    const e = drive.emu;
    const small = (name: string): ExportEntry => ({
      path: `/${name}`,
      info: { name, mode: 0o644, size: 11, modTime: { seconds: 1_600_000_000, nanos: 0 } },
      content: Buffer.from(`${name.slice(0, 4)} bytes.`.padEnd(11, '.')),
    });
    const big = Buffer.alloc(2 * 1024 * 1024 + 5, 9);
    const entries: ExportEntry[] = [
      { path: '/', info: { name: 'x', mode: 0x800001ed } },
      small('one.txt'),
      small('two.txt'),
      { path: '/big.bin', info: { name: 'big.bin', mode: 0o644, size: big.length, modTime: { seconds: 1_600_000_000, nanos: 0 } }, content: big },
    ];
    // One multipart upload (a small file) and one chunk of the resumable upload (big.bin) arrive damaged.
    e.addFault({ routes: ['upload'], when: (r) => r.url.searchParams.get('uploadType') === 'multipart', action: { kind: 'corrupt' } });
    e.addFault({ routes: ['chunk'], action: { kind: 'corrupt' } });
    const c = await connect('exporter', drive.config('gdrive:///damaged', { chunk_size: '1MiB' }));
    const out = await c.host.exportTree(entries);
    c.close();
    e.clearFaults();
    expect(out.status.code, out.status.details).toBe(0);
    const failed = out.itemErrors.map((x) => x.pathname).sort();
    expect(failed).toHaveLength(2);
    expect(failed[0]).toBe('/big.bin');
    expect(['/one.txt', '/two.txt']).toContain(failed[1]);
    for (const x of out.itemErrors) expect(x.error).toMatch(/MD5 mismatch after upload: sent [0-9a-f]{32}, Drive stored [0-9a-f]{32} \(the damaged file was removed\)/);
    const left = e.children(e.lookup('damaged')?.id as string).map((f) => f.name);
    const good = failed[1] === '/one.txt' ? 'two.txt' : 'one.txt';
    expect(left).toEqual([good]);
    expect((await e.content(e.lookup(`damaged/${good}`)?.id as string)).toString()).toBe(`${good.slice(0, 4)} bytes.`.padEnd(11, '.'));
  });

  it('restores into a shared drive and below root_folder_id', async () => {
    const e = drive.emu;
    const team = e.createSharedDrive('Restores');
    const holder = e.createFolder(undefined, 'holder');
    const entries: ExportEntry[] = [
      { path: '/', info: { name: 'x', mode: 0x800001ed } },
      { path: '/d', info: { name: 'd', mode: 0x800001ed } },
      { path: '/d/f.txt', info: { name: 'f.txt', mode: 0o644, size: 5, modTime: { seconds: 1_600_000_000, nanos: 0 } }, content: Buffer.from('hello') },
      { path: '/big.bin', info: { name: 'big.bin', mode: 0o644, size: 1_500_000 }, content: Buffer.alloc(1_500_000, 3) },
    ];
    await restore('gdrive:///into/team', entries, { drive: 'Restores' });
    expect((await e.content(e.lookup('into/team/d/f.txt', team)?.id as string)).toString()).toBe('hello');
    expect(e.lookup('into/team/big.bin', team)?.size).toBe(1_500_000);
    expect(e.lookup('into/team/d/f.txt', team)?.driveId).toBe(team);
    await restore('gdrive:///below', entries, { root_folder_id: holder });
    expect((await e.content(e.lookup('holder/below/d/f.txt')?.id as string)).toString()).toBe('hello');
  });

  it('uploads run in parallel, up to `concurrency`', async () => {
    const e = drive.emu;
    const entries: ExportEntry[] = [{ path: '/', info: { name: 'p', mode: 0x800001ed } }];
    for (let i = 0; i < 8; i++) {
      const content = Buffer.alloc(300_000 + i, i);
      entries.push({ path: `/f${i}.bin`, info: { name: `f${i}.bin`, mode: 0o644, size: content.length }, content });
    }
    e.resetStats();
    e.latencyMs = 100;
    try {
      await restore('gdrive:///parallel', entries, { concurrency: '4' });
    } finally {
      e.latencyMs = 0;
    }
    expect(e.stats.maxInFlight).toBeGreaterThanOrEqual(3);
    expect(e.stats.maxInFlight).toBeLessThanOrEqual(4 + 1);
  });
});
