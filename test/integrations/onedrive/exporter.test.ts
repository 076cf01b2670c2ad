// onedrive exporter against the Graph emulator: folders, simple and session uploads, times, conflicts, names, faults.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entriesFromTree, MODE, type ExportEntry } from '../../harness/index.ts';
import type { GraphEmulator } from '../../servers/graph-emulator.ts';
import { emulator, filesUnder, itemAt, pseudoRandom, served } from './helpers.ts';

const sha256hex = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex').toUpperCase();
const T = { seconds: 1_650_000_000, nanos: 500_000_000 };
const TISO = '2022-04-15T05:20:00Z';

let emu: GraphEmulator;
beforeAll(async () => {
  emu = await emulator();
});
afterAll(async () => {
  await emu?.close();
});

async function restore(location: string, entries: ExportEntry[], extra: Record<string, string> = {}, maxConcurrency = 4) {
  const s = await served('exporter', emu.config(location, extra), { maxConcurrency });
  try {
    return await s.host.exportTree(entries);
  } finally {
    s.close();
  }
}

describe('onedrive exporter: restores', () => {
  it('creates folders, uploads small files in one PUT and large ones in fragments, keeps times, in parallel', async () => {
    const big = pseudoRandom(2 * 1024 * 1024 + 99, 21);
    const entries = entriesFromTree({ 'small.txt': 'small', 'empty': '', nested: { deeper: { 'big.bin': big, 'ünï 文.txt': 'u' } }, 'empty dir': {} }, { modTime: T });
    const mark = emu.faults.log.length;
    const out = await restore('onedrive:///Restore/one', entries, { chunk_size: '640KiB', upload_cutoff: '1MiB' });
    expect(out.status.code).toBe(0);
    expect(out.itemErrors).toEqual([]);
    const files = filesUnder(emu, emu.me, '/Restore/one');
    expect([...files.keys()].sort()).toEqual(['/empty', '/empty dir', '/nested', '/nested/deeper', '/nested/deeper/big.bin', '/nested/deeper/ünï 文.txt', '/small.txt']);
    expect(files.get('/nested/deeper/big.bin')?.hashes?.sha256Hash).toBe(sha256hex(big));
    expect(files.get('/small.txt')?.hashes?.sha256Hash).toBe(sha256hex('small'));
    expect(files.get('/empty')?.size).toBe(0);
    for (const f of files.values()) expect(f.fsModified).toBe(TISO);
    expect(itemAt(emu, emu.me, '/Restore/one')?.fsModified).toBe(TISO);
    const log = emu.faults.log.slice(mark);
    // big.bin: 2 MiB + 99 in 640 KiB fragments = 4 PUTs to the pre-authenticated URL, none with a token.
    expect(log.filter((r) => r.kind === 'upload' && r.method === 'PUT').length).toBe(4);
    expect(log.filter((r) => r.kind === 'graph' && r.method === 'PUT' && r.path.endsWith('/content')).length).toBe(3);
  });

  it('runs uploads in parallel, up to the host’s -concurrency or the concurrency option', async () => {
    const files = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`f${i}.bin`, pseudoRandom(1_000_000, 60 + i)]));
    const peak = async (location: string, extra: Record<string, string>, maxConcurrency: number): Promise<number> => {
      let most = 0;
      // Sampled as each fragment arrives, and each fragment held back a little so that uploads overlap when they can.
      emu.delay(1000, 50, (r) => {
        if (r.kind === 'upload' && r.method === 'PUT') most = Math.max(most, emu.openSessions);
        return r.kind === 'upload' && r.method === 'PUT';
      });
      const out = await restore(location, entriesFromTree(files, { modTime: T }), { upload_cutoff: '100KiB', chunk_size: '320KiB', ...extra }, maxConcurrency);
      emu.faults.clear();
      expect(out.itemErrors).toEqual([]);
      expect(filesUnder(emu, emu.me, location.slice('onedrive://'.length)).size).toBe(6);
      return most;
    };
    const parallel = await peak('onedrive:///Restore/parallel', {}, 4);
    expect(parallel).toBeGreaterThan(1);
    expect(parallel).toBeLessThanOrEqual(4);
    expect(await peak('onedrive:///Restore/serial', { concurrency: '1' }, 4)).toBe(1);
  });

  it('sends Graph calls through the Graph client’s middleware chain, and no token to pre-authenticated URLs', async () => {
    const mark = emu.faults.log.length;
    const out = await restore('onedrive:///Restore/chain', entriesFromTree({ 'big.bin': pseudoRandom(700_000, 8), 'small.txt': 's' }, { modTime: T }), {
      chunk_size: '320KiB',
      upload_cutoff: '100KiB',
    });
    expect(out.itemErrors).toEqual([]);
    const log = emu.faults.log.slice(mark);
    const graph = log.filter((r) => r.kind === 'graph');
    const upload = log.filter((r) => r.kind === 'upload');
    expect(graph.length).toBeGreaterThan(3);
    expect(upload.length).toBe(3);
    // TelemetryHandler's SdkVersion header and AuthenticationHandler's bearer token on every Graph call.
    for (const r of graph) expect(r.sdkVersion, `${r.method} ${r.path}`).toMatch(/^graph-js\/\d+\.\d+\.\d+/);
    for (const r of graph) expect(r.authorized, `${r.method} ${r.path}`).toBe(true);
    for (const r of upload) expect(r.authorized).toBe(false);
  });

  it('checks the QuickXorHash OneDrive computed: a file damaged on the way is an error for that file, and removed', async () => {
    const big = pseudoRandom(1_500_000, 5);
    emu.corrupt(1, (r) => r.kind === 'graph' && r.method === 'PUT' && r.path.endsWith('/small.txt:/content'));
    emu.corrupt(1, (r) => r.kind === 'upload' && r.method === 'PUT');
    const out = await restore('onedrive:///Restore/damaged', entriesFromTree({ 'small.txt': 'small', 'big.bin': big, 'ok.txt': 'fine' }, { modTime: T }), {
      upload_cutoff: '1MiB',
      chunk_size: '640KiB',
    });
    expect(out.status.code).toBe(0);
    expect([...out.itemErrors].sort((x, y) => (x.pathname < y.pathname ? -1 : 1))).toEqual([
      {
        pathname: '/big.bin',
        error:
          'onedrive exporter: cannot restore /big.bin to /Restore/damaged/big.bin: OneDrive stored a quickXorHash that differs from the content sent (damaged on the way); the damaged copy was removed',
      },
      {
        pathname: '/small.txt',
        error:
          'onedrive exporter: cannot restore /small.txt to /Restore/damaged/small.txt: OneDrive stored a quickXorHash that differs from the content sent (damaged on the way); the damaged copy was removed',
      },
    ]);
    expect([...filesUnder(emu, emu.me, '/Restore/damaged').keys()]).toEqual(['/ok.txt']);
    expect(emu.faults.pending).toBe(0);
  });

  it('maps characters OneDrive refuses to look-alikes instead of failing', async () => {
    const out = await restore('onedrive:///Restore/names', entriesFromTree({ 'what?.txt': 'q', 'a:b|c<d>"e*\\f': 'x' }, { modTime: T }));
    expect(out.itemErrors).toEqual([]);
    expect([...filesUnder(emu, emu.me, '/Restore/names').keys()].sort()).toEqual(['/a：b｜c＜d＞＂e＊＼f', '/what？.txt']);
  });

  it('applies on_conflict: overwrite, skip and rename', async () => {
    const first = entriesFromTree({ 'doc.txt': 'version one', 'big.bin': pseudoRandom(1_500_000, 1) }, { modTime: T });
    const second = entriesFromTree({ 'doc.txt': 'version two', 'big.bin': pseudoRandom(1_500_000, 2) }, { modTime: T });
    const opts = { upload_cutoff: '1MiB', chunk_size: '640KiB' };
    await restore('onedrive:///Restore/conflict', first, opts);

    expect((await restore('onedrive:///Restore/conflict', second, { ...opts, on_conflict: 'skip' })).itemErrors).toEqual([]);
    let files = filesUnder(emu, emu.me, '/Restore/conflict');
    expect(files.get('/doc.txt')?.hashes?.sha256Hash).toBe(sha256hex('version one'));
    expect(files.get('/big.bin')?.hashes?.sha256Hash).toBe(sha256hex(pseudoRandom(1_500_000, 1)));

    expect((await restore('onedrive:///Restore/conflict', second, { ...opts, on_conflict: 'rename' })).itemErrors).toEqual([]);
    files = filesUnder(emu, emu.me, '/Restore/conflict');
    expect([...files.keys()].sort()).toEqual(['/big 1.bin', '/big.bin', '/doc 1.txt', '/doc.txt']);
    expect(files.get('/doc 1.txt')?.hashes?.sha256Hash).toBe(sha256hex('version two'));

    expect((await restore('onedrive:///Restore/conflict', second, opts)).itemErrors).toEqual([]);
    files = filesUnder(emu, emu.me, '/Restore/conflict');
    expect(files.get('/doc.txt')?.hashes?.sha256Hash).toBe(sha256hex('version two'));
    expect(files.get('/big.bin')?.hashes?.sha256Hash).toBe(sha256hex(pseudoRandom(1_500_000, 2)));
  });

  it('resends a fragment whose reply was lost and follows nextExpectedRanges after a 416', async () => {
    const data = pseudoRandom(2_000_000, 33);
    // Fragment 1 is cut mid-body (lost); fragment 1 again gets a 503; fragment 2 is stored but its reply is lost,
    // so the client asks the session where to go on; fragment 3 is answered 416 once (already received, says the service).
    const put = (r: { kind: string; method: string }): boolean => r.kind === 'upload' && r.method === 'PUT';
    emu.drop(1, { afterBytes: 300_000, match: put });
    emu.fail(1, { status: 503, code: 'serviceNotAvailable', match: put });
    let puts = 0;
    emu.drop(1, { afterCommit: true, match: (r) => put(r) && ++puts === 2 });
    let later = 0;
    emu.fail(1, { status: 416, code: 'requestedRangeNotSatisfiable', match: (r) => put(r) && ++later === 2 });
    const mark = emu.faults.log.length;
    const out = await restore('onedrive:///Restore/frag', entriesFromTree({ 'f.bin': data }, { modTime: T }), { upload_cutoff: '1MiB', chunk_size: '640KiB' });
    expect(out.itemErrors).toEqual([]);
    expect(itemAt(emu, emu.me, '/Restore/frag/f.bin')?.hashes?.sha256Hash).toBe(sha256hex(data));
    expect(emu.openSessions).toBe(0);
    const uploads = emu.faults.log.slice(mark).filter((r) => r.kind === 'upload').map((r) => `${r.method} ${r.status} ${r.range ?? ''}`);
    expect(uploads).toEqual([
      'PUT 0 bytes 0-655359/2000000',
      'GET 200 ',
      'PUT 503 bytes 0-655359/2000000',
      'GET 200 ',
      'PUT 202 bytes 0-655359/2000000',
      'PUT 0 bytes 655360-1310719/2000000',
      'GET 200 ',
      'PUT 416 bytes 1310720-1966079/2000000',
      'GET 200 ',
      'PUT 202 bytes 1310720-1966079/2000000',
      'PUT 201 bytes 1966080-1999999/2000000',
    ]);
  });

  it('reports an upload session that expires part-way as that file’s error; the restore goes on', async () => {
    const data = pseudoRandom(2_000_000, 44);
    let puts = 0;
    emu.delay(1, 1, (r) => {
      if (r.kind === 'upload' && r.method === 'PUT' && ++puts === 2) {
        emu.expireSessions();
        return true;
      }
      return false;
    });
    const out = await restore('onedrive:///Restore/expire', entriesFromTree({ 'a.bin': data, 'b.txt': 'fine' }, { modTime: T }), { upload_cutoff: '1MiB', chunk_size: '640KiB' }, 1);
    expect(out.status.code).toBe(0);
    expect(out.itemErrors).toEqual([
      {
        pathname: '/a.bin',
        error:
          'onedrive exporter: cannot restore /a.bin to /Restore/expire/a.bin: the upload session expired part-way and the content cannot be read again; restore this file again',
      },
    ]);
    expect(itemAt(emu, emu.me, '/Restore/expire/b.txt')?.size).toBe(4);
    expect(itemAt(emu, emu.me, '/Restore/expire/a.bin')).toBeUndefined();
  });

  it('stops the restore with a clear message when the drive is full', async () => {
    const small = emu.createDrive({ quotaTotal: 1000 });
    const s = await served('exporter', emu.config('onedrive:///Full', { drive_id: small.id }, emu.me), { maxConcurrency: 1 });
    try {
      await expect(s.host.exportTree(entriesFromTree({ 'a.bin': pseudoRandom(600, 1), 'b.bin': pseudoRandom(600, 2), 'c.bin': pseudoRandom(600, 3) }))).rejects.toThrow(
        'rpc error: code = ResourceExhausted desc = onedrive exporter: cannot restore /b.bin to /Full/b.bin: the drive is full (quotaLimitReached); free some space or raise the quota',
      );
    } finally {
      s.close();
    }
  });

  it('restores files whose size the snapshot does not give, small and large', async () => {
    const big = pseudoRandom(1_500_000, 71);
    const entries: ExportEntry[] = [
      { path: '/', info: { name: 'unknown', mode: 0x800001ed } },
      { path: '/small.txt', info: { name: 'small.txt', mode: 0o644, size: -1, modTime: T }, content: Buffer.from('small') },
      { path: '/big.bin', info: { name: 'big.bin', mode: 0o644, size: -1, modTime: T }, content: big },
    ];
    const out = await restore('onedrive:///Restore/unknown', entries, { upload_cutoff: '1MiB', chunk_size: '640KiB' });
    expect(out.itemErrors).toEqual([]);
    const files = filesUnder(emu, emu.me, '/Restore/unknown');
    expect(files.get('/small.txt')?.hashes?.sha256Hash).toBe(sha256hex('small'));
    expect(files.get('/big.bin')?.hashes?.sha256Hash).toBe(sha256hex(big));
    expect(files.get('/big.bin')?.fsModified).toBe(TISO);
  });

  it('restores a single file (the host sends a synthetic / first)', async () => {
    const entries: ExportEntry[] = [{ path: '/only.txt', info: { name: 'only.txt', mode: 0o644, size: 4, modTime: T }, content: Buffer.from('only') }];
    const out = await restore('onedrive:///Restore/single', entries);
    expect(out.itemErrors).toEqual([]);
    expect(itemAt(emu, emu.me, '/Restore/single/only.txt')?.fsModified).toBe(TISO);
    expect(MODE.DIR).toBeGreaterThan(0);
  });
});
