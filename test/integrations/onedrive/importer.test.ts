// onedrive importer against the Graph emulator: delta and children listings, records, OneNote, hashes, downloads.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODE } from '../../harness/index.ts';
import type { GraphEmulator } from '../../servers/graph-emulator.ts';
import { emulator, itemAt, pseudoRandom, served } from './helpers.ts';

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');
const T1 = new Date('2021-06-07T08:09:10Z');

/** A small hostile tree: nested folders, unicode, spaces and symbols OneDrive allows, empty files and folders. */
async function seedTree(emu: GraphEmulator, base: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>([
    ['/a.txt', Buffer.from('alpha')],
    ['/empty.bin', Buffer.alloc(0)],
    ['/Ünïcödé 文件/ça & va + ≠ @ \' #%.txt', Buffer.from('unicode')],
    ['/deep/er/and/deeper/leaf.dat', pseudoRandom(300_000, 5)],
    ['/deep/er/sibling.txt', Buffer.from('sib')],
  ]);
  for (const [p, data] of files) await emu.store.writeFile(emu.me, `${base}${p}`, data, { mtime: T1 });
  emu.store.mkdirp(emu.me, `${base}/empty folder`, { mtime: T1 });
  return files;
}

describe('onedrive importer: listing and records', () => {
  let emu: GraphEmulator;
  beforeAll(async () => {
    emu = await emulator({ deltaPageSize: 3, pageSize: 2, deltaOrder: 'shuffled' });
  });
  afterAll(async () => {
    await emu?.close();
  });

  it('lists a folder with delta (children before parents, many pages) and streams verified content', async () => {
    const files = await seedTree(emu, '/Src');
    const s = await served('importer', emu.config('onedrive:///Src'));
    try {
      expect(s.host.initResult).toMatchObject({ origin: emu.me.id, type: 'onedrive', root: '/Src' });
      const out = await s.host.importAll({ content: 'sha256' });
      expect(out.status.code).toBe(0);
      expect(out.itemErrors).toEqual([]);
      expect(out.errors).toEqual([]);
      const paths = out.records.filter((r) => !r.isXattr).map((r) => r.pathname).sort();
      expect(paths).toEqual(
        [
          '/Src',
          '/Src/a.txt',
          '/Src/empty.bin',
          '/Src/Ünïcödé 文件',
          '/Src/Ünïcödé 文件/ça & va + ≠ @ \' #%.txt',
          '/Src/deep',
          '/Src/deep/er',
          '/Src/deep/er/and',
          '/Src/deep/er/and/deeper',
          '/Src/deep/er/and/deeper/leaf.dat',
          '/Src/deep/er/sibling.txt',
          '/Src/empty folder',
        ].sort(),
      );
      for (const [p, data] of files) {
        const r = out.records.find((x) => x.pathname === `/Src${p}`);
        expect(r?.fileInfo).toMatchObject({ size: data.length, mode: 0o644, modTime: { seconds: T1.getTime() / 1000, nanos: 0 }, nlink: 1 });
        expect(r?.fileInfo?.name).toBe(p.split('/').pop());
        expect(out.contents.get(`/Src${p}`)).toBe(sha256(data));
      }
      // OneDrive's hashes are kept as extended attributes of each file, with the values Graph reported.
      for (const p of files.keys()) {
        const hashes = itemAt(emu, emu.me, `/Src${p}`)?.hashes;
        const xattrs = out.records.filter((r) => r.isXattr && r.pathname === `/Src${p}`);
        expect(xattrs.map((r) => r.xattrName), p).toEqual(['user.onedrive.quickxorhash', 'user.onedrive.sha1', 'user.onedrive.sha256']);
        expect(out.records.find((r) => !r.isXattr && r.pathname === `/Src${p}`)?.extendedAttributes).toEqual(xattrs.map((r) => r.xattrName));
        expect(out.contents.get(`xattr:/Src${p}:user.onedrive.quickxorhash`)).toBe(sha256(hashes?.quickXorHash as string));
        expect(out.contents.get(`xattr:/Src${p}:user.onedrive.sha1`)).toBe(sha256(hashes?.sha1Hash as string));
        expect(out.contents.get(`xattr:/Src${p}:user.onedrive.sha256`)).toBe(sha256(hashes?.sha256Hash as string));
      }
      const dir = out.records.find((x) => x.pathname === '/Src/empty folder');
      expect(dir?.fileInfo?.mode).toBe((MODE.DIR | 0o755) >>> 0);
      expect(dir?.fileInfo?.modTime?.seconds).toBe(T1.getTime() / 1000);
      // Delta: a handful of paged calls, no per-folder listing.
      expect(emu.count((r) => r.path.endsWith('/children'))).toBe(0);
    } finally {
      s.close();
    }
  });

  it('records no hash attributes when the host asks for none (backup -no-xattr), and still verifies content', async () => {
    const s = await served('importer', emu.config('onedrive:///Src/deep'), { noxattr: true });
    try {
      const out = await s.host.importAll({ content: 'sha256' });
      expect(out.itemErrors).toEqual([]);
      expect(out.records.filter((r) => r.isXattr)).toEqual([]);
      expect(out.contents.get('/Src/deep/er/sibling.txt')).toBe(sha256('sib'));
    } finally {
      s.close();
    }
  });

  it('gives identical records on a second run (incremental stability)', async () => {
    const run = async (): Promise<string> => {
      const s = await served('importer', emu.config('onedrive:///Src'));
      try {
        const out = await s.host.importAll({ openContent: false });
        return JSON.stringify(out.records.map((r) => [r.pathname, r.fileInfo]).sort());
      } finally {
        s.close();
      }
    };
    expect(await run()).toBe(await run());
  });

  it('walks children folder by folder where the drive has no delta for the folder (business subfolder)', async () => {
    const work = emu.createDrive({ driveType: 'business', owner: 'Work User' });
    await emu.store.writeFile(work, '/Team/x/y.txt', 'why', { mtime: T1 });
    await emu.store.writeFile(work, '/Team/z.txt', 'zed', { mtime: T1 });
    const s = await served('importer', emu.config('onedrive:///Team', { drive_id: work.id }, work));
    try {
      const out = await s.host.importAll({ content: 'sha256' });
      expect(out.records.filter((r) => !r.isXattr).map((r) => r.pathname).sort()).toEqual(['/Team', '/Team/x', '/Team/x/y.txt', '/Team/z.txt']);
      expect(out.contents.get('/Team/x/y.txt')).toBe(sha256('why'));
      expect(emu.count((r) => r.path.includes(encodeURIComponent(work.id)) && r.path.endsWith('/delta') && r.status === 400)).toBe(1);
    } finally {
      s.close();
    }
    // listing=children forces the walk; listing=delta refuses to fall back.
    const forced = await served('importer', emu.config('onedrive:///Team', { drive_id: work.id, listing: 'delta' }, work));
    try {
      await expect(forced.host.importAll()).rejects.toThrow(
        /rpc error: code = Unknown desc = onedrive importer: cannot list \/Team \(delta\): invalidRequest: Delta is only supported on the root folder/,
      );
    } finally {
      forced.close();
    }
  });

  it('skips OneNote notebooks with a note per notebook, unless include_onenote is set', async () => {
    const nb = emu.store.createFolder(emu.me, emu.store.mkdirp(emu.me, '/Notes'), 'My Notebook', 'fail', { packageType: 'oneNote' }).item;
    const section = emu.store.createFolder(emu.me, nb, 'Section group').item;
    await emu.store.writeFile(emu.me, '/Notes/My Notebook/Section group/s1.one', 'one');
    void section;
    await emu.store.writeFile(emu.me, '/Notes/todo.txt', 'todo');
    const skip = await served('importer', emu.config('onedrive:///Notes'));
    try {
      const out = await skip.host.importAll();
      expect(out.records.filter((r) => !r.error && !r.isXattr).map((r) => r.pathname).sort()).toEqual(['/Notes', '/Notes/todo.txt']);
      expect(out.errors).toEqual([{ pathname: '/Notes/My Notebook', error: 'OneNote notebook not backed up (set include_onenote=true to back up its files)' }]);
    } finally {
      skip.close();
    }
    const include = await served('importer', emu.config('onedrive:///Notes', { include_onenote: 'true' }));
    try {
      const out = await include.host.importAll({ content: 'sha256' });
      expect(out.errors).toEqual([]);
      expect(out.records.map((r) => r.pathname)).toContain('/Notes/My Notebook/Section group/s1.one');
      expect(out.contents.get('/Notes/My Notebook/Section group/s1.one')).toBe(sha256('one'));
    } finally {
      include.close();
    }
  });

  it('notes items shared from another drive and files flagged as malware instead of backing them up', async () => {
    const folder = emu.store.mkdirp(emu.me, '/Mixed');
    const shared = emu.store.createFolder(emu.me, folder, 'Shared with me').item;
    shared.remote = { driveId: 'OTHER', id: 'OTHER!1' };
    const bad = await emu.store.writeFile(emu.me, '/Mixed/bad.exe', 'MZ');
    bad.malware = true;
    const s = await served('importer', emu.config('onedrive:///Mixed'));
    try {
      const out = await s.host.importAll();
      expect(out.errors.map((e) => e.pathname).sort()).toEqual(['/Mixed/Shared with me', '/Mixed/bad.exe']);
      expect(out.errors.find((e) => e.pathname === '/Mixed/Shared with me')?.error).toMatch(/shared item from another drive/);
    } finally {
      s.close();
    }
  });

  it('fails a file whose content no longer matches its hashes, and the backup goes on', async () => {
    await emu.store.writeFile(emu.me, '/Corrupt/good.txt', 'good');
    const victim = await emu.store.writeFile(emu.me, '/Corrupt/victim.txt', 'original content');
    const s = await served('importer', emu.config('onedrive:///Corrupt'));
    try {
      // Bit rot behind the metadata's back (same size, different bytes).
      await writeFile(victim.blob as string, 'ORIGINAL CONTENT');
      const out = await s.host.importAll({ content: 'sha256' });
      expect(out.status.code).toBe(0);
      expect(out.contents.get('/Corrupt/good.txt')).toBe(sha256('good'));
      expect(out.itemErrors).toHaveLength(1);
      expect(out.itemErrors[0]?.pathname).toBe('/Corrupt/victim.txt');
      expect(out.itemErrors[0]?.message).toBe(
        'failed to receive file data: onedrive importer: cannot read /Corrupt/victim.txt: the downloaded content does not match what OneDrive reported (quickXorHash, sha1Hash, sha256Hash); the file changed during the backup or the download was corrupted',
      );
    } finally {
      s.close();
    }
  });

  it('resumes a download from where the connection broke, and replaces an expired download URL', async () => {
    const data = pseudoRandom(3 * 1024 * 1024, 77);
    await emu.store.writeFile(emu.me, '/Resume/big.bin', data);
    const s = await served('importer', emu.config('onedrive:///Resume'));
    const mark = emu.faults.log.length;
    try {
      emu.drop(2, { afterBytes: 700_000, match: (r) => r.kind === 'download' });
      const out = await s.host.importAll({ content: 'sha256' });
      expect(out.itemErrors).toEqual([]);
      expect(out.contents.get('/Resume/big.bin')).toBe(sha256(data));
      const ranges = emu.faults.log.slice(mark).filter((r) => r.kind === 'download').map((r) => r.range);
      expect(ranges).toEqual(['bytes=0-3145727', 'bytes=700000-3145727', 'bytes=1400000-3145727']);
    } finally {
      s.close();
    }
    const again = await served('importer', emu.config('onedrive:///Resume'));
    try {
      // The listing happens first; then every pre-authenticated URL expires before the file is read.
      const out = await again.host.importAll({
        content: 'sha256',
        onRecord: () => emu.expireDownloadUrls(),
      });
      expect(out.itemErrors).toEqual([]);
      expect(out.contents.get('/Resume/big.bin')).toBe(sha256(data));
    } finally {
      again.close();
    }
    expect(itemAt(emu, emu.me, '/Resume/big.bin')?.size).toBe(data.length);
  });
});
