// caldav/carddav against Xandikos: no getlastmodified (objects read while listing), 207 UID conflicts, other property support.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, parsed, propOf } from './dav-util.ts';
import { CARD_KENJI, CARD_ZOE, JOURNAL, NEW_YORK_EVENT, PUBLISHED, TASK, TASK_DONE, WEEKLY } from './fixtures.ts';
import { backup, content, files, restore, snapshot, xattr, type Backup } from './host.ts';
import { startXandikos, type RunningServer } from './servers.ts';

let source: RunningServer;
let target: RunningServer;
let src: Account;
let dst: Account;

const cfg = (srv: RunningServer, path = '/', extra: Record<string, string> = {}, proto = 'caldav'): Record<string, string> => ({
  location: `${proto}://${new URL(srv.url).host}${path}`,
  use_tls: 'false',
  ...extra,
});

beforeAll(async () => {
  [source, target] = await Promise.all([startXandikos(), startXandikos()]);
  src = new Account(source.url);
  dst = new Account(target.url);
  await src.mkcalendar('/user/calendars/work/', { displayName: 'Work' });
  await src.proppatch('/user/calendars/work/', '<a:calendar-color>#3366FFFF</a:calendar-color>');
  await src.put('/user/calendars/work/weekly.ics', WEEKLY);
  await src.put('/user/calendars/work/ny.ics', NEW_YORK_EVENT);
  await src.put('/user/calendars/work/holiday.ics', PUBLISHED);
  await src.put('/user/calendars/work/task.ics', TASK);
  await src.put('/user/calendars/work/done.ics', TASK_DONE);
  await src.put('/user/calendars/work/journal.ics', JOURNAL);
  await src.put('/user/contacts/addressbook/zoe.vcf', CARD_ZOE);
  await src.put('/user/contacts/addressbook/kenji.vcf', CARD_KENJI);
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
});

describe('caldav importer: Xandikos', () => {
  let b: Backup;
  beforeAll(async () => {
    b = await backup('caldav', cfg(source));
  });

  it('follows the root to the principal and its calendar home', () => {
    expect(b.errors).toEqual([]);
    expect(b.itemErrors).toEqual([]);
    expect(b.init.root).toBe('/');
    expect(b.init.origin).toBe(`/user/@${new URL(source.url).host}`);
    expect([...files(b).keys()].sort()).toEqual([
      '/calendar/.collection.json',
      '/work/.collection.json',
      '/work/done.ics',
      '/work/holiday.ics',
      '/work/journal.ics',
      '/work/ny.ics',
      '/work/task.ics',
      '/work/weekly.ics',
    ]);
    expect(JSON.parse(content(b, '/work/.collection.json')).props).toEqual({
      displayName: 'Work',
      color: '#3366FFFF',
      components: ['VEVENT', 'VTODO', 'VJOURNAL', 'VFREEBUSY'],
    });
  });

  it('without getlastmodified, reads objects while listing: exact sizes, mtime from LAST-MODIFIED, ETags kept', async () => {
    const weekly = files(b).get('/work/weekly.ics');
    expect(weekly?.fileInfo?.size).toBe(Buffer.byteLength(content(b, '/work/weekly.ics')));
    // LAST-MODIFIED:20240102T100000Z, plus a sub-second fingerprint of the ETag.
    expect(weekly?.fileInfo?.modTime?.seconds).toBe(Date.UTC(2024, 0, 2, 10, 0, 0) / 1000);
    // No LAST-MODIFIED: DTSTAMP.
    expect(files(b).get('/work/task.ics')?.fileInfo?.modTime?.seconds).toBe(Date.UTC(2024, 0, 5, 8, 0, 0) / 1000);
    const res = await src.fetch(src.url('/user/calendars/work/weekly.ics'));
    await res.arrayBuffer();
    expect(xattr(b, '/work/weekly.ics', 'caldav.etag')).toBe(res.headers.get('etag'));
    expect(parsed(content(b, '/work/weekly.ics'))).toEqual(parsed(WEEKLY));
    expect(parsed(content(b, '/work/journal.ics'))).toEqual(parsed(JOURNAL));
  });

  it('gives identical metadata on a second backup', async () => {
    const again = await backup('caldav', cfg(source), { openContent: false });
    const first = files(b);
    for (const [path, rec] of files(again)) expect(rec.fileInfo, path).toEqual(first.get(path)?.fileInfo);
  });

  it('components filters with calendar-query on the server', async () => {
    const journals = await backup('caldav', cfg(source, '/user/calendars/', { components: 'VJOURNAL' }));
    expect([...files(journals).keys()].sort()).toEqual(['/calendar/.collection.json', '/work/.collection.json', '/work/journal.ics']);
    const tasks = await backup('caldav', cfg(source, '/user/calendars/work/', { components: 'vtodo' }));
    expect([...files(tasks).keys()].sort()).toEqual(['/work/.collection.json', '/work/done.ics', '/work/task.ics']);
  });

  it('carddav: address books from the root and from the contacts home', async () => {
    const cards = await backup('carddav', cfg(source, '/', {}, 'carddav'));
    expect([...files(cards).keys()].sort()).toEqual(['/addressbook/.collection.json', '/addressbook/kenji.vcf', '/addressbook/zoe.vcf']);
    expect(parsed(content(cards, '/addressbook/zoe.vcf'))).toEqual(parsed(CARD_ZOE));
    const fromHome = await backup('carddav', cfg(source, '/user/contacts/', {}, 'carddav'));
    expect(fromHome.init.root).toBe('/');
    expect([...files(fromHome).keys()].sort()).toEqual([...files(cards).keys()].sort());
  });
});

describe('caldav exporter: Xandikos', () => {
  it('restores into another server: collections, properties and parsed objects; a re-run changes nothing', async () => {
    const b = await backup('caldav', cfg(source, '/user/'));
    const out = await restore('caldav', cfg(target, '/user/'), snapshot(b));
    expect(out.itemErrors).toEqual([]);
    const props = await dst.collections('/user/calendars/', 'calendar');
    expect(props.get('work')).toEqual((await src.collections('/user/calendars/', 'calendar')).get('work'));
    const want = await src.objects('/user/calendars/work/', 'calendar');
    const got = await dst.objects('/user/calendars/work/', 'calendar');
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, data] of want) expect(parsed(got.get(name) ?? ''), name).toEqual(parsed(data));
    expect(got.get('holiday.ics')).not.toMatch(/METHOD:/);
    const again = await restore('caldav', cfg(target, '/user/'), snapshot(b));
    expect(again.itemErrors).toEqual([]);
    expect((await dst.objects('/user/calendars/work/', 'calendar')).size).toBe(want.size);
  });

  it('a UID clash answered with a 207 (Xandikos) is found and reported, then replaced with overwrite', async () => {
    await dst.mkcalendar('/user/calendars/clash/', { displayName: 'Clash' });
    await dst.put('/user/calendars/clash/someone-else.ics', TASK.replace('Write the quarterly report', 'Theirs'));
    const one = await backup('caldav', cfg(source, '/user/calendars/work/', { components: 'VTODO' }));
    const out = await restore('caldav', cfg(target, '/user/calendars/clash/'), snapshot(one));
    expect(out.itemErrors).toEqual([
      {
        pathname: '/task.ics',
        error: `caldav exporter: UID "task-report@kloset.test" is already used by /user/calendars/clash/someone-else.ics on the server with different content; kept the server's version (set on_conflict=overwrite to replace it)`,
      },
    ]);
    const replaced = await restore('caldav', cfg(target, '/user/calendars/clash/', { on_conflict: 'overwrite' }), snapshot(one));
    expect(replaced.itemErrors).toEqual([]);
    const objects = await dst.objects('/user/calendars/clash/', 'calendar');
    expect([...objects.keys()].sort()).toEqual(['done.ics', 'someone-else.ics']);
    expect(propOf(objects.get('someone-else.ics') ?? '', 'summary')).toBe('Write the quarterly report');
  });

  it('carddav: restores vCards into the existing address book', async () => {
    const cards = await backup('carddav', cfg(source, '/', {}, 'carddav'));
    const out = await restore('carddav', cfg(target, '/', {}, 'carddav'), snapshot(cards));
    expect(out.itemErrors).toEqual([]);
    const got = await dst.objects('/user/contacts/addressbook/', 'addressbook');
    expect(parsed(got.get('zoe.vcf') ?? '')).toEqual(parsed(CARD_ZOE));
    expect(parsed(got.get('kenji.vcf') ?? '')).toEqual(parsed(CARD_KENJI));
  });
});
