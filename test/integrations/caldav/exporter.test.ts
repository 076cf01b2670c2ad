// caldav exporter requests as the server sees them (through a proxy in front of Radicale): conditional PUTs, a change
// racing an overwrite, and writes in parallel up to the host's maxconcurrency.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, parsed, propOf } from './dav-util.ts';
import { simpleEvent, TASK } from './fixtures.ts';
import { backup, restore, snapshot, type Backup } from './host.ts';
import { startProxy, type Proxy, type SeenRequest } from './proxy.ts';
import { startRadicale, type RunningServer } from './servers.ts';

let srv: RunningServer;
const proxies: Proxy[] = [];
let seq = 0;

beforeAll(async () => {
  srv = await startRadicale();
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await srv?.stop();
});

async function proxy(hooks: Parameters<typeof startProxy>[1] = {}): Promise<Proxy> {
  const p = await startProxy(srv.url, hooks);
  proxies.push(p);
  return p;
}

const carol = (): Account => new Account(srv.url, 'carol', 'carolpw');
const cfg = (p: Proxy, path: string, extra: Record<string, string> = {}): Record<string, string> => ({
  location: `caldav://${p.host}${path}`,
  username: 'carol',
  password: 'carolpw',
  use_tls: 'false',
  ...extra,
});
const puts = (p: Proxy): SeenRequest[] => p.requests.filter((r) => r.method === 'PUT');

/** A calendar of carol's holding `n` simple events, backed up (root `/<name>`). */
async function calendarOf(n: number): Promise<{ name: string; b: Backup }> {
  const name = `source-${++seq}`;
  await carol().mkcalendar(`/carol/${name}/`, { displayName: `Source ${seq}` });
  for (let i = 0; i < n; i++) await carol().put(`/carol/${name}/e${i}.ics`, simpleEvent(`e${i}-${seq}@kloset.test`, `Event ${i}`));
  const b = await backup('caldav', { location: `caldav://${new URL(srv.url).host}/carol/${name}/`, username: 'carol', password: 'carolpw', use_tls: 'false' });
  expect(b.itemErrors).toEqual([]);
  return { name, b };
}

describe('caldav exporter: conditional writes', () => {
  it('creates with If-None-Match: * and replaces with If-Match on the ETag the server has', async () => {
    const { b } = await calendarOf(2);
    const p = await proxy();
    const dest = `/carol/copy-${seq}/`;
    const first = await restore('caldav', cfg(p, dest), snapshot(b));
    expect(first.itemErrors).toEqual([]);
    expect(puts(p).map((r) => [r.path, r.headers['if-none-match'], r.headers['if-match']]).sort()).toEqual([
      [`${dest}e0.ics`, '*', undefined],
      [`${dest}e1.ics`, '*', undefined],
    ]);
    // Someone edits one object; the overwrite restore replaces exactly that version.
    const edited = await carol().put(`${dest}e1.ics`, simpleEvent(`e1-${seq}@kloset.test`, 'Edited'));
    const etag = edited.headers.get('etag');
    expect(etag).toBeTruthy();
    p.requests.length = 0;
    const again = await restore('caldav', cfg(p, dest, { on_conflict: 'overwrite' }), snapshot(b));
    expect(again.itemErrors).toEqual([]);
    expect(puts(p).map((r) => [r.path, r.headers['if-none-match'], r.headers['if-match']]).sort()).toEqual([
      [`${dest}e0.ics`, '*', undefined],
      [`${dest}e1.ics`, '*', undefined],
      [`${dest}e1.ics`, undefined, etag],
    ]);
    expect(propOf((await carol().objects(dest, 'calendar')).get('e1.ics') ?? '', 'summary')).toBe('Event 1');
  });

  it('an object changed on the server between the read and the overwrite gets a 412: reported, the newer version kept', async () => {
    const { b } = await calendarOf(1);
    const dest = `/carol/race-${seq}/`;
    expect((await restore('caldav', cfg(await proxy(), dest), snapshot(b))).itemErrors).toEqual([]);
    await carol().put(`${dest}e0.ics`, simpleEvent(`e0-${seq}@kloset.test`, 'Edited once'));
    const p = await proxy({
      // Another client saves the object again just before our If-Match PUT reaches the server.
      before: async (req) => {
        if (req.method === 'PUT' && req.headers['if-match']) await carol().put(`${dest}e0.ics`, TASK.replace('task-report@kloset.test', `e0-${seq}@kloset.test`));
      },
    });
    const out = await restore('caldav', cfg(p, dest, { on_conflict: 'overwrite' }), snapshot(b));
    expect(out.itemErrors).toEqual([
      { pathname: '/e0.ics', error: `caldav exporter: ${dest}e0.ics already exists and changed on the server during the restore; not overwritten` },
    ]);
    const kept = (await carol().objects(dest, 'calendar')).get('e0.ics') ?? '';
    expect(Object.keys(parsed(kept))).toEqual([`VTODO e0-${seq}@kloset.test`]);
  });
});

describe('caldav exporter: parallel writes', () => {
  /** The most PUTs the proxy held at once while restoring 12 objects (each held 150 ms before it is forwarded). */
  async function peak(maxConcurrency: number, extra: Record<string, string> = {}): Promise<number> {
    const { b } = await calendarOf(12);
    let inflight = 0;
    let most = 0;
    const p = await proxy({
      before: async (req) => {
        if (req.method !== 'PUT') return;
        most = Math.max(most, ++inflight);
        await new Promise((resolve) => setTimeout(resolve, 150));
        inflight--;
      },
    });
    const dest = `/carol/parallel-${seq}/`;
    const out = await restore('caldav', cfg(p, dest, extra), snapshot(b), maxConcurrency);
    expect(out.itemErrors).toEqual([]);
    expect((await carol().objects(dest, 'calendar')).size).toBe(12);
    expect(puts(p).length).toBe(12);
    return most;
  }

  it('writes up to the host’s maxconcurrency objects at once', async () => {
    expect(await peak(3, { concurrency: '16' })).toBe(3);
    expect(await peak(6, { concurrency: '16' })).toBe(6);
  });

  it('never more than concurrency HTTP requests to the server (default 4)', async () => {
    expect(await peak(8)).toBe(4);
  });
});
