// caldav at scale: a 5,000-event calendar (CALDAV_LARGE_EVENTS) backed up, re-listed with identical metadata, partly restored.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, parsed } from './dav-util.ts';
import { benchEvent } from './fixtures.ts';
import { backup, content, files, restore, snapshot, type Backup } from './host.ts';
import { startProxy, type Proxy } from './proxy.ts';
import { seedXandikos, startXandikos, type RunningServer } from './servers.ts';

/** Events in the big calendar: the 5,000 (CALDAV_LARGE_EVENTS changes it; about 35 s per backup on an idle 2-core machine, most of it Xandikos). */
const EVENTS = Number(process.env.CALDAV_LARGE_EVENTS ?? (process.env.KLOSET_TS_FULL_SCALE ? 5000 : 2000));
/** Per-test time limit: generous, since the servers' speed depends on the machine's load. */
const LIMIT = 600_000;
/** Events of the snapshot restored (servers take ~0.1 s per PUT; bench/caldav.ts times a full restore). */
const RESTORED = Math.min(EVENTS, Number(process.env.CALDAV_LARGE_RESTORE ?? 200));

let source: RunningServer;
let target: RunningServer;
let proxy: Proxy;
let b: Backup;
const name = (i: number): string => `event-${String(i).padStart(6, '0')}.ics`;

beforeAll(async () => {
  [source, target] = await Promise.all([startXandikos(), startXandikos()]);
  await new Account(source.url).mkcalendar('/user/calendars/big/', { displayName: `Big (${EVENTS} events)` });
  seedXandikos(source, '/user/calendars/big/', (function* () {
    for (let i = 0; i < EVENTS; i++) yield [name(i), benchEvent(i)] as [string, string];
  })());
  proxy = await startProxy(source.url);
});

afterAll(async () => {
  await proxy?.stop();
  await Promise.all([source?.stop(), target?.stop()]);
});

describe(`caldav importer: a ${EVENTS}-event calendar`, () => {
  it('backs up every event, reading the calendar in one query while listing (Xandikos finds objects by name in linear time)', async () => {
    b = await backup('caldav', { location: `caldav://${proxy.host}/user/calendars/big/`, use_tls: 'false' });
    expect(b.errors).toEqual([]);
    expect(b.itemErrors).toEqual([]);
    expect(files(b).size).toBe(EVENTS + 1);
    const reports = proxy.requests.filter((r) => r.method === 'REPORT');
    expect(reports.map((r) => /<(\w+:)?(calendar-query|calendar-multiget)/.exec(r.body)?.[2])).toEqual(['calendar-query']);
    expect(proxy.requests.filter((r) => r.method === 'GET').length).toBe(0);
    for (const i of [0, 1, Math.floor(EVENTS / 2), EVENTS - 1]) {
      expect(parsed(content(b, `/big/${name(i)}`))).toEqual(parsed(benchEvent(i)));
      expect(files(b).get(`/big/${name(i)}`)?.fileInfo?.size).toBe(Buffer.byteLength(benchEvent(i)));
    }
  }, LIMIT);

  it('lists again with identical metadata, so an incremental backup opens nothing', async () => {
    const again = await backup('caldav', { location: `caldav://${source.url.replace(/^http:\/\/|\/$/g, '')}/user/calendars/big/`, use_tls: 'false' }, { openContent: false });
    const first = files(b);
    let same = 0;
    for (const [path, rec] of files(again)) if (JSON.stringify(rec.fileInfo) === JSON.stringify(first.get(path)?.fileInfo)) same++;
    expect(same).toBe(EVENTS + 1);
  }, LIMIT);

  it(`restores ${RESTORED} of them in parallel into an empty server`, async () => {
    const keep = new Set(['/', '/.collection.json', ...Array.from({ length: RESTORED }, (_, i) => `/${name(i)}`)]);
    const entries = snapshot(b).filter((e) => keep.has(e.path));
    const out = await restore('caldav', { location: `caldav://${new URL(target.url).host}/user/calendars/restored/`, use_tls: 'false' }, entries, 8);
    expect(out.itemErrors).toEqual([]);
    const got = await new Account(target.url).objects('/user/calendars/restored/', 'calendar');
    expect(got.size).toBe(RESTORED);
    expect(parsed(got.get(name(RESTORED - 1)) ?? '')).toEqual(parsed(benchEvent(RESTORED - 1)));
  }, LIMIT);
});
