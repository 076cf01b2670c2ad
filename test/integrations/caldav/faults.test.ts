// caldav per-item failures: a broken object or one gone between listing and fetch fails alone; the backup goes on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, parsed } from './dav-util.ts';
import { benchEvent, fatEvent, simpleEvent, WEEKLY } from './fixtures.ts';
import { backup, files } from './host.ts';
import { startProxy, type Proxy } from './proxy.ts';
import { seedRadicale, seedXandikos, startRadicale, startXandikos, type RunningServer } from './servers.ts';

let radicale: RunningServer;
let xandikos: RunningServer;
const proxies: Proxy[] = [];

/** Corrupts the object whose UID is broken@kloset.test in every response (multiget XML and GET alike). */
const corrupt = (_req: unknown, body: string): string => body.replace(/SUMMARY:Broken one/g, 'SUMMARY:Broken one\r\nthis line is not iCalendar');

beforeAll(async () => {
  [radicale, xandikos] = await Promise.all([startRadicale(), startXandikos()]);
  const alice = new Account(radicale.url, 'alice', 'alicepw');
  await alice.mkcalendar('/alice/work/', { displayName: 'Work' });
  const x = new Account(xandikos.url);
  for (const a of [alice, x]) {
    const base = a === alice ? '/alice/work/' : '/user/calendars/calendar/';
    await a.put(`${base}a-fine.ics`, simpleEvent('fine-a@kloset.test', 'Fine A'));
    await a.put(`${base}broken.ics`, simpleEvent('broken@kloset.test', 'Broken one'));
    await a.put(`${base}z-weekly.ics`, WEEKLY);
  }
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await Promise.all([radicale?.stop(), xandikos?.stop()]);
});

describe('caldav importer: one bad object is a per-item error', () => {
  it('read lazily (Radicale): the Open of that object fails with the parser’s reason; the others are backed up', async () => {
    const p = await startProxy(radicale.url, { rewrite: corrupt });
    proxies.push(p);
    const b = await backup('caldav', { location: `caldav://${p.host}/alice/`, username: 'alice', password: 'alicepw', use_tls: 'false' });
    expect(b.status.code).toBe(0);
    expect(b.itemErrors.map((e) => [e.pathname, e.message])).toEqual([
      [
        '/work/broken.ics',
        'failed to receive file data: caldav importer: cannot read /work/broken.ics: not valid iCalendar: invalid line (no token ";" or ":") "this line is not iCalendar"',
      ],
    ]);
    expect(b.contents.has('/work/a-fine.ics')).toBe(true);
    expect(b.contents.has('/work/z-weekly.ics')).toBe(true);
  });

  it('read while listing (Xandikos): that object is an error record; the others are backed up', async () => {
    const p = await startProxy(xandikos.url, { rewrite: corrupt });
    proxies.push(p);
    const b = await backup('caldav', { location: `caldav://${p.host}/user/calendars/`, use_tls: 'false' });
    expect(b.status.code).toBe(0);
    expect(b.errors).toEqual([
      { pathname: '/calendar/broken.ics', error: 'not valid iCalendar: invalid line (no token ";" or ":") "this line is not iCalendar"' },
    ]);
    expect([...files(b).keys()].sort()).toEqual(['/calendar/.collection.json', '/calendar/a-fine.ics', '/calendar/z-weekly.ics']);
  });

  it('an object deleted between listing and fetch is reported as gone', async () => {
    // The proxy lists one object more than the server has, as if it was deleted right after the listing.
    const p = await startProxy(radicale.url, {
      rewrite: (req, body) =>
        req.method === 'PROPFIND' && body.includes('<href>/alice/work/a-fine.ics</href>')
          ? body.replace(
              '</multistatus>',
              '<response><href>/alice/work/ghost.ics</href><propstat><prop><getetag>"ghost"</getetag><getlastmodified>Mon, 01 Jan 2024 00:00:00 GMT</getlastmodified><resourcetype /></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>',
            )
          : body,
    });
    proxies.push(p);
    const b = await backup('caldav', { location: `caldav://${p.host}/alice/work/`, username: 'alice', password: 'alicepw', use_tls: 'false' });
    expect(b.itemErrors.map((e) => [e.pathname, e.message])).toEqual([
      ['/work/ghost.ics', 'failed to receive file data: caldav importer: cannot read /work/ghost.ics: no longer on the server (404)'],
    ]);
    expect(b.contents.has('/work/z-weekly.ics')).toBe(true);
  });
});

describe('caldav importer: a collection the server cannot list', () => {
  it('is an error record naming the request and the retries; the other collections are backed up', async () => {
    const alice = new Account(radicale.url, 'alice', 'alicepw');
    await alice.mkcalendar('/alice/other/', { displayName: 'Other' });
    await alice.put('/alice/other/x.ics', simpleEvent('other-x@kloset.test', 'X'));
    const p = await startProxy(radicale.url, {
      answer: (req) => (req.method === 'PROPFIND' && req.path === '/alice/work/' && req.body.includes('getetag') ? { status: 500, body: 'boom' } : undefined),
    });
    proxies.push(p);
    const b = await backup('caldav', { location: `caldav://${p.host}/alice/`, username: 'alice', password: 'alicepw', use_tls: 'false', max_retries: '2' });
    expect(b.status.code).toBe(0);
    expect(b.errors).toEqual([
      {
        pathname: '/work',
        error: expect.stringMatching(
          new RegExp(`^cannot list the objects of http://${p.host}/alice/work/: PROPFIND http://${p.host}/alice/work/: gave up after 2 attempts over [0-9.]+s: 500 Internal Server Error$`),
        ) as unknown as string,
      },
    ]);
    expect(files(b).has('/other/x.ics')).toBe(true);
  });
});

describe('caldav importer: an unreadable multistatus', () => {
  /** Breaks the XML of an answer: its first closing href tag no longer matches. */
  const garble = (body: string): string => body.replace(/<\/((\w+:)?href)>/, '</$1-oops>');

  it('in a listing: an error record naming the collection and the parser’s reason; the other collections are backed up', async () => {
    const alice = new Account(radicale.url, 'alice', 'alicepw');
    await alice.mkcalendar('/alice/spare/', { displayName: 'Spare' });
    await alice.put('/alice/spare/y.ics', simpleEvent('spare-y@kloset.test', 'Y'));
    const p = await startProxy(radicale.url, {
      rewrite: (req, body) => (req.method === 'PROPFIND' && req.path === '/alice/work/' && req.body.includes('getetag') ? garble(body) : body),
    });
    proxies.push(p);
    const b = await backup('caldav', { location: `caldav://${p.host}/alice/`, username: 'alice', password: 'alicepw', use_tls: 'false' });
    expect(b.status.code).toBe(0);
    expect(b.errors).toEqual([
      {
        pathname: '/work',
        error: expect.stringMatching(
          new RegExp(`^cannot list the objects of http://${p.host}/alice/work/: PROPFIND http://${p.host}/alice/work/: the server sent an unreadable multistatus \\(Unexpected close tag Line: \\d+ Column: \\d+ Char: >\\)$`),
        ) as unknown as string,
      },
    ]);
    expect(files(b).has('/spare/y.ics')).toBe(true);
  });

  it('in a whole-collection query (Xandikos): the objects are read by multiget instead', async () => {
    const p = await startProxy(xandikos.url, {
      rewrite: (req, body) => (req.method === 'REPORT' && req.body.includes('calendar-query') ? garble(body) : body),
    });
    proxies.push(p);
    const b = await backup('caldav', { location: `caldav://${p.host}/user/calendars/calendar/`, use_tls: 'false' });
    expect(b.status.code).toBe(0);
    expect(b.itemErrors).toEqual([]);
    expect(b.errors).toEqual([]);
    expect([...files(b).keys()].sort()).toEqual(['/calendar/.collection.json', '/calendar/a-fine.ics', '/calendar/broken.ics', '/calendar/z-weekly.ics']);
    const reports = p.requests.filter((r) => r.method === 'REPORT').map((r) => /<(\w+:)?(calendar-query|calendar-multiget)/.exec(r.body)?.[2]);
    expect(reports[0]).toBe('calendar-query');
    expect(reports.slice(1).every((r) => r === 'calendar-multiget')).toBe(true);
    expect(reports.length).toBeGreaterThan(1);
  });
});

describe('caldav importer: multiget read-ahead', () => {
  const hrefsIn = (body: string): number => body.match(/<d:href>/g)?.length ?? 0;
  let p: Proxy;
  beforeAll(async () => {
    // 40 events written into Radicale's storage folder (a calendar Radicale lists with getlastmodified: read lazily).
    seedRadicale(radicale, 'alice', 'many', 'Many', Array.from({ length: 40 }, (_, i) => [`e${String(i).padStart(2, '0')}.ics`, benchEvent(i)] as [string, string]));
    p = await startProxy(radicale.url);
    proxies.push(p);
  });

  it('grows its window while the host reads everything (a first backup): 40 objects in 4 multigets, no GET', async () => {
    p.requests.length = 0;
    const b = await backup('caldav', { location: `caldav://${p.host}/alice/many/`, username: 'alice', password: 'alicepw', use_tls: 'false' });
    expect(b.itemErrors).toEqual([]);
    expect(b.contents.size).toBe(41 + 40); // files, the collection file and one caldav.etag attribute each
    const reports = p.requests.filter((r) => r.method === 'REPORT');
    expect(reports.map((r) => hrefsIn(r.body))).toEqual([4, 8, 16, 12]);
    expect(p.requests.filter((r) => r.method === 'GET')).toEqual([]);
  });

  it('shrinks it when the host opens only a few (an incremental backup): little is fetched for nothing', async () => {
    p.requests.length = 0;
    const wanted = new Set(['/many/e05.ics', '/many/e20.ics', '/many/e33.ics']);
    const b = await backup('caldav', { location: `caldav://${p.host}/alice/many/`, username: 'alice', password: 'alicepw', use_tls: 'false' }, {
      openContent: (r) => wanted.has(r.pathname),
    });
    expect(b.itemErrors).toEqual([]);
    const fetched = p.requests.filter((r) => r.method === 'REPORT').reduce((n, r) => n + hrefsIn(r.body), 0);
    expect(fetched).toBeLessThanOrEqual(6);
  });
});

describe('caldav importer: objects with big inline attachments', () => {
  it('read lazily (Radicale): four 1.5 MB events come in one multiget, as small ones would', async () => {
    const fat = Array.from({ length: 4 }, (_, i) => [`fat${i}.ics`, fatEvent(i, 1_100_000)] as [string, string]);
    seedRadicale(radicale, 'alice', 'fat', 'Fat', fat);
    const p = await startProxy(radicale.url);
    proxies.push(p);
    const b = await backup('caldav', { location: `caldav://${p.host}/alice/fat/`, username: 'alice', password: 'alicepw', use_tls: 'false' });
    expect(b.errors).toEqual([]);
    expect(b.itemErrors).toEqual([]);
    for (const [name, text] of fat) expect(parsed(b.contents.get(`/fat/${name}`)?.toString() ?? ''), name).toEqual(parsed(text));
    const reports = p.requests.filter((r) => r.method === 'REPORT');
    expect(reports.map((r) => r.body.match(/<d:href>/g)?.length ?? 0)).toEqual([4]);
  });

  it('read while listing (Xandikos), over the one-query limit: multigets of at most 16 MiB of listed objects', async () => {
    // Five events of 5.6 MiB (4.3 MB attached): 28 MiB, over the 24 MiB read in one query, so batches go by listed size.
    const fat = Array.from({ length: 5 }, (_, i) => [`fat${i}.ics`, fatEvent(i, 4_300_000)] as [string, string]);
    await new Account(xandikos.url).mkcalendar('/user/calendars/fat/', { displayName: 'Fat' });
    seedXandikos(xandikos, '/user/calendars/fat/', fat);
    const p = await startProxy(xandikos.url);
    proxies.push(p);
    const b = await backup('caldav', { location: `caldav://${p.host}/user/calendars/fat/`, use_tls: 'false' });
    expect(b.errors).toEqual([]);
    expect(b.itemErrors).toEqual([]);
    for (const [name, text] of fat) expect(parsed(b.contents.get(`/fat/${name}`)?.toString() ?? ''), name).toEqual(parsed(text));
    const reports = p.requests.filter((r) => r.method === 'REPORT');
    expect(reports.map((r) => (r.body.includes('calendar-multiget') ? (r.body.match(/<d:href>/g)?.length ?? 0) : r.body))).toEqual([2, 2, 1]);
  });
});
