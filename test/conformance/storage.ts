// The storage conformance suite: every storage connector runs it against its real server or emulator.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESOURCE, type PluginHost, type ResourceType } from '../harness/index.ts';
import { decodeMessage, encodeMessage } from '../harness/messages.ts';
import { assertNoSecrets, openConnector, peakRss, protoOf, spawnMode, type ConformanceTarget, type OpenConnector } from './connect.ts';
import { bigStream, pseudoRandom, randomMac, sha256 } from './data.ts';

/** What a storage connector's conformance run needs. */
export interface StorageConformanceOptions {
  target: ConformanceTarget;
  /** Config of a fresh, empty repository location (called once per case that needs one). */
  freshConfig(): Promise<Record<string, string>>;
  /** Secret values present in the configs: checked never to reach stderr or a status message. */
  secrets?: readonly string[];
  /** Writes foreign files where the repository keeps its objects (junk names, `.partial`, other folders). */
  plantForeign?(config: Record<string, string>): Promise<void>;
  /** A config with one bad value, and the key the Init error must name. */
  badConfig?: { config: Record<string, string>; key: string };
  /** Objects per resource type in the listing test (default 2000). */
  manyObjects?: number;
  /** Size of the big streamed object (default 256 MiB; 0 skips the case). */
  bigObjectBytes?: number;
  /** Peak RSS allowed for the executable while it streams the big object (spawn mode; default 200 MiB). */
  maxRssBytes?: number;
  /** Cases known to fail: case title → reason with an issue number. */
  knownFailures?: Readonly<Record<string, string>>;
}

const ALL_TYPES = [RESOURCE.PACKFILE, RESOURCE.STATE, RESOURCE.LOCK, RESOURCE.ECC_PACKFILE, RESOURCE.ECC_STATE] as const;

/** A Get that keeps whatever arrives until the end of the stream (for past-the-end ranges, which kloset never asks). */
async function getAll(host: PluginHost, type: number, mac: Buffer, range?: { offset: number; length: number }): Promise<Buffer> {
  const req: Record<string, unknown> = { mac, type };
  if (range) req.range = range;
  const call = await host.connection.serverStream('/store.Store/Get', encodeMessage('store.GetRequest', req));
  const parts: Buffer[] = [];
  for (;;) {
    const msg = await call.read();
    if (msg === undefined) break;
    const chunk = decodeMessage('store.GetResponse', msg).chunk as Uint8Array | undefined;
    if (!chunk || chunk.length === 0) throw new Error('the store sent an empty Get chunk');
    if (chunk.length > 4 * 1024 * 1024) throw new Error(`the store sent a ${chunk.length}-byte chunk over the host limit`);
    parts.push(Buffer.from(chunk));
  }
  return Buffer.concat(parts);
}

/** Registers the storage conformance cases for one connector. */
export function runStorageConformance(options: StorageConformanceOptions): void {
  const { target } = options;
  const name = `${target.integration.name} storage: conformance`;
  const proto = protoOf(target);
  const secrets = options.secrets ?? [];
  const opened: OpenConnector[] = [];
  const messages: string[] = [];
  const caseIt = (title: string, fn: () => Promise<void>, timeout?: number): void => {
    const reason = options.knownFailures?.[title];
    if (reason) it.fails(`${title} (known failure: ${reason})`, fn, timeout);
    else it(title, fn, timeout);
  };

  async function open(config?: Record<string, string>): Promise<{ c: OpenConnector; config: Record<string, string> }> {
    const cfg = config ?? (await options.freshConfig());
    const c = await openConnector(target, 'storage');
    opened.push(c);
    await c.host.init('storage', proto, cfg);
    return { c, config: cfg };
  }

  async function expectError(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (err) {
      const text = (err as Error).message;
      messages.push(text);
      return text;
    }
    throw new Error('expected the call to fail');
  }

  describe(name, () => {
    let main: OpenConnector;
    let mainConfig: Record<string, string>;
    const configBlob = Buffer.concat([Buffer.from('_KLOSET_'), pseudoRandom(4096, 3), Buffer.from([0, 255, 10, 13])]);

    beforeAll(async () => {
      const o = await open();
      main = o.c;
      mainConfig = o.config;
      await main.host.create(configBlob);
    });

    afterAll(async () => {
      for (const c of opened) {
        try {
          assertNoSecrets(c.stderr(), secrets, `${target.integration.name} stderr`);
        } finally {
          await c.dispose();
        }
      }
      for (const m of messages) assertNoSecrets(m, secrets, 'a status message');
    });

    caseIt('ping and close work before open, and calls after close still work', async () => {
      const { c, config } = await open(mainConfig);
      await c.host.ping();
      await c.host.close();
      expect((await c.host.open()).equals(configBlob)).toBe(true);
      expect(config.location).toBeTruthy();
    });

    caseIt('open returns the config bytes exactly, in another process too', async () => {
      expect((await main.host.open()).equals(configBlob)).toBe(true);
      const { c } = await open(mainConfig);
      expect((await c.host.open()).equals(configBlob)).toBe(true);
      expect([4, 6]).toContain((await c.host.mode()) & 6);
      expect((await c.host.mode()) & 4).toBe(4);
      const size = await c.host.size();
      expect(size === -1 || size >= configBlob.length).toBe(true);
    });

    caseIt('create on an existing repository fails and leaves it intact', async () => {
      const { c } = await open(mainConfig);
      const text = await expectError(c.host.create(Buffer.from('_KLOSET_other')));
      expect(text.length).toBeGreaterThan(10);
      expect((await c.host.open()).equals(configBlob)).toBe(true);
    });

    caseIt('open of a missing repository fails with a message', async () => {
      const { c } = await open();
      const text = await expectError(c.host.open());
      expect(text).toMatch(new RegExp(`^${target.integration.name} storage: `));
    });

    caseIt('put and get whole objects of every resource type, including empty ones', async () => {
      for (const type of ALL_TYPES) {
        for (const size of [0, 1, 1024 * 1024, 1024 * 1024 + 1, 2 * 1024 * 1024 + 17]) {
          const mac = randomMac();
          const data = pseudoRandom(size, size + type);
          expect(await main.host.put(type, mac, data)).toBe(size);
          expect((await main.host.get(type, mac)).equals(data)).toBe(true);
        }
      }
    });

    caseIt('ranged gets: start, middle, end, zero length and past the end', async () => {
      const mac = randomMac();
      const data = pseudoRandom(3 * 1024 * 1024 + 5, 11);
      await main.host.put(RESOURCE.PACKFILE, mac, data);
      const ranges = [
        { offset: 0, length: 1 },
        { offset: 0, length: 720 },
        { offset: 1024 * 1024 - 10, length: 20 },
        { offset: 1_500_000, length: 1024 * 1024 + 3 },
        { offset: data.length - 1, length: 1 },
        { offset: 0, length: data.length },
      ];
      for (const r of ranges) {
        expect((await main.host.get(RESOURCE.PACKFILE, mac, r)).equals(data.subarray(r.offset, r.offset + r.length))).toBe(true);
      }
      expect((await getAll(main.host, RESOURCE.PACKFILE, mac, { offset: 100, length: 0 })).length).toBe(0);
      expect((await getAll(main.host, RESOURCE.PACKFILE, mac, { offset: data.length - 5, length: 100 })).equals(data.subarray(data.length - 5))).toBe(true);
      expect((await getAll(main.host, RESOURCE.PACKFILE, mac, { offset: data.length + 10, length: 100 })).length).toBe(0);
      for (let i = 0; i < 50; i++) {
        const offset = Math.floor(Math.random() * data.length);
        const length = 1 + Math.floor(Math.random() * 200_000);
        const want = data.subarray(offset, offset + length);
        expect((await getAll(main.host, RESOURCE.PACKFILE, mac, { offset, length })).equals(want)).toBe(true);
      }
    });

    caseIt('put overwrites an existing object', async () => {
      const mac = randomMac();
      await main.host.put(RESOURCE.LOCK, mac, Buffer.from('first version, longer than the second'));
      await main.host.put(RESOURCE.LOCK, mac, Buffer.from('second'));
      expect((await main.host.get(RESOURCE.LOCK, mac)).toString()).toBe('second');
      const listed = (await main.host.list(RESOURCE.LOCK)).filter((m) => m.equals(mac));
      expect(listed).toHaveLength(1);
    });

    caseIt('delete removes an object; a missing object is an error naming it', async () => {
      for (const type of [RESOURCE.STATE, RESOURCE.PACKFILE]) {
        const mac = randomMac();
        await main.host.put(type, mac, Buffer.from('state or packfile'));
        // A ranged read first, so a read-ahead cache holds the packfile before it is deleted.
        expect((await main.host.get(type, mac, { offset: 0, length: 5 })).toString()).toBe('state');
        await main.host.delete(type, mac);
        expect((await main.host.list(type)).some((m) => m.equals(mac))).toBe(false);
        const text = await expectError(main.host.get(type, mac, { offset: 0, length: 5 }));
        expect(text).toContain(mac.toString('hex'));
      }
    });

    caseIt(
      'list returns exactly the stored MACs per resource type across many objects',
      async () => {
        const { c, config } = await open();
        await c.host.create(configBlob);
        const n = options.manyObjects ?? 2000;
        const expected = new Map<ResourceType, Set<string>>();
        for (const type of [RESOURCE.PACKFILE, RESOURCE.STATE, RESOURCE.LOCK]) {
          const want = new Set<string>();
          const count = type === RESOURCE.PACKFILE ? n : Math.max(10, Math.floor(n / 20));
          const macs = Array.from({ length: count }, () => randomMac());
          for (let i = 0; i < macs.length; i += 32) {
            await Promise.all(macs.slice(i, i + 32).map((m) => c.host.put(type, m, Buffer.from(m.toString('hex')))));
          }
          for (const m of macs) want.add(m.toString('hex'));
          expected.set(type, want);
        }
        await options.plantForeign?.(config);
        for (const [type, want] of expected) {
          const got = await c.host.list(type);
          expect(got.every((m) => m.length === 32)).toBe(true);
          expect(new Set(got.map((m) => m.toString('hex')))).toEqual(want);
        }
        expect(await c.host.list(RESOURCE.ECC_STATE)).toEqual([]);
      },
      600_000,
    );

    if (options.plantForeign) {
      caseIt('foreign files in the store do not break listing', async () => {
        const { c, config } = await open();
        await c.host.create(configBlob);
        const mac = randomMac();
        await c.host.put(RESOURCE.PACKFILE, mac, Buffer.from('x'));
        await options.plantForeign?.(config);
        const got = await c.host.list(RESOURCE.PACKFILE);
        expect(got.map((m) => m.toString('hex'))).toEqual([mac.toString('hex')]);
        expect(await c.host.list(RESOURCE.LOCK)).toEqual([]);
      });
    }

    caseIt('32 concurrent puts and gets', async () => {
      const items = Array.from({ length: 32 }, (_, i) => ({ mac: randomMac(), data: pseudoRandom(64 * 1024 + i * 4099, i) }));
      await Promise.all(items.map((x) => main.host.put(RESOURCE.PACKFILE, x.mac, x.data)));
      const got = await Promise.all(items.map((x) => main.host.get(RESOURCE.PACKFILE, x.mac)));
      got.forEach((g, i) => expect(sha256(g)).toBe(sha256((items[i] as { data: Buffer }).data)));
      const ranged = await Promise.all(items.map((x) => main.host.get(RESOURCE.PACKFILE, x.mac, { offset: 1000, length: 3000 })));
      ranged.forEach((g, i) => expect(g.equals((items[i] as { data: Buffer }).data.subarray(1000, 4000))).toBe(true));
    });

    const big = options.bigObjectBytes ?? 256 * 1024 * 1024;
    if (big > 0) {
      caseIt(
        `a ${Math.round(big / 1024 / 1024)} MiB object streams with bounded memory`,
        async () => {
          const { c } = await open(mainConfig);
          const mac = randomMac();
          const src = bigStream(big);
          expect(await c.host.put(RESOURCE.PACKFILE, mac, src.stream)).toBe(big);
          const digest = src.digest();
          const call = await c.host.connection.serverStream('/store.Store/Get', encodeMessage('store.GetRequest', { mac, type: RESOURCE.PACKFILE }));
          const { createHash } = await import('node:crypto');
          const h = createHash('sha256');
          let total = 0;
          for (;;) {
            const msg = await call.read();
            if (msg === undefined) break;
            const chunk = decodeMessage('store.GetResponse', msg).chunk as Uint8Array;
            total += chunk.length;
            h.update(chunk);
          }
          expect(total).toBe(big);
          expect(h.digest('hex')).toBe(digest);
          const tail = await c.host.get(RESOURCE.PACKFILE, mac, { offset: big - 4096, length: 4096 });
          expect(tail.length).toBe(4096);
          const rss = peakRss(c.pid);
          if (spawnMode() && rss !== undefined) expect(rss).toBeLessThan(options.maxRssBytes ?? 200 * 1024 * 1024);
          await c.host.delete(RESOURCE.PACKFILE, mac);
        },
        900_000,
      );
    }

    if (options.badConfig) {
      const bad = options.badConfig;
      caseIt(`a bad ${bad.key} fails Init with a message naming the key`, async () => {
        const c = await openConnector(target, 'storage');
        opened.push(c);
        const text = await expectError(c.host.init('storage', proto, bad.config));
        expect(text).toContain(bad.key);
        expect(text).toMatch(new RegExp(`^${target.integration.name} storage: `));
      });
    }

    caseIt('an unknown option fails Init with a message naming it', async () => {
      const c = await openConnector(target, 'storage');
      opened.push(c);
      const text = await expectError(c.host.init('storage', proto, { ...mainConfig, definitely_not_an_option: 'x' }));
      expect(text).toContain('definitely_not_an_option');
    });

    caseIt('calls before Init fail with a status, never a crash', async () => {
      const c = await openConnector(target, 'storage');
      opened.push(c);
      // The harness refuses to send anything before Init (the real host never does): talk to the wire directly.
      const text = await expectError(c.host.connection.unary('/store.Store/List', encodeMessage('store.ListRequest', { type: RESOURCE.PACKFILE })));
      expect(text).toMatch(/List called before a successful Init/);
      await c.host.init('storage', proto, mainConfig);
      expect((await c.host.open()).equals(configBlob)).toBe(true);
    });
  });
}
