// Soak of every storage connector: two spawned processes on one repository (as Plakar with its cache daemon), each
// with 64 Put/Get in flight, for 20 s in the suite or 10 minutes with KLOSET_TS_SOAK=1 (KLOSET_TS_SOAK_SECONDS sets
// any length). No errors, no leaked descriptors, flat memory. Loopback only; bounded in time and object count.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoSecrets } from '../conformance/connect.ts';
import { pseudoRandom, randomMac } from '../conformance/data.ts';
import { RESOURCE, type LaunchedPlugin } from '../harness/index.ts';
import { fdCount, rss, spawnConnector, storeTargets, type StoreTarget } from './stores.ts';

const SOAK = process.env.KLOSET_TS_SOAK === '1';
const SECONDS = Number(process.env.KLOSET_TS_SOAK_SECONDS ?? (SOAK ? 600 : 20));
/** Operations in flight per process. */
const IN_FLIGHT = 64;
/** At most this many objects are written per connector (the bound in count). */
const MAX_OBJECTS = SOAK ? 200_000 : 20_000;
/** Descriptors a process may hold at the end beyond what it held after warm-up (pooled sockets come and go). */
const FD_MARGIN = 32;
/** Resident memory a process may hold at the end beyond what it held after warm-up. */
const RSS_MARGIN = 64 * 1024 * 1024;
const MiB = 1024 * 1024;

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

let targets: StoreTarget[] = [];
beforeAll(async () => {
  targets = await storeTargets();
}, 60_000);
afterAll(async () => {
  for (const t of targets) await t.close();
});

interface Sample {
  fd: number;
  rss: number;
}

function sample(p: LaunchedPlugin): Sample {
  return { fd: fdCount(p.process.pid), rss: rss(p.process.pid) };
}

describe(`soak: ${IN_FLIGHT} Put/Get in flight per process, two processes on one repository, ${SECONDS} s`, () => {
  for (const name of ['s3', 'imap', 'gdrive', 'onedrive']) {
    it(`${name} storage: no errors, no leaked descriptors, flat memory`, async (ctx) => {
      const t = targets.find((x) => x.name === name);
      if (!t) return ctx.skip(`${name}: its server is not in KLOSET_TS_SERVERS`);
      const repo = `soak-${Date.now().toString(36)}`;
      const a = await spawnConnector(t, 'storage', t.config('storage', repo));
      await a.host.create(Buffer.from('_KLOSET_soak'));
      const b = await spawnConnector(t, 'storage', t.config('storage', repo));
      expect((await b.host.open()).toString()).toBe('_KLOSET_soak');
      const procs = [a, b];
      const stored: Array<{ mac: Buffer; size: number; digest: string }> = [];
      const errors: string[] = [];
      let puts = 0;
      let gets = 0;
      let seed = 1;
      const start = Date.now();
      const end = start + SECONDS * 1000;
      const warmAt = start + Math.max(10_000, SECONDS * 250);
      let warm: Sample[] | undefined;
      const peak = [0, 0];
      const sampler = setInterval(() => {
        procs.forEach((p, i) => (peak[i] = Math.max(peak[i] as number, rss(p.process.pid))));
        if (!warm && Date.now() >= warmAt) warm = procs.map(sample);
      }, 500);
      const worker = async (p: LaunchedPlugin): Promise<void> => {
        while (Date.now() < end && errors.length < 5) {
          const rnd = Math.floor(Math.random() * 2 ** 31);
          const doPut = stored.length < IN_FLIGHT || rnd % 2 === 0;
          try {
            if (doPut && puts < MAX_OBJECTS) {
              const size = 1024 + (rnd % (64 * 1024));
              const data = pseudoRandom(size, seed++);
              const mac = randomMac();
              puts++;
              const n = await p.host.put(RESOURCE.PACKFILE, mac, data);
              if (n !== size) throw new Error(`Put wrote ${n} of ${size} bytes`);
              stored.push({ mac, size, digest: sha(data) });
            } else {
              // Any object, often one the other process wrote.
              const x = stored[rnd % stored.length] as { mac: Buffer; size: number; digest: string };
              gets++;
              const data = await p.host.get(RESOURCE.PACKFILE, x.mac);
              if (sha(data) !== x.digest) throw new Error(`Get of a ${x.size}-byte packfile returned ${data.length} other bytes`);
            }
          } catch (err) {
            errors.push((err as Error).message);
          }
        }
      };
      try {
        await Promise.all(procs.flatMap((p) => Array.from({ length: IN_FLIGHT }, () => worker(p))));
      } finally {
        clearInterval(sampler);
      }
      const last = procs.map(sample);
      const listed = await a.host.list(RESOURCE.PACKFILE);
      // A third process, started now, must see every object as well.
      const c = await spawnConnector(t, 'storage', t.config('storage', repo));
      const fresh = await c.host.list(RESOURCE.PACKFILE);
      await c.host.close().catch(() => undefined);
      await c.dispose(10_000);
      const secs = (Date.now() - start) / 1000;
      for (const p of procs) {
        await p.host.close().catch(() => undefined);
        const err = p.process.stderr();
        const exit = await p.dispose(10_000);
        assertNoSecrets(err, t.secrets, `${name} stderr`);
        expect(exit.timedOut).toBe(false);
      }
      const w = warm ?? last;
      process.stdout.write(
        `soak ${name}: ${puts} puts, ${gets} gets in ${secs.toFixed(0)} s (${((puts + gets) / secs).toFixed(0)} ops/s), ${errors.length} errors; ` +
          `List shows ${listed.length} (first process), ${fresh.length} (new process) of ${stored.length}; ` +
          procs.map((_, i) => `process ${i + 1}: fds ${w[i]?.fd}→${last[i]?.fd}, RSS ${((w[i]?.rss ?? 0) / MiB).toFixed(0)}→${((last[i]?.rss ?? 0) / MiB).toFixed(0)} MiB (peak ${((peak[i] ?? 0) / MiB).toFixed(0)})`).join('; ') +
          '\n',
      );
      expect(errors, `${name}: errors during the soak`).toEqual([]);
      expect(warm, 'the soak ended before its warm-up').toBeDefined();
      expect({ firstProcess: listed.length, newProcess: fresh.length }, `${name}: List after the soak`).toEqual({ firstProcess: stored.length, newProcess: stored.length });
      for (let i = 0; i < procs.length; i++) {
        expect(last[i]?.fd, `${name} process ${i + 1} leaks descriptors`).toBeLessThanOrEqual((w[i]?.fd ?? 0) + FD_MARGIN);
        expect(last[i]?.rss, `${name} process ${i + 1} memory grows`).toBeLessThanOrEqual((w[i]?.rss ?? 0) + RSS_MARGIN);
      }
    }, (SECONDS + 120) * 1000);
  }
});
