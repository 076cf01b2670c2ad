// Backup → restore → compare: a OneDrive tree read by the importer, written back by the exporter, compared byte for byte,
// hash for hash and time for time; then the restored tree is read again and gives the same records.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GraphEmulator } from '../../servers/graph-emulator.ts';
import { backup, BIG_FILE_BYTES, emulator, filesUnder, pseudoRandom, restoreEntries, served, tempDir } from './helpers.ts';

let emu: GraphEmulator;
let tmp: { dir: string; cleanup(): Promise<void> };
beforeAll(async () => {
  emu = await emulator({ deltaPageSize: 50, pageSize: 50 });
  tmp = await tempDir();
});
afterAll(async () => {
  await emu?.close();
  await tmp?.cleanup();
});

describe('onedrive round trip: backup → restore → compare', () => {
  it(`restores nested folders, unicode names, empty files and a ${Math.round(BIG_FILE_BYTES / 1048576)} MiB file identically`, async () => {
    const seeded: Array<[string, Buffer, Date]> = [
      ['/top.txt', Buffer.from('top'), new Date('2019-01-01T00:00:01Z')],
      ['/empty.dat', Buffer.alloc(0), new Date('2019-02-02T02:02:02Z')],
      ['/日本語/フォルダ/ファイル.txt', Buffer.from('こんにちは'), new Date('2020-03-03T03:03:03Z')],
      ['/accents/éèêë àâ ç.md', Buffer.from('# accents'), new Date('2020-04-04T04:04:04Z')],
      ['/symbols/a & b + c ≠ d @ e \' f #%.txt', Buffer.from('symbols'), new Date('2021-05-05T05:05:05Z')],
      ['/a/b/c/d/e/f/g/deep.bin', pseudoRandom(777_777, 7), new Date('2022-06-06T06:06:06Z')],
      ['/big/large.bin', pseudoRandom(BIG_FILE_BYTES, 11), new Date('2023-07-07T07:07:07Z')],
    ];
    for (const [p, data, mtime] of seeded) await emu.store.writeFile(emu.me, `/Source${p}`, data, { mtime });
    emu.store.mkdirp(emu.me, '/Source/empty folder', { mtime: new Date('2018-08-08T08:08:08Z') });

    const first = await backup(emu.config('onedrive:///Source'), tmp.dir);
    expect(first.outcome.itemErrors).toEqual([]);
    expect(first.outcome.errors).toEqual([]);

    const s = await served('exporter', emu.config('onedrive:///Restored', { chunk_size: '5MiB' }), { maxConcurrency: 4 });
    try {
      const out = await s.host.exportTree(restoreEntries(first.outcome.records, first.files, first.root));
      expect(out.status.code).toBe(0);
      expect(out.itemErrors).toEqual([]);
    } finally {
      s.close();
    }

    const src = filesUnder(emu, emu.me, '/Source');
    const dst = filesUnder(emu, emu.me, '/Restored');
    expect([...dst.keys()].sort()).toEqual([...src.keys()].sort());
    for (const [p, a] of src) {
      const b = dst.get(p);
      expect(b?.kind, p).toBe(a.kind);
      expect(b?.fsModified, p).toBe(a.fsModified);
      if (a.kind === 'file') {
        expect(b?.size, p).toBe(a.size);
        expect(b?.hashes, p).toEqual(a.hashes);
      }
    }

    // Reading the restored tree gives the same records, path for path (relative to each root).
    const second = await backup(emu.config('onedrive:///Restored'), tmp.dir);
    const shape = (records: typeof first.outcome.records, root: string) =>
      records
        .map((r) => ({
          path: r.pathname === root ? '/' : r.pathname.slice(root.length),
          xattr: r.isXattr ? r.xattrName : '',
          size: r.fileInfo?.size,
          mode: r.fileInfo?.mode,
          mtime: r.fileInfo?.modTime,
        }))
        .filter((r) => r.path !== '/')
        .sort((x, y) => (x.path === y.path ? (x.xattr < y.xattr ? -1 : 1) : x.path < y.path ? -1 : 1));
    expect(shape(second.outcome.records, '/Restored')).toEqual(shape(first.outcome.records, '/Source'));
  }, 1_800_000);
});
