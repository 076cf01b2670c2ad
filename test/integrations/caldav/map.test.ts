// caldav pure parts: names, the collection file, stable mtimes, filters, iCalendar checks, multistatus parsing, locations.
import { describe, expect, it } from 'vitest';
import { parseChallenges } from '../../../integrations/caldav/client.ts';
import { parseMultistatus, samePropValue } from '../../../integrations/caldav/dav.ts';
import { batches } from '../../../integrations/caldav/importer.ts';
import {
  canonicalLines,
  collectionFile,
  collectionFilter,
  COLLECTION_FORMAT,
  objectLastModified,
  parseCollectionFile,
  parseObject,
  prepareObject,
  resourceName,
  sameObject,
  stableMtime,
} from '../../../integrations/caldav/map.ts';
import { checkAuthOptions, serverUrl } from '../../../integrations/caldav/options.ts';
import { CARD_ZOE, PUBLISHED, TASK, WEEKLY } from './fixtures.ts';

describe('caldav map: names', () => {
  it('keeps the server’s resource name, adds the extension when it lacks one, encodes what a path segment cannot hold', () => {
    expect(resourceName(new URL('https://h/cal/work/ev%201.ics'), 'caldav')).toBe('ev 1.ics');
    expect(resourceName(new URL('https://h/cal/work/ABC.ICS'), 'caldav')).toBe('ABC.ICS');
    expect(resourceName(new URL('https://h/cal/work/0a1b2c3d@google.com'), 'caldav')).toBe('0a1b2c3d@google.com.ics');
    expect(resourceName(new URL('https://h/book/x%2Fy%25z'), 'carddav')).toBe('x%2Fy%25z.vcf');
  });
});

describe('caldav map: collection file', () => {
  it('round-trips properties with stable bytes', () => {
    const saved = { format: COLLECTION_FORMAT, kind: 'calendar' as const, href: '/a/work/', props: { components: ['VEVENT'], displayName: '1.0', color: '#FF0000FF' } };
    const bytes = collectionFile(saved);
    expect(collectionFile({ ...saved, props: { color: '#FF0000FF', displayName: '1.0', components: ['VEVENT'] } })).toEqual(bytes);
    expect(parseCollectionFile(bytes)).toEqual(saved);
    expect(bytes.toString()).toMatch(/\n$/);
  });

  it('refuses files that are not ours, saying why', () => {
    expect(() => parseCollectionFile(Buffer.from('{'))).toThrow(/^\.collection\.json is not valid JSON: /);
    expect(() => parseCollectionFile(Buffer.from('{"format":"x"}'))).toThrow('.collection.json is not a collection file of this integration (format "x")');
    expect(() => parseCollectionFile(Buffer.from(JSON.stringify({ format: COLLECTION_FORMAT, kind: 'todo' })))).toThrow('.collection.json: unknown kind "todo"');
  });
});

describe('caldav map: stable mtimes', () => {
  it('keeps the server time to the second and moves within it when the ETag changes', () => {
    const t = new Date('2024-03-01T10:20:30.000Z');
    const a = stableMtime(t, '"etag-1"');
    const b = stableMtime(t, '"etag-2"');
    expect(Math.floor(a.getTime() / 1000)).toBe(t.getTime() / 1000);
    expect(Math.floor(b.getTime() / 1000)).toBe(t.getTime() / 1000);
    expect(a.getTime()).not.toBe(b.getTime());
    expect(stableMtime(t, '"etag-1"').getTime()).toBe(a.getTime());
    expect(stableMtime(undefined, 'x').getTime()).toBeLessThan(1000);
  });
});

describe('caldav map: include and exclude', () => {
  it('matches names and display names without regard to case; exclude wins', () => {
    const keep = collectionFilter(['work*', 'Family'], ['*old*']);
    expect(keep('work', 'Work')).toBe(true);
    expect(keep('abc-123', 'family')).toBe(true);
    expect(keep('work-old', 'Work (old)')).toBe(false);
    expect(keep('personal', 'Personal')).toBe(false);
    expect(collectionFilter([], [])('anything')).toBe(true);
    expect(collectionFilter(['a?c'], [])('abc')).toBe(true);
    expect(collectionFilter(['a.c'], [])('abc')).toBe(false);
  });
});

describe('caldav map: iCalendar and vCard', () => {
  it('gives canonical CRLF line endings', () => {
    expect(canonicalLines('A\nB\r\nC')).toBe('A\r\nB\r\nC\r\n');
    expect(canonicalLines('A\r\n')).toBe('A\r\n');
  });

  it('strips METHOD for a restore and keeps every other byte of objects that have none', () => {
    const p = prepareObject(PUBLISHED, 'caldav');
    expect(p.rewritten).toBe(true);
    expect(p.body).not.toMatch(/METHOD:/);
    expect(p.body).toMatch(/ATTACH;/);
    expect(sameObject(p.body, PUBLISHED, 'caldav')).toBe(true);
    expect(p).toMatchObject({ uid: 'holiday@kloset.test', type: 'VEVENT' });
    const w = prepareObject(WEEKLY, 'caldav');
    expect(w).toEqual({ body: WEEKLY, uid: 'weekly-standup@kloset.test', type: 'VEVENT', rewritten: false });
    expect(prepareObject(CARD_ZOE, 'carddav')).toMatchObject({ uid: 'zoe@kloset.test', type: 'VCARD', rewritten: false });
  });

  it('says why an object is not valid', () => {
    expect(() => parseObject('BEGIN:VCALENDAR\r\nBROKEN\r\n', 'caldav')).toThrow('not valid iCalendar: invalid line (no token ";" or ":") "BROKEN"');
    expect(() => parseObject(CARD_ZOE, 'caldav')).toThrow('not valid iCalendar: the object is a VCARD, expected VCALENDAR');
    expect(() => parseObject(TASK, 'carddav')).toThrow('not valid vCard: the object is a VCALENDAR, expected VCARD');
    expect(() => parseObject('BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n', 'caldav')).toThrow('not valid iCalendar: the VCALENDAR holds no VEVENT, VTODO or VJOURNAL');
  });

  it('compares parsed objects: reordering, folding and an added VTIMEZONE are the same; a changed SUMMARY is not', () => {
    const start = 'DTSTART;TZID=Europe/Paris:20240108T093000\r\nDTEND;TZID=Europe/Paris:20240108T094500\r\n';
    const reordered = WEEKLY.replace(start, '').replace('SUMMARY:Weekly stand-up\r\n', `SUMMARY:Weekly stand-up\r\n${start.split('\r\n').reverse().join('\r\n').slice(2)}\r\n`);
    expect(reordered).not.toBe(WEEKLY);
    expect(sameObject(WEEKLY, reordered, 'caldav')).toBe(true);
    const folded = WEEKLY.replace('SUMMARY:Weekly stand-up\r\n', 'SUMMARY:Weekly st\r\n and-up\r\n');
    expect(sameObject(WEEKLY, folded, 'caldav')).toBe(true);
    expect(sameObject(WEEKLY, WEEKLY.replace('SUMMARY:Weekly stand-up\r\n', 'SUMMARY:Other\r\n'), 'caldav')).toBe(false);
    const noTz = TASK;
    const withTz = TASK.replace('BEGIN:VTODO', 'BEGIN:VTIMEZONE\r\nTZID:UTC\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:+0000\r\nTZOFFSETTO:+0000\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VTODO');
    expect(sameObject(noTz, withTz, 'caldav')).toBe(true);
    expect(sameObject('garbage', TASK, 'caldav')).toBe(false);
  });

  it('reads when an object changed: LAST-MODIFIED, then DTSTAMP, or a vCard’s REV', () => {
    expect(objectLastModified(parseObject(WEEKLY, 'caldav'))?.toISOString()).toBe('2024-01-02T10:00:00.000Z');
    expect(objectLastModified(parseObject(TASK, 'caldav'))?.toISOString()).toBe('2024-01-05T08:00:00.000Z');
    expect(objectLastModified(parseObject(CARD_ZOE.replace('END:VCARD', 'REV:20240304T050607Z\r\nEND:VCARD'), 'carddav'))?.toISOString()).toBe('2024-03-04T05:06:07.000Z');
    expect(objectLastModified(parseObject(CARD_ZOE, 'carddav'))).toBeUndefined();
  });
});

describe('caldav dav: multistatus', () => {
  it('resolves namespaces whatever their prefixes, keeps text exactly (numbers, spaces, CDATA, CRLF)', () => {
    const xml =
      '<ns0:multistatus xmlns:ns0="DAV:" xmlns:x="urn:ietf:params:xml:ns:caldav"><ns0:response><ns0:href>/a/b%20c/</ns0:href>' +
      '<ns0:propstat><ns0:status>HTTP/1.1 200 OK</ns0:status><ns0:prop><ns0:displayname> 1.0 </ns0:displayname><x:calendar-description><![CDATA[a <b> & c]]></x:calendar-description><x:calendar-timezone>BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n</x:calendar-timezone></ns0:prop></ns0:propstat>' +
      '<ns0:propstat><ns0:status>HTTP/1.1 404 Not Found</ns0:status><ns0:prop><ns0:getlastmodified/></ns0:prop></ns0:propstat></ns0:response>' +
      '<ns0:response><ns0:href>http://h/a/gone.ics</ns0:href><ns0:status>HTTP/1.1 404 Not Found</ns0:status></ns0:response></ns0:multistatus>';
    const [a, gone] = parseMultistatus(xml, new URL('http://h/a/'));
    expect(a?.url.pathname).toBe('/a/b%20c/');
    expect(a?.props.get('{DAV:}displayname')?.text).toBe(' 1.0 ');
    expect(a?.props.get('{urn:ietf:params:xml:ns:caldav}calendar-description')?.text).toBe('a <b> & c');
    expect(a?.props.get('{urn:ietf:params:xml:ns:caldav}calendar-timezone')?.text).toBe('BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n');
    expect(a?.props.has('{DAV:}getlastmodified')).toBe(false);
    expect(gone?.status).toBe(404);
  });

  it('compares property values the way servers rewrite them', () => {
    expect(samePropValue('color', '#ff0000', '#FF0000FF')).toBe(true);
    expect(samePropValue('color', '#FF0000FF', '#00FF00FF')).toBe(false);
    expect(samePropValue('timezone', 'A\r\nB\r\n', 'A\nB')).toBe(true);
    expect(samePropValue('displayName', 'x', undefined)).toBe(false);
  });
});

describe('caldav client: WWW-Authenticate', () => {
  it('parses several challenges per header line, quoted strings and escapes', () => {
    expect(parseChallenges(['Basic realm="a, b", Digest realm="r", nonce="n\\"1", qop="auth,auth-int", stale=TRUE', 'Bearer error="invalid_token"'])).toEqual([
      { scheme: 'basic', params: { realm: 'a, b' } },
      { scheme: 'digest', params: { realm: 'r', nonce: 'n"1', qop: 'auth,auth-int', stale: 'TRUE' } },
      { scheme: 'bearer', params: { error: 'invalid_token' } },
    ]);
  });
});

describe('caldav options: location and auth rules', () => {
  it('turns caldav:// and carddav:// into https:// (or http:// with use_tls=false), ending in /', () => {
    expect(serverUrl('caldav://dav.example.com/remote.php/dav', 'caldav', true).href).toBe('https://dav.example.com/remote.php/dav/');
    expect(serverUrl('carddav://127.0.0.1:5232', 'carddav', false).href).toBe('http://127.0.0.1:5232/');
  });

  it('names the location problem', () => {
    expect(() => serverUrl('https://x/', 'caldav', true)).toThrow('option location: expected caldav://host[:port]/path, got "https://x/"');
    expect(() => serverUrl('caldav://alice:pw@x/', 'caldav', true)).toThrow('option location: expected caldav://host[:port]/path without credentials; put them in username and password');
    expect(() => serverUrl('caldav://x/?a=1', 'caldav', true)).toThrow('option location: expected caldav://host[:port]/path without ?query or #fragment');
  });

  it('checks the options that go together', () => {
    expect(() => checkAuthOptions({ location: '', useTls: true, tlsInsecureNoVerify: false, clientSecret: 's', tokenUrl: 'https://t' })).toThrow(
      'option client_secret: is only used with refresh_token; option token_url: is only used with refresh_token',
    );
    expect(() => checkAuthOptions({ location: '', useTls: true, tlsInsecureNoVerify: false, username: 'a', password: 'p' })).not.toThrow();
    expect(() => checkAuthOptions({ location: '', useTls: true, tlsInsecureNoVerify: false, refreshToken: 'r', clientId: 'c', tokenUrl: 'https://t' })).not.toThrow();
  });
});

describe('caldav importer: multiget batches', () => {
  const listed = (...sizes: Array<number | undefined>): Array<{ url: URL; etag: undefined; lastModified: undefined; size: number | undefined }> =>
    sizes.map((size, i) => ({ url: new URL(`http://dav.test/c/${i}.ics`), etag: undefined, lastModified: undefined, size }));
  const shape = (sizes: Array<number | undefined>, count: number, bytes: number): number[] => [...batches(listed(...sizes), count, bytes)].map((b) => b.length);

  it('cut at batch_size objects or at the byte budget, whichever comes first; an oversized object goes alone', () => {
    expect(shape([1, 1, 1, 1, 1], 2, 100)).toEqual([2, 2, 1]);
    expect(shape([40, 40, 40, 40], 10, 100)).toEqual([2, 2]);
    expect(shape([500, 1, 1, 500, 1], 10, 100)).toEqual([1, 2, 1, 1]);
    expect(shape([undefined, undefined, undefined], 10, 1)).toEqual([3]);
    expect(shape([], 10, 100)).toEqual([]);
  });
});
