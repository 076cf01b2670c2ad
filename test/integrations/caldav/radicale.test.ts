// caldav/carddav against a real Radicale: discovery, layout, properties, ETags, round trips, conflicts, filters, Init errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, parsed, propOf, type Props } from './dav-util.ts';
import { CARD_KENJI, CARD_ZOE, JOURNAL, NEW_YORK_EVENT, PARIS_TZ, PUBLISHED, simpleCard, simpleEvent, TASK, TASK_DONE, WEEKLY } from './fixtures.ts';
import { backup, content, files, initError, restore, snapshot, xattr, type Backup } from './host.ts';
import { freePort, startRadicale, type RunningServer } from './servers.ts';

let srv: RunningServer;
let host: string;
let alice: Account;

const WORK: Props = {
  displayName: 'Work & clients',
  description: 'Team <meetings> & “deadlines”',
  color: '#FF8800FF',
  order: '3',
  timezone: PARIS_TZ,
  components: ['VEVENT', 'VTODO'],
};
const SEED: Record<string, { props: Props; objects: Record<string, string> }> = {
  work: {
    props: WORK,
    objects: { 'weekly.ics': WEEKLY, 'ny meeting & co.ics': NEW_YORK_EVENT, 'holiday.ics': PUBLISHED },
  },
  tasks: { props: { displayName: 'Tasks', color: '#00AA00FF', components: ['VTODO'] }, objects: { 'report.ics': TASK, 'coffee.ics': TASK_DONE } },
  journal: { props: { displayName: 'Journal', components: ['VJOURNAL'] }, objects: { 'day1.ics': JOURNAL } },
  empty: { props: { displayName: 'Nothing here yet' }, objects: {} },
};
const BOOKS: Record<string, { props: Props; objects: Record<string, string> }> = {
  contacts: { props: { displayName: 'Contacts', description: 'People I know' }, objects: { 'zoe.vcf': CARD_ZOE, 'kenji.vcf': CARD_KENJI } },
  family: { props: { displayName: 'Family' }, objects: { 'mum.vcf': simpleCard('mum@kloset.test', 'Mum'), 'dad.vcf': simpleCard('dad@kloset.test', 'Dad') } },
};

function cfg(user: string, path = `/${user}/`, extra: Record<string, string> = {}, proto = 'caldav'): Record<string, string> {
  const password = `${user}pw`;
  return { location: `${proto}://${host}${path}`, username: user, password, use_tls: 'false', ...extra };
}

/** Every collection of a home with its objects parsed. */
async function account(a: Account, home: string, kind: 'calendar' | 'addressbook'): Promise<Record<string, { props: Props; objects: Record<string, unknown> }>> {
  const out: Record<string, { props: Props; objects: Record<string, unknown> }> = {};
  for (const [name, props] of await a.collections(home, kind)) {
    const objects: Record<string, unknown> = {};
    for (const [obj, data] of await a.objects(`${home}${encodeURIComponent(name)}/`, kind)) objects[obj] = parsed(data);
    out[name] = { props, objects };
  }
  return out;
}

beforeAll(async () => {
  srv = await startRadicale();
  host = new URL(srv.url).host;
  alice = new Account(srv.url, 'alice', 'alicepw');
  for (const [name, c] of Object.entries(SEED)) {
    await alice.mkcalendar(`/alice/${name}/`, c.props);
    for (const [obj, data] of Object.entries(c.objects)) await alice.put(`/alice/${name}/${encodeURIComponent(obj)}`, data);
  }
  for (const [name, c] of Object.entries(BOOKS)) {
    await alice.mkaddressbook(`/alice/${name}/`, c.props);
    for (const [obj, data] of Object.entries(c.objects)) await alice.put(`/alice/${name}/${encodeURIComponent(obj)}`, data);
  }
});

afterAll(async () => {
  await srv?.stop();
});

describe('caldav importer: Radicale', () => {
  let b: Backup;
  beforeAll(async () => {
    b = await backup('caldav', cfg('alice', '/'));
  });

  it('discovers every calendar from the server root and lays out /<collection>/<resource>.ics', () => {
    expect(b.status.code).toBe(0);
    expect(b.init).toMatchObject({ root: '/', type: 'caldav', origin: `alice@${host}` });
    expect(b.errors).toEqual([]);
    expect(b.itemErrors).toEqual([]);
    expect([...files(b).keys()].sort()).toEqual(
      [
        '/empty/.collection.json',
        '/journal/.collection.json',
        '/journal/day1.ics',
        '/tasks/.collection.json',
        '/tasks/coffee.ics',
        '/tasks/report.ics',
        '/work/.collection.json',
        '/work/holiday.ics',
        '/work/ny meeting & co.ics',
        '/work/weekly.ics',
      ].sort(),
    );
    const dirs = b.records.filter((r) => r.fileInfo && (r.fileInfo.mode & 0x80000000) !== 0).map((r) => r.pathname);
    expect(dirs.sort()).toEqual(['/empty', '/journal', '/tasks', '/work']);
  });

  it('saves each collection’s properties in .collection.json', () => {
    const saved = JSON.parse(content(b, '/work/.collection.json')) as { kind: string; href: string; props: Props };
    expect(saved.kind).toBe('calendar');
    expect(saved.href).toBe('/alice/work/');
    expect({ ...saved.props, timezone: saved.props.timezone?.replace(/\r\n/g, '\n') }).toEqual({
      ...WORK,
      timezone: PARIS_TZ.replace(/\r\n/g, '\n'),
      components: ['VEVENT', 'VTODO'],
    });
    expect(JSON.parse(content(b, '/empty/.collection.json')).props.displayName).toBe('Nothing here yet');
  });

  it('keeps the objects whole (recurrence master + override, VTODO due dates, VJOURNAL, time zones, attachments, non-ASCII)', () => {
    const weekly = content(b, '/work/weekly.ics');
    expect(parsed(weekly)).toEqual(parsed(WEEKLY));
    expect(Object.keys(parsed(weekly)).sort()).toEqual(['VEVENT weekly-standup@kloset.test', 'VEVENT weekly-standup@kloset.test @2024-01-29T09:30:00']);
    expect(propOf(weekly, 'rrule')?.split(';').sort()).toEqual(['BYDAY=MO', 'COUNT=20', 'FREQ=WEEKLY']);
    expect(propOf(weekly, 'exdate')).toBe('2024-01-22T09:30:00');
    expect(weekly).toMatch(/^BEGIN:VCALENDAR\r\n[\s\S]*END:VCALENDAR\r\n$/);
    expect(parsed(content(b, '/work/ny meeting & co.ics'))).toEqual(parsed(NEW_YORK_EVENT));
    expect(propOf(content(b, '/work/ny meeting & co.ics'), 'summary')).toBe('Réunion 会議 ≠ “quotes” ✓');
    expect(parsed(content(b, '/work/holiday.ics'))).toEqual(parsed(PUBLISHED));
    expect(propOf(content(b, '/tasks/report.ics'), 'due')).toBe('2024-01-10T17:00:00Z');
    expect(parsed(content(b, '/journal/day1.ics'))).toEqual(parsed(JOURNAL));
  });

  it('keeps each object’s ETag as the caldav.etag attribute and its mtime from getlastmodified', async () => {
    const rec = files(b).get('/work/weekly.ics');
    const res = await alice.fetch(alice.url('/alice/work/weekly.ics'));
    await res.arrayBuffer();
    expect(xattr(b, '/work/weekly.ics', 'caldav.etag')).toBe(res.headers.get('etag'));
    expect(rec?.extendedAttributes).toEqual(['caldav.etag']);
    const lastModified = Date.parse(res.headers.get('last-modified') ?? '');
    const mtime = (rec?.fileInfo?.modTime?.seconds ?? 0) * 1000;
    expect(mtime).toBe(lastModified);
  });

  it('gives identical metadata on a second backup, so Plakar reuses unchanged objects without opening them', async () => {
    const again = await backup('caldav', cfg('alice', '/'), { openContent: false });
    const first = files(b);
    for (const [path, rec] of files(again)) expect(rec.fileInfo, path).toEqual(first.get(path)?.fileInfo);
    expect(again.stats.opens).toBe(0);
  });

  it('backs up only one calendar when the location names it (root is that collection)', async () => {
    const one = await backup('caldav', cfg('alice', '/alice/tasks/'));
    expect(one.init.root).toBe('/tasks');
    expect([...files(one).keys()].sort()).toEqual(['/tasks/.collection.json', '/tasks/coffee.ics', '/tasks/report.ics']);
  });

  it('keeps server names; one that needed .ics added yields to a real .ics name on a clash', async () => {
    await alice.mkcalendar('/alice/names/', { displayName: 'Names' });
    await alice.put('/alice/names/abc', simpleEvent('bare@kloset.test', 'Bare name'));
    await alice.put('/alice/names/abc.ics', simpleEvent('real@kloset.test', 'Real name'));
    await alice.put('/alice/names/100%25%20sure%3F.ics', simpleEvent('odd@kloset.test', 'Odd name'));
    const one = await backup('caldav', cfg('alice', '/alice/names/'));
    expect([...files(one).keys()].sort()).toEqual(['/names/.collection.json', '/names/100%25 sure?.ics', '/names/abc.ics', '/names/abc~2.ics']);
    expect(propOf(content(one, '/names/abc.ics'), 'uid')).toBe('real@kloset.test');
    expect(propOf(content(one, '/names/abc~2.ics'), 'uid')).toBe('bare@kloset.test');
    const out = await restore('caldav', cfg('carol', '/carol/names/'), snapshot(one));
    expect(out.itemErrors).toEqual([]);
    const carol = new Account(srv.url, 'carol', 'carolpw');
    expect([...(await carol.objects('/carol/names/', 'calendar')).keys()].sort()).toEqual(['100% sure?.ics', 'abc.ics', 'abc~2.ics']);
    await alice.delete('/alice/names/');
  });

  it('components keeps only the chosen types and skips calendars that cannot hold them', async () => {
    const todo = await backup('caldav', cfg('alice', '/alice/', { components: 'VTODO' }));
    expect([...files(todo).keys()].sort()).toEqual(['/empty/.collection.json', '/tasks/.collection.json', '/tasks/coffee.ics', '/tasks/report.ics', '/work/.collection.json']);
  });

  it('include and exclude match the collection name or its display name', async () => {
    const some = await backup('caldav', cfg('alice', '/alice/', { include: 'work,TASKS', exclude: '' }));
    expect([...new Set([...files(some).keys()].map((p) => p.split('/')[1]))].sort()).toEqual(['tasks', 'work']);
    const none = await backup('caldav', cfg('alice', '/alice/', { exclude: '*' }));
    expect(none.records).toEqual([]);
    const byDisplay = await backup('caldav', cfg('alice', '/alice/', { include: 'Nothing*' }));
    expect([...files(byDisplay).keys()]).toEqual(['/empty/.collection.json']);
  });
});

describe('carddav importer: Radicale', () => {
  it('discovers every address book and saves vCards as .vcf with the book’s properties', async () => {
    const b = await backup('carddav', cfg('alice', '/alice/', {}, 'carddav'));
    expect(b.errors).toEqual([]);
    expect([...files(b).keys()].sort()).toEqual(['/contacts/.collection.json', '/contacts/kenji.vcf', '/contacts/zoe.vcf', '/family/.collection.json', '/family/dad.vcf', '/family/mum.vcf']);
    expect(JSON.parse(content(b, '/contacts/.collection.json'))).toMatchObject({ kind: 'addressbook', props: { displayName: 'Contacts', description: 'People I know' } });
    expect(parsed(content(b, '/contacts/zoe.vcf'))).toEqual(parsed(CARD_ZOE));
    expect(parsed(content(b, '/contacts/kenji.vcf'))).toEqual(parsed(CARD_KENJI));
  });

  it('backs up only one address book when the location names it', async () => {
    const one = await backup('carddav', cfg('alice', '/alice/family/', {}, 'carddav'));
    expect(one.init.root).toBe('/family');
    expect([...files(one).keys()].sort()).toEqual(['/family/.collection.json', '/family/dad.vcf', '/family/mum.vcf']);
  });

  it('a calendar given to carddav:// is a location error', async () => {
    const err = await initError('importer', 'carddav', cfg('alice', '/alice/work/', {}, 'carddav'));
    expect(err?.message).toBe(`caldav importer: option location: http://${host}/alice/work/ is a calendar; use caldav:// for it`);
  });
});

describe('caldav exporter: Radicale', () => {
  let b: Backup;
  const bob = (): Account => new Account(srv.url, 'bob', 'bobpw');
  beforeAll(async () => {
    b = await backup('caldav', cfg('alice', '/alice/'));
  });

  it('restores into an empty account: same collections, properties and parsed objects; METHOD stripped', async () => {
    const out = await restore('caldav', cfg('bob'), snapshot(b));
    expect(out.status.code).toBe(0);
    expect(out.itemErrors).toEqual([]);
    const want = await account(alice, '/alice/', 'calendar');
    const got = await account(bob(), '/bob/', 'calendar');
    expect(got).toEqual(want);
    expect(Object.keys(got.tasks?.objects ?? {}).sort()).toEqual(['coffee.ics', 'report.ics']);
    expect(Object.keys(got.journal?.objects ?? {})).toEqual(['day1.ics']);
    const holiday = (await bob().objects('/bob/work/', 'calendar')).get('holiday.ics') ?? '';
    expect(holiday).not.toMatch(/METHOD:/);
    expect(propOf(holiday, 'attach')).toBe('SGVsbG8sIGF0dGFjaG1lbnQhIOKckw==');
  });

  it('re-running the restore creates no duplicates and reports nothing', async () => {
    const out = await restore('caldav', cfg('bob'), snapshot(b));
    expect(out.itemErrors).toEqual([]);
    const objects = await bob().objects('/bob/work/', 'calendar');
    expect([...objects.keys()].sort()).toEqual(['holiday.ics', 'ny meeting & co.ics', 'weekly.ics']);
  });

  it('on_conflict=skip keeps a changed object and reports it; overwrite replaces it with If-Match', async () => {
    const changed = WEEKLY.replace('SUMMARY:Weekly stand-up\r\n', 'SUMMARY:Edited on the server\r\n');
    await bob().put('/bob/work/weekly.ics', changed);
    const skipped = await restore('caldav', cfg('bob'), snapshot(b));
    expect(skipped.itemErrors).toEqual([
      {
        pathname: '/work/weekly.ics',
        error: expect.stringMatching(/^caldav exporter: \/bob\/work\/weekly\.ics already exists on the server with different content; kept the server's version \(set on_conflict=overwrite to replace it\)$/),
      },
    ]);
    expect(propOf((await bob().objects('/bob/work/', 'calendar')).get('weekly.ics') ?? '', 'summary')).toBe('Edited on the server');
    const replaced = await restore('caldav', cfg('bob', '/bob/', { on_conflict: 'overwrite' }), snapshot(b));
    expect(replaced.itemErrors).toEqual([]);
    expect(parsed((await bob().objects('/bob/work/', 'calendar')).get('weekly.ics') ?? '')).toEqual(parsed(WEEKLY));
  });

  it('a UID already used by another object is a per-item result naming it, never a silent overwrite', async () => {
    const carol = new Account(srv.url, 'carol', 'carolpw');
    await carol.mkcalendar('/carol/tasks/', { displayName: 'Mine' });
    await carol.put('/carol/tasks/my-own-name.ics', TASK.replace('SUMMARY:Write the quarterly report', 'SUMMARY:Carol’s version'));
    await carol.put('/carol/tasks/same-coffee.ics', TASK_DONE);
    const out = await restore('caldav', cfg('carol'), snapshot(b, '/tasks'), 2);
    // The restored subtree is one calendar: its objects go to the calendar named like the snapshot directory.
    expect(out.itemErrors).toEqual([
      {
        pathname: '/report.ics',
        error: 'caldav exporter: UID "task-report@kloset.test" is already used by /carol/tasks/my-own-name.ics on the server with different content; kept the server\'s version (set on_conflict=overwrite to replace it)',
      },
    ]);
    const objects = await carol.objects('/carol/tasks/', 'calendar');
    expect([...objects.keys()].sort()).toEqual(['my-own-name.ics', 'same-coffee.ics']);
    expect(propOf(objects.get('my-own-name.ics') ?? '', 'summary')).toBe('Carol’s version');
    const props = (await carol.collections('/carol/', 'calendar')).get('tasks');
    expect(props?.displayName).toBe('Mine');
  });

  it('restores one calendar into a collection the location names, creating it with the saved properties', async () => {
    const one = await backup('caldav', cfg('alice', '/alice/work/'));
    const out = await restore('caldav', cfg('bob', '/bob/work-copy/'), snapshot(one));
    expect(out.itemErrors).toEqual([]);
    const props = (await bob().collections('/bob/', 'calendar')).get('work-copy');
    // tsdav (the test's reader) trims property text, so compare the time zone trimmed.
    expect({ ...props, timezone: props?.timezone?.replace(/\r\n/g, '\n').trim() }).toEqual({ ...WORK, timezone: PARIS_TZ.replace(/\r\n/g, '\n').trim() });
    expect([...(await bob().objects('/bob/work-copy/', 'calendar')).keys()].sort()).toEqual(['holiday.ics', 'ny meeting & co.ics', 'weekly.ics']);
  });

  it('restores address books with extended MKCOL and their properties', async () => {
    const cards = await backup('carddav', cfg('alice', '/alice/', {}, 'carddav'));
    const out = await restore('carddav', cfg('bob', '/bob/', {}, 'carddav'), snapshot(cards));
    expect(out.itemErrors).toEqual([]);
    expect(await account(bob(), '/bob/', 'addressbook')).toEqual(await account(alice, '/alice/', 'addressbook'));
  });

  it('refuses files that are not objects of its kind, per item', async () => {
    const out = await restore('caldav', cfg('bob', '/bob/'), [
      { path: '/', info: { name: '/', mode: 0x800001ed } },
      { path: '/misc', info: { name: 'misc', mode: 0x800001ed } },
      { path: '/misc/notes.txt', info: { name: 'notes.txt', mode: 0o644 }, content: Buffer.from('hello') },
      { path: '/misc/broken.ics', info: { name: 'broken.ics', mode: 0o644 }, content: Buffer.from('BEGIN:VCALENDAR\r\nthis is not ical\r\n') },
      { path: '/misc/fine.ics', info: { name: 'fine.ics', mode: 0o644 }, content: Buffer.from(simpleEvent('fine@kloset.test', 'Fine')) },
    ]);
    expect(out.status.code).toBe(0);
    expect(out.itemErrors.sort((x, y) => x.pathname.localeCompare(y.pathname))).toEqual([
      { pathname: '/misc/broken.ics', error: expect.stringMatching(/^caldav exporter: not valid iCalendar: /) },
      { pathname: '/misc/notes.txt', error: 'caldav exporter: not a calendar object (.ics); skipped' },
    ]);
    expect([...(await bob().objects('/bob/misc/', 'calendar')).keys()]).toEqual(['fine.ics']);
  });
});

describe('caldav importer: Init errors on Radicale', () => {
  it('a wrong password names the server and the account, never the password', async () => {
    const err = await initError('importer', 'caldav', { ...cfg('alice'), password: 'not-the-password' });
    expect(err?.message).toBe(
      `caldav importer: cannot log in to http://${host} as "alice": 401 Unauthorized (hint: check username and password (an app password where the provider requires one))`,
    );
  });

  it('a wrong path says what the location must name', async () => {
    const err = await initError('importer', 'caldav', cfg('alice', '/alice/no-such-calendar/'));
    expect(err?.message).toBe(
      `caldav importer: http://${host}/alice/no-such-calendar/ does not exist (404 Not Found) (hint: location must name the server root, a principal, a calendar home or one calendar)`,
    );
  });

  it("another user's principal is access denied", async () => {
    const err = await initError('importer', 'caldav', cfg('alice', '/bob/'));
    expect(err?.message).toBe(`caldav importer: access to http://${host}/bob/ is denied as "alice" (403 Forbidden) (hint: check that location belongs to this account)`);
  });

  it('a server that is down is "cannot reach" after the configured retries', async () => {
    const port = await freePort();
    const err = await initError('exporter', 'caldav', { ...cfg('alice'), location: `caldav://127.0.0.1:${port}/`, max_retries: '2' });
    expect(err?.message).toMatch(
      new RegExp(`^caldav exporter: cannot reach the server at http://127\\.0\\.0\\.1:${port}: connect ECONNREFUSED 127\\.0\\.0\\.1:${port} \\(gave up after 2 attempts over [0-9.]+s\\) \\(hint: check the host and port in location, and use_tls\\)$`),
    );
  });

  it('an address book given to caldav:// is a location error', async () => {
    const err = await initError('importer', 'caldav', cfg('alice', '/alice/contacts/'));
    expect(err?.message).toBe(`caldav importer: option location: http://${host}/alice/contacts/ is an address book; use carddav:// for it`);
  });

  it('bad options are listed together, naming each key', async () => {
    const err = await initError('importer', 'caldav', { location: `caldav://${host}/`, password: 'x', components: 'VEVENT,VCARD', refresh_token: 'rt-secret-value' });
    expect(err?.message).toBe(
      'caldav importer: option components: expected a list of VEVENT, VTODO, VJOURNAL, got "VCARD"',
    );
    const err2 = await initError('importer', 'caldav', { location: `caldav://${host}/`, password: 'pw-secret-value', refresh_token: 'rt-secret-value' });
    expect(err2?.message).toBe(
      'caldav importer: option username: is required with password; option password: cannot be combined with access_token or refresh_token; use one way to log in; option client_id: is required with refresh_token; option token_url: is required with refresh_token (Google: https://oauth2.googleapis.com/token)',
    );
    expect(err2?.message).not.toContain('secret-value');
  });
});
