// Faults the gdrive connectors must survive or report clearly: token expiry, throttling storms, 5xx, dropped
// connections (downloads and uploads resume), expired upload sessions, lost answers, quotas and exhausted retries.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESOURCE, type ExportEntry } from '../../harness/index.ts';
import { connect, connectRaw, startDrive, type TestDrive } from './helpers.ts';

let drive: TestDrive;
beforeAll(async () => {
  drive = await startDrive();
});
afterAll(async () => {
  await drive.close();
});

/** A folder of `count` small files and one of `bigBytes`; returns its name. */
async function seed(name: string, count: number, bigBytes = 0): Promise<string> {
  const e = drive.emu;
  const top = e.createFolder(undefined, name);
  for (let i = 0; i < count; i++) await e.createFile(top, `f${i}.txt`, `content ${i} of ${name}`);
  if (bigBytes > 0) await e.createFile(top, 'big.bin', { size: bigBytes, seed: 9 });
  return name;
}

/** How many file contents (not extended attributes) an import read. */
function fileContents(out: { contents: Map<string, unknown> }): number {
  return [...out.contents.keys()].filter((k) => !k.startsWith('xattr:')).length;
}

function filesTree(count: number, size: number): ExportEntry[] {
  const entries: ExportEntry[] = [{ path: '/', info: { name: 'r', mode: 0x800001ed } }];
  for (let i = 0; i < count; i++) {
    const content = Buffer.alloc(size, i + 1);
    entries.push({ path: `/f${i}.bin`, info: { name: `f${i}.bin`, mode: 0o644, size: content.length, modTime: { seconds: 1_650_000_000, nanos: 0 } }, content });
  }
  return entries;
}

describe('gdrive: access tokens', () => {
  it('renews tokens ahead of expiry, so a run longer than their lifetime never sees a 401', async () => {
    const e = drive.emu;
    await seed('tokens-proactive', 30);
    e.tokenLifetimeSec = 2;
    e.latencyMs = 100;
    e.resetStats();
    const started = Date.now();
    try {
      const c = await connect('importer', drive.config('gdrive:///tokens-proactive'));
      const out = await c.host.importAll({ content: 'sha256', maxConcurrency: 1 });
      c.close();
      expect(out.status.code).toBe(0);
      expect(out.itemErrors).toEqual([]);
      expect(out.records.filter((r) => !r.isXattr && r.pathname.includes('/f'))).toHaveLength(30);
    } finally {
      e.tokenLifetimeSec = 3600;
      e.latencyMs = 0;
    }
    // The run outlived several tokens, and no request ever carried an expired one.
    expect(Date.now() - started).toBeGreaterThan(4000);
    expect(e.stats.unauthorized).toBe(0);
    expect(e.stats.byRoute.token ?? 0).toBeGreaterThanOrEqual(3);
  });

  it('a token that expires in the middle of a backup is renewed and the backup completes', async () => {
    const e = drive.emu;
    await seed('tokens-expired', 30);
    e.resetStats();
    const c = await connect('importer', drive.config('gdrive:///tokens-expired'));
    let n = 0;
    const out = await c.host.importAll({
      content: 'sha256',
      onRecord: () => {
        if (++n === 10) e.expireAllTokens();
      },
    });
    c.close();
    expect(out.status.code).toBe(0);
    expect(out.itemErrors).toEqual([]);
    expect(fileContents(out)).toBe(30);
    expect(e.stats.unauthorized).toBeGreaterThan(0);
    expect(e.stats.byRoute.token).toBe(2);
  });
});

describe('gdrive: throttling and server errors', () => {
  it('a throttling storm (403 userRateLimitExceeded, 429 with Retry-After) slows the run down but loses nothing', async () => {
    const e = drive.emu;
    await seed('storm', 10, 3 * 1024 * 1024);
    e.resetStats();
    const routes = ['list', 'get', 'media', 'about'] as const;
    e.addFault({ routes: [...routes], probability: 0.15, action: { kind: 'error', status: 403, reason: 'userRateLimitExceeded' } });
    e.addFault({ routes: [...routes], probability: 0.08, action: { kind: 'error', status: 429, reason: 'rateLimitExceeded', retryAfter: '0' } });
    e.addFault({ routes: [...routes], probability: 0.04, action: { kind: 'error', status: 503, reason: 'backendError' } });
    try {
      const c = await connect('importer', drive.config('gdrive:///storm', { max_retries: '20' }));
      const out = await c.host.importAll({ content: 'sha256' });
      c.close();
      expect(out.status.code).toBe(0);
      expect(out.itemErrors).toEqual([]);
      expect(fileContents(out)).toBe(11);
    } finally {
      e.clearFaults();
    }
    expect(e.stats.faults).toBeGreaterThan(3);
    expect(e.stats.byStatus[403] ?? 0).toBeGreaterThan(0);
  });

  it('honours Retry-After', async () => {
    const e = drive.emu;
    const c = await connect('importer', drive.config('gdrive://'));
    e.throttle(1, { status: 429, retryAfter: '2', routes: ['about'] });
    const started = Date.now();
    await c.host.ping();
    c.close();
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
  });

  it('storage Puts and Gets ride out 5xx answers and throttling', async () => {
    const e = drive.emu;
    const s = await connect('storage', drive.config('gdrive:///stores/faulty', { chunk_size: '512KiB', cache: 'false', max_retries: '20' }));
    await s.host.create(Buffer.from('_KLOSET_faulty'));
    e.resetStats();
    e.addFault({ routes: ['upload', 'chunk', 'list', 'media', 'create'], probability: 0.15, action: { kind: 'error', status: 500, reason: 'internalError' } });
    e.addFault({ routes: ['upload', 'chunk', 'list', 'media'], probability: 0.1, action: { kind: 'error', status: 403, reason: 'rateLimitExceeded' } });
    try {
      const items = Array.from({ length: 5 }, (_, i) => ({ mac: Buffer.alloc(32, i + 1), data: Buffer.alloc(300_000 * (i + 1), i) }));
      for (const x of items) expect(await s.host.put(RESOURCE.PACKFILE, x.mac, x.data)).toBe(x.data.length);
      for (const x of items) expect((await s.host.get(RESOURCE.PACKFILE, x.mac)).equals(x.data)).toBe(true);
      expect((await s.host.list(RESOURCE.PACKFILE)).length).toBe(5);
    } finally {
      e.clearFaults();
      s.close();
    }
    expect(e.stats.faults).toBeGreaterThan(2);
  });

  it('when retries run out, the message says how many attempts, how long, and the last cause', async () => {
    const e = drive.emu;
    await seed('exhausted', 1);
    const c = connectRaw('importer');
    e.failNext(50, 503, ['list']);
    try {
      await expect(c.host.init('importer', 'gdrive', drive.config('gdrive:///exhausted', { max_retries: '3' }))).rejects.toThrow(
        /^gdrive importer: look up folder "\/exhausted" in My Drive: gave up after 3 attempts over \d+\.\ds: 503 backendError: Backend Error$/,
      );
    } finally {
      e.clearFaults();
      c.close();
    }
  });
});

describe('gdrive: dropped connections', () => {
  it('a download that stalls longer than `timeout` is abandoned and resumed', async () => {
    const e = drive.emu;
    await seed('stalled', 0, 2 * 1024 * 1024);
    e.resetStats();
    e.addFault({ routes: ['media'], times: 1, action: { kind: 'stall', afterBytes: 700_000, ms: 5000 } });
    const c = await connect('importer', drive.config('gdrive:///stalled', { timeout: '1s' }));
    const started = Date.now();
    const out = await c.host.importAll({ content: 'bytes' });
    c.close();
    e.clearFaults();
    expect(out.itemErrors).toEqual([]);
    expect((out.contents.get('/stalled/big.bin') as Buffer).equals(await e.content(e.lookup('stalled/big.bin')?.id as string))).toBe(true);
    expect(Date.now() - started).toBeLessThan(4500);
    expect(e.stats.byRoute.media).toBe(2);
  });

  it('a download cut off in the middle resumes from the last byte and the MD5 still matches', async () => {
    const e = drive.emu;
    await seed('dropped-download', 0, 5 * 1024 * 1024);
    e.resetStats();
    e.dropNext(2, ['media'], 1_500_000);
    const c = await connect('importer', drive.config('gdrive:///dropped-download'));
    const out = await c.host.importAll({ content: 'bytes' });
    c.close();
    expect(out.itemErrors).toEqual([]);
    const got = out.contents.get('/dropped-download/big.bin') as Buffer;
    expect(got.length).toBe(5 * 1024 * 1024);
    expect(got.equals(await e.content(e.lookup('dropped-download/big.bin')?.id as string))).toBe(true);
    expect(e.stats.byRoute.media).toBe(3);
  });

  it('a ranged answer that is not 206 Partial Content is refused instead of handing on bytes from the wrong place', async () => {
    const e = drive.emu;
    const s = await connect('storage', drive.config('gdrive:///ranges-ignored', { cache: 'false' }));
    await s.host.create(Buffer.from('_KLOSET_ranges'));
    const body = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 253));
    const m = Buffer.alloc(32, 0x61);
    await s.host.put(RESOURCE.PACKFILE, m, body);
    e.addFault({ routes: ['media'], action: { kind: 'ignore-range' } });
    await expect(s.host.get(RESOURCE.PACKFILE, m, { offset: 5000, length: 100 })).rejects.toThrow(/asked for bytes 5000-5099, got HTTP 200 instead of 206 Partial Content/);
    expect((await s.host.get(RESOURCE.PACKFILE, m, { offset: 5000, length: 100 })).equals(body.subarray(5000, 5100))).toBe(true);
    s.close();
  });

  it('an upload cut off in the middle of a chunk asks Drive what it has and resumes there', async () => {
    const e = drive.emu;
    e.resetStats();
    e.dropNext(1, ['chunk'], 700 * 1024);
    const c = await connect('exporter', drive.config('gdrive:///dropped-upload', { chunk_size: '1MiB' }));
    const out = await c.host.exportTree(filesTree(1, 3 * 1024 * 1024 + 5));
    c.close();
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors).toEqual([]);
    const f = e.lookup('dropped-upload/f0.bin');
    expect(f?.size).toBe(3 * 1024 * 1024 + 5);
    expect((await e.content(f?.id as string)).equals(Buffer.alloc(3 * 1024 * 1024 + 5, 1))).toBe(true);
    // One chunk dropped after 512 KiB were kept, one status query, then whole chunks from 512 KiB: 1.5 MiB, 2.5 MiB, the rest.
    expect(e.stats.byRoute.chunk).toBe(1 + 1 + 3);
    expect(e.stats.uploadBytes).toBeLessThan(3 * 1024 * 1024 + 5 + 1024 * 1024);
  });

  it('an upload cut where Drive kept a prefix that is not a multiple of 256 KiB resumes from its Range with whole chunks', async () => {
    const e = drive.emu;
    e.resetStats();
    // Two cuts, each keeping 300,000 bytes (not a multiple of 256 KiB): the second chunk sent starts at an odd offset.
    e.dropNext(2, ['chunk'], 300_000, true);
    const size = 3 * 1024 * 1024 + 5;
    const data = Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + (i >> 12)) % 251));
    const c = await connect('exporter', drive.config('gdrive:///dropped-unaligned', { chunk_size: '1MiB' }));
    const out = await c.host.exportTree([
      { path: '/', info: { name: 'r', mode: 0x800001ed } },
      { path: '/f.bin', info: { name: 'f.bin', mode: 0o644, size, modTime: { seconds: 1_650_000_000, nanos: 0 } }, content: data },
    ]);
    c.close();
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors).toEqual([]);
    const f = e.lookup('dropped-unaligned/f.bin');
    expect(f?.size).toBe(size);
    expect((await e.content(f?.id as string)).equals(data)).toBe(true);
    // Bytes sent stay within the content plus the two cut-off pieces: nothing is sent twice beyond what was lost.
    expect(e.stats.uploadBytes).toBeLessThan(size + 2 * 1024 * 1024);
  });

  it('a lost answer to a small upload does not create the file twice', async () => {
    const e = drive.emu;
    e.addFault({ routes: ['upload'], times: 1, action: { kind: 'lose-answer' } });
    const c = await connect('exporter', drive.config('gdrive:///lost-answer'));
    const out = await c.host.exportTree(filesTree(1, 1000));
    c.close();
    expect(out.status.code, out.status.details).toBe(0);
    expect(e.children(e.lookup('lost-answer')?.id as string).map((x) => x.name)).toEqual(['f0.bin']);
  });

  it('an upload session that expires before anything was stored starts over; later, the file fails alone', async () => {
    const e = drive.emu;
    // Expire every session when the first chunk of the first file arrives: nothing of it was stored yet.
    let fired = false;
    e.addFault({
      routes: ['chunk'],
      when: () => {
        if (!fired) {
          fired = true;
          e.expireUploadSessions();
        }
        return false;
      },
      action: { kind: 'delay', ms: 0 },
    });
    const c = await connect('exporter', drive.config('gdrive:///expired-session', { chunk_size: '256KiB', concurrency: '1' }));
    const first = await c.host.exportTree(filesTree(1, 600 * 1024));
    c.close();
    e.clearFaults();
    expect(first.itemErrors).toEqual([]);
    expect(e.lookup('expired-session/f0.bin')?.size).toBe(600 * 1024);

    // Now expire after the second chunk of f0: its first chunk is gone from memory, so that file fails; f1 is restored.
    let chunks = 0;
    e.addFault({
      routes: ['chunk'],
      when: () => {
        if (++chunks === 3) e.expireUploadSessions();
        return false;
      },
      action: { kind: 'delay', ms: 0 },
    });
    const c2 = await connect('exporter', drive.config('gdrive:///expired-later', { chunk_size: '256KiB', concurrency: '1' }));
    const second = await c2.host.exportTree(filesTree(2, 600 * 1024));
    c2.close();
    e.clearFaults();
    expect(second.status.code).toBe(0);
    expect(second.itemErrors.map((x) => x.pathname)).toEqual(['/f0.bin']);
    expect(second.itemErrors[0]?.error).toBe(
      'gdrive exporter: upload /f0.bin to /expired-later in My Drive (bytes 524288-614399 of 614400): the upload session expired after 524288 bytes were stored, which cannot be read again from the snapshot (404 notFound: The upload session was not found or has expired.)',
    );
    expect(e.lookup('expired-later/f1.bin')?.size).toBe(600 * 1024);
    expect(e.lookup('expired-later/f0.bin')).toBeUndefined();
  });
});

describe('gdrive: quotas', () => {
  it('a full Drive stops a restore at once with a clear message', async () => {
    const e = drive.emu;
    e.addUser('full@example.com');
    const rt = e.issueRefreshToken('test-client.apps.googleusercontent.com', 'full@example.com');
    e.setQuota('full@example.com', 1_500_000);
    const c = await connect('exporter', { ...drive.config('gdrive:///quota', { concurrency: '1' }), refresh_token: rt });
    e.resetStats();
    await expect(c.host.exportTree(filesTree(5, 1_000_000))).rejects.toThrow(
      /^rpc error: code = ResourceExhausted desc = gdrive exporter: upload \/f1\.bin to \/quota in My Drive: 403 storageQuotaExceeded: The user's Drive storage quota has been exceeded\. \(the Drive is full; free space or buy more storage\)$/,
    );
    c.close();
    // The files after the first refusal are not even tried.
    expect(e.stats.byRoute.upload).toBe(2);
  });

  it('the daily upload limit fails a Put with a message that says so', async () => {
    const e = drive.emu;
    const s = await connect('storage', drive.config('gdrive:///stores/limited'));
    await s.host.create(Buffer.from('_KLOSET_limited'));
    e.addFault({ routes: ['upload', 'chunk'], times: 1, action: { kind: 'error', status: 403, reason: 'uploadLimitExceeded' } });
    try {
      await expect(s.host.put(RESOURCE.PACKFILE, Buffer.alloc(32, 7), Buffer.from('data'))).rejects.toThrow(
        /^gdrive storage: store packfile 0707[0-9a-f]+ at gdrive:\/\/\/stores\/limited \(My Drive of alice@example\.com\): 403 uploadLimitExceeded: .* \(Google allows about 750 GB of uploads per account and day; wait 24 hours and run again\)$/,
      );
    } finally {
      e.clearFaults();
      s.close();
    }
  });
});
