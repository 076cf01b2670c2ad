// Unit tests of the read-ahead packfile cache against real files: identical bytes, eviction, sharing, failures, disk full, prefetch.
import { randomBytes } from 'node:crypto';
import { createReadStream, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReadAheadCache, type ReadAheadBackend } from '../../shared/cache/read-ahead.ts';
import { chunksOf } from '../../shared/content.ts';
import type { ByteRange, ContentSource, Resource } from '../../shared/define.ts';
import { Logger } from '../../shared/log.ts';
import { NotFoundError } from '../../shared/errors.ts';

const MiB = 1024 * 1024;
let repo: string;
let cacheParent: string;
const objects = new Map<string, Buffer>();
const macs: Buffer[] = [];

async function bytesOf(source: ContentSource): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunksOf(source)) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

function fileOf(mac: Buffer): string {
  return join(repo, mac.toString('hex'));
}

/** A backend over real files; `fetches` counts whole downloads, `failFirst` breaks the first N downloads half-way. */
function backend(opts: { failFirst?: number } = {}): ReadAheadBackend & { fetches: number; directs: number } {
  let failures = opts.failFirst ?? 0;
  const b = {
    fetches: 0,
    directs: 0,
    async fetch(_r: Resource, mac: Buffer): Promise<ContentSource> {
      b.fetches++;
      if (failures > 0) {
        failures--;
        const data = objects.get(mac.toString('hex')) as Buffer;
        return Readable.from(
          (async function* () {
            yield data.subarray(0, Math.floor(data.length / 2));
            // The connection dies a little later, once the first half is on disk.
            await new Promise((r) => setTimeout(r, 30));
            throw Object.assign(new Error('connection reset mid-body'), { code: 'ECONNRESET' });
          })(),
        );
      }
      return createReadStream(fileOf(mac));
    },
    async direct(_r: Resource, mac: Buffer, range: ByteRange | undefined): Promise<ContentSource> {
      b.directs++;
      const data = objects.get(mac.toString('hex')) as Buffer;
      return range ? data.subarray(range.offset, range.offset + range.length) : data;
    },
    async list(): Promise<Buffer[]> {
      return [...macs];
    },
  };
  return b;
}

const quiet = new Logger();

beforeAll(async () => {
  repo = await mkdtemp(join(tmpdir(), 'kts-ra-repo-'));
  cacheParent = await mkdtemp(join(tmpdir(), 'kts-ra-cache-'));
  for (let i = 0; i < 8; i++) {
    const data = randomBytes(i === 0 ? 3 * MiB + 17 : 256 * 1024 + i);
    const mac = randomBytes(32);
    macs.push(mac);
    objects.set(mac.toString('hex'), data);
    await writeFile(fileOf(mac), data);
  }
  macs.sort((a, b) => a.toString('hex').localeCompare(b.toString('hex')));
});

afterAll(async () => {
  await rm(repo, { recursive: true, force: true });
  await rm(cacheParent, { recursive: true, force: true });
});

describe('sdk read-ahead cache', () => {
  it('serves random ranges, edges and past-the-end reads byte-identical to direct reads, downloading once', async () => {
    const b = backend();
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0 }, b, quiet);
    const mac = macs.find((m) => (objects.get(m.toString('hex')) as Buffer).length > MiB) as Buffer;
    const data = objects.get(mac.toString('hex')) as Buffer;
    const ranges: ByteRange[] = [
      { offset: 0, length: 1 },
      { offset: 0, length: data.length },
      { offset: data.length - 1, length: 1 },
      { offset: data.length - 5, length: 100 },
      { offset: data.length, length: 10 },
      { offset: data.length + 1000, length: 10 },
      { offset: MiB - 3, length: 2 * MiB + 7 },
      { offset: 5, length: 0 },
      { offset: data.length, length: 0 },
      { offset: 64 * 1024 - 1, length: 2 },
      { offset: MiB - 1, length: 1 },
      { offset: MiB, length: MiB },
    ];
    for (let i = 0; i < 200; i++) {
      const offset = Math.floor(Math.random() * data.length);
      ranges.push({ offset, length: 1 + Math.floor(Math.random() * 100_000) });
    }
    for (const r of ranges) {
      const got = await bytesOf(await cache.get('packfile', mac, r));
      expect(got.equals(data.subarray(r.offset, r.offset + r.length))).toBe(true);
    }
    expect(b.fetches).toBe(1);
    expect(cache.stats.hits).toBe(ranges.length - 1);
    await cache.dispose();
  });

  it('forgets an invalidated packfile and downloads it again', async () => {
    const b = backend();
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0 }, b, quiet);
    const mac = macs[7] as Buffer;
    await bytesOf(await cache.get('packfile', mac, { offset: 0, length: 10 }));
    cache.invalidate('packfile', mac);
    await bytesOf(await cache.get('packfile', mac, { offset: 0, length: 10 }));
    expect(b.fetches).toBe(2);
    await cache.dispose();
  });

  it('never caches states or locks, nor whole-object reads of uncached packfiles', async () => {
    const b = backend();
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0 }, b, quiet);
    await bytesOf(await cache.get('state', macs[1] as Buffer, { offset: 0, length: 10 }));
    await bytesOf(await cache.get('lock', macs[1] as Buffer, undefined));
    await bytesOf(await cache.get('packfile', macs[1] as Buffer, undefined));
    expect(b.fetches).toBe(0);
    expect(b.directs).toBe(3);
    await cache.dispose();
  });

  it('shares one download between concurrent gets of the same packfile', async () => {
    const b = backend();
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0 }, b, quiet);
    const mac = macs[2] as Buffer;
    const data = objects.get(mac.toString('hex')) as Buffer;
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => cache.get('packfile', mac, { offset: i * 100, length: 50 }).then(bytesOf)));
    results.forEach((r, i) => expect(r.equals(data.subarray(i * 100, i * 100 + 50))).toBe(true));
    expect(b.fetches).toBe(1);
    await cache.dispose();
  });

  it('evicts least recently used packfiles beyond its size and still answers correctly', async () => {
    const b = backend();
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 600 * 1024, prefetch: 0 }, b, quiet);
    const small = macs.filter((m) => (objects.get(m.toString('hex')) as Buffer).length < MiB);
    for (let round = 0; round < 2; round++) {
      for (const mac of small) {
        const data = objects.get(mac.toString('hex')) as Buffer;
        expect((await bytesOf(await cache.get('packfile', mac, { offset: 7, length: 1000 }))).equals(data.subarray(7, 1007))).toBe(true);
      }
    }
    expect(cache.stats.evictions).toBeGreaterThan(0);
    expect(b.fetches).toBeGreaterThan(small.length);
    await cache.dispose();
  });

  it('retries a download that breaks half-way and never serves a partial packfile', async () => {
    const b = backend({ failFirst: 2 });
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0, attempts: 3 }, b, quiet);
    const mac = macs[3] as Buffer;
    const data = objects.get(mac.toString('hex')) as Buffer;
    const tail = { offset: data.length - 100, length: 100 };
    expect((await bytesOf(await cache.get('packfile', mac, tail))).equals(data.subarray(data.length - 100))).toBe(true);
    expect(b.fetches).toBe(3);
    expect(b.directs).toBe(0);
    await cache.dispose();
  });

  it('falls back to direct reads when every download attempt fails, serving only bytes fully written before', async () => {
    const b = backend({ failFirst: 5 });
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0, attempts: 2 }, b, quiet);
    const mac = macs[4] as Buffer;
    const data = objects.get(mac.toString('hex')) as Buffer;
    const half = Math.floor(data.length / 2);
    // Both reads start together: the tail waits for bytes that never arrive and goes to the store.
    const [head, tail] = await Promise.all([
      cache.get('packfile', mac, { offset: 10, length: 20 }).then(bytesOf),
      cache.get('packfile', mac, { offset: half - 10, length: 20 }).then(bytesOf),
    ]);
    expect(head.equals(data.subarray(10, 30))).toBe(true);
    expect(tail.equals(data.subarray(half - 10, half + 10))).toBe(true);
    expect(b.fetches).toBe(2);
    expect(b.directs).toBe(1);
    expect(cache.stats.failedDownloads).toBe(1);
    await cache.dispose();
  });

  it('does not retry the download of a missing packfile; the direct read reports it', async () => {
    const b = backend();
    b.fetch = async (): Promise<ContentSource> => {
      b.fetches++;
      throw new NotFoundError('packfile not found');
    };
    b.direct = async (): Promise<ContentSource> => {
      b.directs++;
      throw new NotFoundError('packfile not found');
    };
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0, attempts: 3 }, b, quiet);
    await expect(cache.get('packfile', randomBytes(32), { offset: 0, length: 10 })).rejects.toThrow(/not found/);
    expect(b.fetches).toBe(1);
    expect(b.directs).toBe(1);
    await cache.dispose();
  });

  it('answers ranges already downloaded while the rest of the packfile is still arriving', async () => {
    const mac = macs.find((m) => (objects.get(m.toString('hex')) as Buffer).length > MiB) as Buffer;
    const data = objects.get(mac.toString('hex')) as Buffer;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let finished = false;
    const b = backend();
    b.fetch = async (): Promise<ContentSource> =>
      Readable.from(
        (async function* () {
          yield data.subarray(0, MiB);
          await gate;
          yield data.subarray(MiB);
          finished = true;
        })(),
      );
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0 }, b, quiet);
    const early = await bytesOf(await cache.get('packfile', mac, { offset: 1000, length: 720 }));
    expect(finished).toBe(false);
    expect(early.equals(data.subarray(1000, 1720))).toBe(true);
    const late = cache.get('packfile', mac, { offset: MiB - 10, length: 20 }).then(bytesOf);
    const pastEnd = cache.get('packfile', mac, { offset: data.length - 3, length: 10 }).then(bytesOf);
    release();
    expect((await late).equals(data.subarray(MiB - 10, MiB + 10))).toBe(true);
    expect((await pastEnd).equals(data.subarray(data.length - 3))).toBe(true);
    expect(finished).toBe(true);
    expect(cache.stats.downloads).toBe(1);
    expect(b.directs).toBe(0);
    await cache.dispose();
  });

  it('turns itself off with a warning when a download fails for lack of disk space (ENOSPC)', async () => {
    const warnings: string[] = [];
    const log = new Logger();
    log.warn = (m: string) => void warnings.push(m);
    const b = backend();
    b.fetch = async (_r: Resource, mac: Buffer): Promise<ContentSource> => {
      b.fetches++;
      const data = objects.get(mac.toString('hex')) as Buffer;
      return Readable.from(
        (async function* () {
          yield data.subarray(0, 1000);
          throw Object.assign(new Error('no space left on device, write'), { code: 'ENOSPC' });
        })(),
      );
    };
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0, attempts: 3 }, b, log);
    const mac = macs[6] as Buffer;
    const data = objects.get(mac.toString('hex')) as Buffer;
    expect((await bytesOf(await cache.get('packfile', mac, { offset: 5000, length: 100 }))).equals(data.subarray(5000, 5100))).toBe(true);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/out of disk space; reading directly from the store/);
    expect(cache.stats.failedDownloads).toBe(1);
    // No retry once the disk is full, and every later read goes to the store.
    expect((await bytesOf(await cache.get('packfile', macs[7] as Buffer, { offset: 0, length: 10 }))).length).toBe(10);
    expect(b.fetches).toBe(1);
    expect(b.directs).toBe(2);
    expect(cache.stats.direct).toBe(2);
    await cache.dispose();
  });

  it('reads directly with a warning when the cache directory cannot be made', async () => {
    const warnings: string[] = [];
    const log = new Logger();
    log.warn = (m: string) => void warnings.push(m);
    const notADir = join(cacheParent, 'plain-file');
    await writeFile(notADir, 'x');
    const b = backend();
    const cache = new ReadAheadCache({ dir: join(notADir, 'cache'), maxBytes: 64 * MiB, prefetch: 0 }, b, log);
    const mac = macs[5] as Buffer;
    const data = objects.get(mac.toString('hex')) as Buffer;
    expect((await bytesOf(await cache.get('packfile', mac, { offset: 3, length: 30 }))).equals(data.subarray(3, 33))).toBe(true);
    expect((await bytesOf(await cache.get('packfile', mac, { offset: 40, length: 30 }))).equals(data.subarray(40, 70))).toBe(true);
    expect(b.fetches).toBe(0);
    expect(b.directs).toBe(2);
    expect(warnings.join('\n')).toMatch(/cannot use .*plain-file.*reading directly from the store/);
    await cache.dispose();
  });

  it('keeps two processes on one repository apart and removes its directory on dispose', async () => {
    const one = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0 }, backend(), quiet);
    const two = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 0 }, backend(), quiet);
    const mac = macs[5] as Buffer;
    const data = objects.get(mac.toString('hex')) as Buffer;
    await bytesOf(await one.get('packfile', mac, { offset: 0, length: 10 }));
    await bytesOf(await two.get('packfile', mac, { offset: 0, length: 10 }));
    const dirs = readdirSync(cacheParent).filter((d) => d.startsWith('kloset-ts-cache-'));
    expect(dirs.length).toBeGreaterThanOrEqual(2);
    await one.dispose();
    expect((await bytesOf(await two.get('packfile', mac, { offset: 5, length: 10 }))).equals(data.subarray(5, 15))).toBe(true);
    await two.dispose();
    expect(readdirSync(cacheParent).filter((d) => d.startsWith('kloset-ts-cache-'))).toEqual([]);
  });

  it('prefetches the next packfiles when reads walk the MAC order', async () => {
    const b = backend();
    const cache = new ReadAheadCache({ dir: cacheParent, maxBytes: 64 * MiB, prefetch: 2 }, b, quiet);
    for (const mac of macs.slice(1, 4)) await bytesOf(await cache.get('packfile', mac, { offset: 0, length: 10 }));
    for (let waited = 0; cache.stats.prefetched < 2 && waited < 10_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    expect(cache.stats.prefetched).toBe(2);
    const missesBefore = cache.stats.misses;
    for (const mac of macs.slice(4, 6)) {
      const data = objects.get(mac.toString('hex')) as Buffer;
      expect((await bytesOf(await cache.get('packfile', mac, { offset: 1, length: 9 }))).equals(data.subarray(1, 10))).toBe(true);
    }
    expect(cache.stats.misses).toBe(missesBefore);
    expect(cache.stats.hits).toBeGreaterThanOrEqual(2);
    await cache.dispose();
  });

  it.runIf(process.getuid?.() === 0)('degrades to direct reads with a warning when the cache disk is full', async () => {
    const mount = await mkdtemp(join(tmpdir(), 'kts-ra-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount]);
    try {
      const b = backend();
      const warnings: string[] = [];
      const log = new Logger();
      log.warn = (m: string) => void warnings.push(m);
      const cache = new ReadAheadCache({ dir: join(mount, 'c'), maxBytes: 64 * MiB, prefetch: 0 }, b, log);
      const big = macs.find((m) => (objects.get(m.toString('hex')) as Buffer).length > MiB) as Buffer;
      const data = objects.get(big.toString('hex')) as Buffer;
      expect((await bytesOf(await cache.get('packfile', big, { offset: 2 * MiB, length: 1000 }))).equals(data.subarray(2 * MiB, 2 * MiB + 1000))).toBe(true);
      expect(warnings.join('\n')).toMatch(/out of disk space; reading directly/);
      expect(b.directs).toBe(1);
      const other = macs[6] as Buffer;
      await bytesOf(await cache.get('packfile', other, { offset: 0, length: 5 }));
      expect(b.directs).toBe(2);
      await cache.dispose();
    } finally {
      execFileSync('umount', [mount]);
      await rm(mount, { recursive: true, force: true });
    }
  });
});

