// SIGKILL of the built executables in the middle of a Put (storage) and of a restore (exporter): the next run
// succeeds, and no half-written object is visible to List or Get, nor any partial file in the restored tree.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoSecrets } from '../conformance/connect.ts';
import { pseudoRandom, randomMac } from '../conformance/data.ts';
import { isRegular, MODE, RESOURCE, type ExportEntry, type LaunchedPlugin } from '../harness/index.ts';
import { startFaultProxy, type FaultProxy } from './proxy.ts';
import { spawnConnector, storeTargets, type StoreTarget } from './stores.ts';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

/**
 * Per integration: the object size, and how many bytes of it reach the server before the kill (`put` during a
 * storage Put, `restore` during a restore, beyond the files before it).
 */
const SIZES: Record<string, { total: number; put: number; restore: number }> = {
  // Two 5 MiB parts of a multipart upload are stored when the kill lands.
  s3: { total: 12 * MiB, put: 10 * MiB, restore: 10 * MiB },
  // Several 512 KiB messages of a split object are appended; a restored message is appended whole, once read.
  imap: { total: 3 * MiB, put: 1.5 * MiB, restore: 0 },
  // Several chunks of a resumable upload session are stored.
  gdrive: { total: 3 * MiB, put: 1.5 * MiB, restore: 1.5 * MiB },
  // Packfiles are buffered until complete (their size starts the upload session): the kill lands before any upload.
  onedrive: { total: 3 * MiB, put: 0, restore: 1.5 * MiB },
};

let targets: StoreTarget[] = [];
beforeAll(async () => {
  targets = await storeTargets();
}, 60_000);
afterAll(async () => {
  for (const t of targets) await t.close();
});

/** Bytes that stop after `upTo` (`reached` resolves) until `release` is called, then end with an error (the host went away). */
function stalledStream(data: Buffer, upTo: number): { stream: AsyncIterable<Uint8Array>; reached: Promise<void>; release(): void } {
  let release!: () => void;
  let reach!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const reached = new Promise<void>((r) => (reach = r));
  return {
    release,
    reached,
    stream: (async function* () {
      for (let off = 0; off < upTo; off += 256 * 1024) yield data.subarray(off, Math.min(upTo, off + 256 * 1024));
      reach();
      await released;
      throw new Error('host gone');
    })(),
  };
}

/** Waits until the proxy relayed `bytes` towards the server. */
async function sent(proxy: FaultProxy, bytes: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (proxy.stats.up < bytes) {
    if (Date.now() - t0 > 60_000) throw new Error(`${what}: only ${proxy.stats.up} bytes reached the server in 60 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGKILLs a spawned connector and waits for it to be gone. */
async function kill(p: LaunchedPlugin): Promise<void> {
  p.process.kill('SIGKILL');
  const exit = await p.process.exited;
  expect(exit.signal).toBe('SIGKILL');
  await p.dispose(2000).catch(() => undefined);
}

async function done(p: LaunchedPlugin, t: StoreTarget): Promise<void> {
  await p.host.close().catch(() => undefined);
  const err = p.process.stderr();
  const exit = await p.dispose(10_000);
  assertNoSecrets(err, t.secrets, `${t.name} stderr`);
  expect(exit.timedOut, `${t.name} did not exit on EOF`).toBe(false);
}

describe('SIGKILL mid-Put and mid-restore (spawned executables)', () => {
  for (const name of ['s3', 'imap', 'gdrive', 'onedrive']) {
    it(`${name} storage: killed in the middle of a Put, the object is not visible; the next run stores it`, async (ctx) => {
      const t = targets.find((x) => x.name === name);
      if (!t) return ctx.skip(`${name}: its server is not in KLOSET_TS_SERVERS`);
      const repo = `kill-put-${Date.now().toString(36)}`;
      const { total, put: sentBeforeKill } = SIZES[name] as { total: number; put: number };
      const data = pseudoRandom(total, 77);
      const small = { mac: randomMac(), data: pseudoRandom(1000, 78) };
      const mac = randomMac();
      const proxy = await startFaultProxy({ layer: 'tcp', target: t.upstream });
      try {
        const a = await spawnConnector(t, 'storage', t.config('storage', repo, proxy.host));
        await a.host.create(Buffer.from('_KLOSET_kill'));
        await a.host.put(RESOURCE.PACKFILE, small.mac, small.data);
        const before = proxy.stats.up;
        const feed = stalledStream(data, total - 256 * 1024);
        const put = a.host.put(RESOURCE.PACKFILE, mac, feed.stream).then(
          () => 'finished',
          (err: Error) => err.message,
        );
        await feed.reached;
        await sent(proxy, before + sentBeforeKill, `${name} Put`);
        await kill(a);
        feed.release();
        expect(await put).not.toBe('finished');
      } finally {
        await proxy.close();
      }
      // A new process on the same repository.
      const b = await spawnConnector(t, 'storage', t.config('storage', repo));
      try {
        expect((await b.host.open()).toString()).toBe('_KLOSET_kill');
        const listed = (await b.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex'));
        expect(listed, 'a half-written packfile is listed').not.toContain(mac.toString('hex'));
        expect(listed).toContain(small.mac.toString('hex'));
        await expect(b.host.get(RESOURCE.PACKFILE, mac), 'a half-written packfile can be read').rejects.toThrow();
        expect(await b.host.put(RESOURCE.PACKFILE, mac, data)).toBe(total);
        expect(sha(await b.host.get(RESOURCE.PACKFILE, mac))).toBe(sha(data));
        const again = (await b.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex'));
        expect(again.filter((m) => m === mac.toString('hex'))).toHaveLength(1);
        expect(again).toHaveLength(2);
      } finally {
        await done(b, t);
      }
    }, 180_000);

    it(`${name} exporter: killed in the middle of a restore, the next restore completes with whole files`, async (ctx) => {
      const t = targets.find((x) => x.name === name);
      if (!t) return ctx.skip(`${name}: its server is not in KLOSET_TS_SERVERS`);
      const dest = `kill-restore-${Date.now().toString(36)}`;
      const { total, restore: sentBeforeKill } = SIZES[name] as { total: number; restore: number };
      const files = name === 'imap' ? imapFiles(total) : plainFiles(total);
      const entries = (stall?: ReturnType<typeof stalledStream>): ExportEntry[] => [
        { path: '/', info: { name: dest, mode: (MODE.DIR | 0o755) >>> 0 } },
        { path: '/d', info: { name: 'd', mode: (MODE.DIR | 0o755) >>> 0 } },
        ...files.map((f, i) => ({
          path: `/d/${f.name}`,
          info: { name: f.name, mode: 0o644, size: f.data.length, modTime: { seconds: 1_700_000_000 + i, nanos: 0 } },
          content: stall && i === files.length - 1 ? () => stall.stream : f.data,
        })),
      ];
      const proxy = await startFaultProxy({ layer: 'tcp', target: t.upstream });
      try {
        const a = await spawnConnector(t, 'exporter', t.config('exporter', dest, proxy.host));
        const big = files[files.length - 1] as { data: Buffer };
        const feed = stalledStream(big.data, big.data.length - 256 * 1024);
        const restore = a.host.exportTree(entries(feed)).then(
          (o) => `finished with status ${o.status.code}`,
          (err: Error) => err.message,
        );
        const small = files.slice(0, -1).reduce((n, f) => n + f.data.length, 0);
        await feed.reached;
        await sent(proxy, small + sentBeforeKill, `${name} restore`);
        await kill(a);
        feed.release();
        expect(await restore).not.toBe('finished with status 0');
      } finally {
        await proxy.close();
      }
      // The restore runs again, to the same destination, and completes.
      const b = await spawnConnector(t, 'exporter', t.config('exporter', dest));
      const again = await b.host.exportTree(entries());
      await done(b, t);
      expect(again.status.code, again.status.details).toBe(0);
      expect(again.itemErrors).toEqual([]);
      // What the destination holds: each file once, whole (IMAP names messages after their UIDs: compare contents).
      const c = await spawnConnector(t, 'importer', t.config('importer', dest));
      const back = await c.host.importAll({ content: 'sha256' });
      await done(c, t);
      expect(back.status.code, back.status.details).toBe(0);
      const got = back.records
        .filter((r) => !r.isXattr && r.fileInfo && isRegular(r.fileInfo.mode) && r.pathname.includes('/d/'))
        .map((r) => String(back.contents.get(r.pathname)))
        .sort();
      expect(got).toEqual(files.map((f) => sha(f.data)).sort());
    }, 180_000);
  }
});

function plainFiles(total: number): Array<{ name: string; data: Buffer }> {
  return [
    { name: 'a.txt', data: Buffer.from('first file\n') },
    { name: 'b.bin', data: pseudoRandom(200_000, 5) },
    { name: 'big.bin', data: pseudoRandom(total, 6) },
  ];
}

/** Three messages, the last one large (a base64 attachment). */
function imapFiles(total: number): Array<{ name: string; data: Buffer }> {
  const msg = (n: number, body: string): Buffer =>
    Buffer.from(
      [`From: k@kloset.test`, `Subject: kill ${n}`, `Date: Mon, 04 Mar 2024 05:06:0${n} +0000`, `Message-ID: <kill-${n}-${Date.now()}@kloset.test>`, '', body, ''].join('\r\n'),
    );
  const b64 = pseudoRandom(Math.floor((total * 3) / 4), 9).toString('base64').replace(/.{76}/g, '$&\r\n');
  return [
    { name: '1-a.eml', data: msg(1, 'first') },
    { name: '2-b.eml', data: msg(2, 'second') },
    { name: '3-big.eml', data: msg(3, b64) },
  ];
}
