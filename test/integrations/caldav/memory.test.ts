// caldav importer memory: a Xandikos calendar of ~23 MiB (inline attachments) read in one calendar-query through the
// spawned importer (two pipes, like Plakar), its peak RSS (VmHWM from /proc) under 200 MB: the multistatus answer is
// parsed as it arrives, one object at a time. With KLOSET_TS_SPAWN=1 and a build in dist/caldav, the built executable
// runs; otherwise the sources run through tsx. CALDAV_MEMORY_EVENTS / CALDAV_MEMORY_ATTACH change the calendar.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEMORY_LIMIT, memoryPeak } from '../../conformance/index.ts';
import { launchPlugin } from '../../harness/index.ts';
import { Account, parsed } from './dav-util.ts';
import { fatEvent } from './fixtures.ts';
import { startProxy, type Proxy } from './proxy.ts';
import { seedXandikos, startXandikos, type RunningServer } from './servers.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const MANIFEST = join(ROOT, 'dist', 'caldav', 'manifest.yaml');
const BUILT = process.env.KLOSET_TS_SPAWN === '1' && existsSync(MANIFEST);
const MiB = 1024 * 1024;
/** 160 events of ~148 KB each (108 KB attached, base64 and folded): ~22.6 MiB, under the importer's one-query limit of 24 MiB. */
const EVENTS = Number(process.env.CALDAV_MEMORY_EVENTS ?? 160);
const ATTACH = Number(process.env.CALDAV_MEMORY_ATTACH ?? 108_000);
const name = (i: number): string => `fat-${String(i).padStart(4, '0')}.ics`;

let srv: RunningServer;
let proxy: Proxy;
let total = 0;

beforeAll(async () => {
  srv = await startXandikos();
  await new Account(srv.url).mkcalendar('/user/calendars/fat/', { displayName: 'Fat' });
  seedXandikos(srv, '/user/calendars/fat/', (function* () {
    for (let i = 0; i < EVENTS; i++) {
      const text = fatEvent(i, ATTACH);
      total += Buffer.byteLength(text);
      yield [name(i), text] as [string, string];
    }
  })());
  // Counts the REPORTs; the answers pass through unchanged.
  proxy = await startProxy(srv.url);
}, 240_000);

afterAll(async () => {
  await proxy?.stop();
  await srv?.stop();
});

describe(`caldav importer: memory (${BUILT ? 'built executable' : 'sources'})`, () => {
  it(`backs up a ${EVENTS}-event calendar with inline attachments, read in one calendar-query, with peak RSS under 200 MB`, async () => {
    expect(total).toBeGreaterThan(20 * MiB);
    expect(total).toBeLessThanOrEqual(24 * MiB);
    const options = { settingsTimeoutMs: 120_000 };
    const p = BUILT
      ? await launchPlugin({ manifest: MANIFEST, kind: 'importer' }, options)
      : await launchPlugin({ executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/caldav'), 'importer'] }, options);
    try {
      await p.host.init('importer', 'caldav', { location: `caldav://${proxy.host}/user/calendars/fat/`, use_tls: 'false' }, { maxConcurrency: 4 });
      let bytes = 0;
      const kept = new Map<string, Buffer[]>();
      const out = await p.host.importAll({
        maxConcurrency: 4,
        openContent: (r) => r.pathname.endsWith('.ics'),
        // Bytes are counted; two objects are kept to compare.
        content: (r) =>
          new Writable({
            write: (chunk: Buffer, _enc, done) => {
              if (r.isXattr) return done(); // the caldav.etag attributes
              bytes += chunk.length;
              if (r.pathname === `/fat/${name(0)}` || r.pathname === `/fat/${name(EVENTS - 1)}`) kept.set(r.pathname, [...(kept.get(r.pathname) ?? []), chunk]);
              done();
            },
          }),
      });
      const memory = memoryPeak(p.process.pid);
      process.stdout.write(`caldav importer ${memory.text} for a ${(total / MiB).toFixed(1)} MiB calendar\n`);
      expect(out.status.code).toBe(0);
      expect(out.errors).toEqual([]);
      expect(out.itemErrors).toEqual([]);
      expect(out.records.filter((r) => !r.isXattr && r.pathname.endsWith('.ics')).length).toBe(EVENTS);
      expect(bytes).toBe(total);
      for (const i of [0, EVENTS - 1]) expect(parsed(Buffer.concat(kept.get(`/fat/${name(i)}`) ?? []).toString('utf8'))).toEqual(parsed(fatEvent(i, ATTACH)));
      const reports = proxy.requests.filter((r) => r.method === 'REPORT');
      expect(reports.map((r) => /<(\w+:)?(calendar-query|calendar-multiget)/.exec(r.body)?.[2])).toEqual(['calendar-query']);
      expect(memory.peak).toBeGreaterThan(0);
      expect(memory.peak, `importer ${memory.text}`).toBeLessThan(MEMORY_LIMIT);
    } finally {
      await p.dispose();
    }
  }, 600_000);
});
