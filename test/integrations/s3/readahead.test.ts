// s3 storage with the SDK's read-ahead cache: a restore-like sequence of ranged Gets returns the same bytes with the
// cache on and off, the cache on fetches each packfile once, and downloads cut mid-transfer are never served partially.
import { afterAll, describe, expect, it } from 'vitest';
import { objectName } from '../../../shared/index.ts';
import type { OpenConnector } from '../../conformance/index.ts';
import { pseudoRandom, randomMac } from '../../conformance/data.ts';
import { RESOURCE } from '../../harness/index.ts';
import { decodeMessage, encodeMessage } from '../../harness/messages.ts';
import { s3Connectors } from './connect.ts';
import { startFlakyProxy, startResetProxy, type Proxy } from './proxies.ts';
import { bucketName, configFor, hostOf, radosgw } from './servers.ts';

const KiB = 1024;
const MiB = 1024 * 1024;
const rgw = await radosgw();
const connectors = s3Connectors([rgw.secretKey]);
const proxies: Proxy[] = [];

afterAll(async () => {
  await connectors.disposeAll();
  for (const p of proxies) await p.close();
  await rgw.stop();
});

function store(config: Record<string, string>): Promise<OpenConnector> {
  return connectors.open('storage', config);
}

function via(proxy: Proxy, config: Record<string, string>): Record<string, string> {
  return { ...config, location: (config.location as string).replace(hostOf(rgw), hostOf(proxy)) };
}

interface Pack {
  mac: Buffer;
  data: Buffer;
}

interface Range {
  offset: number;
  length: number;
}

/**
 * A restore-like read sequence (PROTOCOL.md §9): each packfile read whole through consecutive ranges of mostly small
 * sizes (a few large), shuffled within small windows so that about half go backwards, plus the edges, a 0-length
 * range and ranges past the end.
 */
function restoreSequence(packs: Pack[]): Array<{ pack: Pack; range: Range }> {
  const out: Array<{ pack: Pack; range: Range }> = [];
  let seed = 7;
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const sizes = [86, 300, 720, 720, 1500, 4 * KiB, 97_000, 600, 900, 1 * MiB + 3];
  for (const pack of packs) {
    const ranges: Range[] = [];
    for (let offset = 0; offset < pack.data.length; ) {
      const length = Math.min(sizes[Math.floor(next() * sizes.length)] as number, pack.data.length - offset);
      ranges.push({ offset, length });
      offset += length;
    }
    for (let start = 0; start < ranges.length; start += 8) {
      for (let i = Math.min(start + 8, ranges.length) - 1; i > start; i--) {
        const j = start + Math.floor(next() * (i - start + 1));
        [ranges[i], ranges[j]] = [ranges[j] as Range, ranges[i] as Range];
      }
    }
    const n = pack.data.length;
    ranges.push({ offset: 0, length: 1 }, { offset: n - 1, length: 1 }, { offset: 10, length: 0 }, { offset: n - 5, length: 100 }, { offset: n, length: 10 }, { offset: n + 4096, length: 1 });
    for (const range of ranges) out.push({ pack, range });
  }
  return out;
}

/** Every byte a ranged Get sends, without the host's short-read check. */
async function rawGet(c: OpenConnector, mac: Buffer, range: Range): Promise<Buffer> {
  const call = await c.host.connection.serverStream('/store.Store/Get', encodeMessage('store.GetRequest', { mac, type: RESOURCE.PACKFILE, range }));
  const parts: Buffer[] = [];
  for (;;) {
    const msg = await call.read();
    if (msg === undefined) break;
    parts.push(Buffer.from(decodeMessage('store.GetResponse', msg).chunk as Uint8Array));
  }
  return Buffer.concat(parts);
}

/** Replays `sequence` through `c`: every answer must be exactly the source bytes (kloset's io.ReadFull semantics aside). */
async function replay(c: OpenConnector, sequence: Array<{ pack: Pack; range: Range }>): Promise<Buffer[]> {
  const answers: Buffer[] = [];
  for (const { pack, range } of sequence) {
    const want = pack.data.subarray(range.offset, range.offset + range.length);
    // Past the end the host's io.ReadFull would fail: read the stream itself to compare the bytes sent.
    const got = want.length < range.length ? await rawGet(c, pack.mac, range) : await c.host.get(RESOURCE.PACKFILE, pack.mac, range);
    expect(got.equals(want)).toBe(true);
    answers.push(got);
  }
  return answers;
}

async function seed(bucket: string, sizes: number[]): Promise<{ config: Record<string, string>; packs: Pack[] }> {
  const config = configFor(rgw, bucket, 'repo');
  const writer = await store({ ...config, cache: 'false' });
  await writer.host.create(Buffer.from('_KLOSET_readahead'));
  const packs = sizes.map((size, i) => ({ mac: randomMac(), data: pseudoRandom(size, 100 + i) }));
  for (const p of packs) await writer.host.put(RESOURCE.PACKFILE, p.mac, p.data);
  packs.sort((a, b) => Buffer.compare(a.mac, b.mac));
  return { config, packs };
}

describe('s3 storage: read-ahead cache', () => {
  it('a restore-like sequence of ranged Gets returns identical bytes with the cache on and off; on, each packfile is fetched once', async () => {
    const { config, packs } = await seed(bucketName('readahead'), [5 * MiB + 123, 3 * MiB, 700 * KiB]);
    const sequence = restoreSequence(packs);
    const packfileGets = (log: Array<{ method: string; url: string }>): number =>
      log.filter((r) => r.method === 'GET' && packs.some((p) => r.url.includes(objectName('packfile', p.mac)))).length;

    const onLog: Array<{ method: string; url: string }> = [];
    const onProxy = await startFlakyProxy(rgw.endpoint, (_n, req) => (onLog.push(req), 'pass'));
    proxies.push(onProxy);
    const on = await store(via(onProxy, config));
    await on.host.open();
    const withCache = await replay(on, sequence);
    expect(packfileGets(onLog)).toBe(packs.length);

    const offLog: Array<{ method: string; url: string }> = [];
    const offProxy = await startFlakyProxy(rgw.endpoint, (_n, req) => (offLog.push(req), 'pass'));
    proxies.push(offProxy);
    const off = await store(via(offProxy, { ...config, cache: 'false' }));
    await off.host.open();
    const withoutCache = await replay(off, sequence);
    // Without the cache every non-empty range is its own request.
    expect(packfileGets(offLog)).toBeGreaterThanOrEqual(sequence.filter((s) => s.range.length > 0 && s.range.offset < s.pack.data.length).length);

    expect(withCache.length).toBe(withoutCache.length);
    withCache.forEach((b, i) => expect(b.equals(withoutCache[i] as Buffer)).toBe(true));
  }, 240_000);

  it('packfile downloads cut mid-transfer are retried and the ranges served are still exact', async () => {
    const { config, packs } = await seed(bucketName('readahead-reset'), [6 * MiB, 4 * MiB + 5]);
    const proxy = await startResetProxy(rgw.endpoint, { everyBytes: 3 * MiB });
    proxies.push(proxy);
    const c = await store(via(proxy, config));
    await c.host.open();
    await replay(c, restoreSequence(packs));
    expect(proxy.stats.resets).toBeGreaterThan(0);
  }, 240_000);
});
