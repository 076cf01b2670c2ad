// caldav streaming XML: multistatus answers parsed chunk by chunk (namespaces by URI, CDATA, entities, any split).
import { describe, expect, it } from 'vitest';
import { multistatusStream, parseMultistatus, type MsResponse } from '../../../integrations/caldav/dav.ts';
import { parseXml, XmlStream } from '../../../integrations/caldav/xml.ts';

const BASE = new URL('http://h/cal/');
const CALDAV = 'urn:ietf:params:xml:ns:caldav';

/** A calendar-query answer as Xandikos writes it (ns0/ns1 prefixes), with entities, CDATA, CRLF and non-ASCII. */
const XANDIKOS =
  '<?xml version="1.0" encoding="utf-8"?>\n' +
  '<ns0:multistatus xmlns:ns0="DAV:" xmlns:ns1="urn:ietf:params:xml:ns:caldav">' +
  '<ns0:response><ns0:href>/cal/a%20b.ics</ns0:href><ns0:propstat><ns0:status>HTTP/1.1 200 OK</ns0:status><ns0:prop>' +
  '<ns0:getetag>"e&amp;1"</ns0:getetag>' +
  '<ns1:calendar-data>BEGIN:VCALENDAR&#13;\nSUMMARY:Caf\u00e9 &lt;b&gt; &#x1F600; \u00fc\u00df \u{1F4C5}&#13;\nEND:VCALENDAR&#13;\n</ns1:calendar-data>' +
  '</ns0:prop></ns0:propstat></ns0:response>\n' +
  '<ns0:response><ns0:href>/cal/c.ics</ns0:href><ns0:propstat><ns0:status>HTTP/1.1 200 OK</ns0:status><ns0:prop>' +
  '<ns0:getetag>"e2"</ns0:getetag>' +
  '<ns1:calendar-data><![CDATA[BEGIN:VCALENDAR\r\nDESCRIPTION:a <b> & c ]] ]>\r\nEND:VCALENDAR\r\n]]></ns1:calendar-data>' +
  '</ns0:prop></ns0:propstat></ns0:response>\n' +
  '<ns0:response><ns0:href>http://h/cal/gone.ics</ns0:href><ns0:status>HTTP/1.1 404 Not Found</ns0:status></ns0:response>' +
  '</ns0:multistatus>\n';

/** The same answer as Radicale writes it: DAV: as the default namespace, other prefixes, one redefined inside. */
const RADICALE =
  '<?xml version=\'1.0\' encoding=\'utf-8\'?>\n' +
  '<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">\n  ' +
  '<response>\n    <href>/cal/a%20b.ics</href>\n    <propstat>\n      <prop>\n        ' +
  '<getetag>"e&amp;1"</getetag>\n        ' +
  '<C:calendar-data>BEGIN:VCALENDAR&#13;\nSUMMARY:Caf\u00e9 &lt;b&gt; &#x1F600; \u00fc\u00df \u{1F4C5}&#13;\nEND:VCALENDAR&#13;\n</C:calendar-data>\n      ' +
  '</prop>\n      <status>HTTP/1.1 200 OK</status>\n    </propstat>\n  </response>\n  ' +
  '<D:response xmlns:D="DAV:" xmlns:C="urn:example:not-caldav" xmlns:X="urn:ietf:params:xml:ns:caldav"><D:href>/cal/c.ics</D:href><D:propstat><D:prop>' +
  '<D:getetag>"e2"</D:getetag><C:calendar-data>not this one</C:calendar-data>' +
  '<X:calendar-data><![CDATA[BEGIN:VCALENDAR\r\nDESCRIPTION:a <b> & c ]] ]>\r\nEND:VCALENDAR\r\n]]></X:calendar-data>' +
  '</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n  ' +
  '<response><href>http://h/cal/gone.ics</href><status>HTTP/1.1 404 Not Found</status></response>\n' +
  '</multistatus>';

/** What the importer takes from each response. */
function summary(r: MsResponse): Record<string, unknown> {
  return {
    path: r.url.pathname,
    status: r.status,
    etag: r.props.get('{DAV:}getetag')?.text,
    data: r.props.get(`{${CALDAV}}calendar-data`)?.text,
  };
}

const EXPECTED = [
  { path: '/cal/a%20b.ics', status: undefined, etag: '"e&1"', data: 'BEGIN:VCALENDAR\r\nSUMMARY:Caf\u00e9 <b> \u{1F600} \u00fc\u00df \u{1F4C5}\r\nEND:VCALENDAR\r\n' },
  { path: '/cal/c.ics', status: undefined, etag: '"e2"', data: 'BEGIN:VCALENDAR\r\nDESCRIPTION:a <b> & c ]] ]>\r\nEND:VCALENDAR\r\n' },
  { path: '/cal/gone.ics', status: 404, etag: undefined, data: undefined },
];

/** Parses `doc` fed as the given pieces; returns the responses in the order they were handed over. */
function streamed(pieces: Buffer[]): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  const s = multistatusStream(BASE, (r) => out.push(summary(r)));
  for (const p of pieces) s.write(p);
  s.end();
  return out;
}

describe('caldav xml: streamed multistatus', () => {
  it('resolves names by namespace URI, whatever the prefixes (Xandikos ns0/ns1, Radicale default namespace, redefined prefixes)', () => {
    expect(parseMultistatus(XANDIKOS, BASE).map(summary)).toEqual(EXPECTED);
    expect(parseMultistatus(RADICALE, BASE).map(summary)).toEqual(EXPECTED);
  });

  it('decodes entities and character references, keeps CDATA, CR and non-ASCII text exactly', () => {
    const [a, c] = parseMultistatus(Buffer.from(XANDIKOS, 'utf8'), BASE);
    expect(a?.props.get(`{${CALDAV}}calendar-data`)?.text).toContain('Caf\u00e9 <b> \u{1F600}');
    expect(c?.props.get(`{${CALDAV}}calendar-data`)?.text).toContain('a <b> & c ]] ]>');
  });

  for (const [name, doc] of [
    ['Xandikos', XANDIKOS],
    ['Radicale', RADICALE],
  ] as const) {
    it(`gives the same responses however the ${name} answer is split: at every byte boundary, and byte by byte`, () => {
      const bytes = Buffer.from(doc, 'utf8');
      for (let i = 0; i <= bytes.length; i++) {
        expect(streamed([bytes.subarray(0, i), bytes.subarray(i)]), `split at byte ${i}`).toEqual(EXPECTED);
      }
      const single = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
      expect(streamed(single)).toEqual(EXPECTED);
    });
  }

  it('hands each response over as soon as it closes, before the rest of the answer arrives', () => {
    const bytes = Buffer.from(XANDIKOS, 'utf8');
    const seen: string[] = [];
    const s = multistatusStream(BASE, (r) => seen.push(r.url.pathname));
    const firstEnd = bytes.indexOf('</ns0:response>') + '</ns0:response>'.length;
    s.write(bytes.subarray(0, firstEnd));
    expect(seen).toEqual(['/cal/a%20b.ics']);
    s.write(bytes.subarray(firstEnd));
    s.end();
    expect(seen).toEqual(['/cal/a%20b.ics', '/cal/c.ics', '/cal/gone.ics']);
  });

  it('holds one response at a time: a 2 MiB object in a 20 MiB answer never grows the text held past one object', () => {
    const data = `BEGIN:VCALENDAR\r\n${'X-PAD:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n'.repeat(30_000)}END:VCALENDAR\r\n`;
    const one = (i: number): string =>
      `<d:response><d:href>/cal/${i}.ics</d:href><d:propstat><d:prop><c:calendar-data>${data}</c:calendar-data></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`;
    // A limit of one object's text (plus a little): the whole answer would break it at once if it were held.
    const s = new XmlStream({ depth: 1, maxChars: data.length + 100, onElement: () => count++ });
    let count = 0;
    s.write(`<d:multistatus xmlns:d="DAV:" xmlns:c="${CALDAV}">`);
    for (let i = 0; i < 10; i++) s.write(Buffer.from(one(i)));
    s.write('</d:multistatus>');
    s.end();
    expect(count).toBe(10);
    const tooSmall = new XmlStream({ depth: 1, maxChars: data.length - 1, onElement: () => undefined });
    tooSmall.write(`<d:multistatus xmlns:d="DAV:" xmlns:c="${CALDAV}">`);
    expect(() => tooSmall.write(one(0))).toThrow(/an element holds more than/);
  });

  it('drops whitespace between elements but keeps whitespace-only CDATA and attributes', () => {
    const root = parseXml('<a xmlns="urn:x" xmlns:y="urn:y"> <b y:k="v &amp; w" k2="2"> </b> <c><![CDATA[  ]]></c> <d> x </d></a>');
    expect(root.ns).toBe('urn:x');
    expect(root.text).toBe('');
    expect(root.children.map((c) => [c.name, c.text])).toEqual([
      ['b', ''],
      ['c', '  '],
      ['d', ' x '],
    ]);
    expect(root.children[0]?.attrs).toEqual({ 'y:k': 'v & w', k2: '2' });
  });

  it('refuses what is not a complete, well-formed DAV multistatus with a clear reason', () => {
    const fail = (doc: string): string => {
      try {
        parseMultistatus(doc, BASE);
      } catch (err) {
        return (err as Error).message;
      }
      return 'no error';
    };
    expect(fail('')).toBe('empty XML document');
    expect(fail('<html><body>502 Bad Gateway</body></html>')).toBe('expected a DAV multistatus, got <html>');
    expect(fail('<d:multistatus xmlns:d="urn:not-dav"/>')).toBe('expected a DAV multistatus, got <multistatus>');
    expect(fail('not XML at all')).toMatch(/^Non-whitespace before first tag/);
    expect(fail('<d:multistatus xmlns:d="DAV:"><d:response><d:href>/x</d:href>')).toMatch(/^Unclosed root tag/);
    expect(fail('<d:multistatus xmlns:d="DAV:"><d:response></d:multistatus>')).toMatch(/^Unexpected close tag/);
    expect(fail('<d:multistatus xmlns:d="DAV:"><x:response/></d:multistatus>')).toMatch(/^Unbound namespace prefix/);
    expect(fail('<d:multistatus xmlns:d="DAV:"><d:href>&bogus;</d:href></d:multistatus>')).toMatch(/^Invalid character entity/);
    expect(fail('<d:multistatus xmlns:d="DAV:"></d:multistatus><d:multistatus xmlns:d="DAV:"/>')).toBe('more than one root element');
  });
});
