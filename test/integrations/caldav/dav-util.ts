// Test-side DAV access through tsdav (independent of the code under test): seed accounts, read them back, compare parsed objects.
import ICAL from 'ical.js';
import tsdav from 'tsdav';

const { makeCalendar, propfind } = tsdav;
const makeCollection = (tsdav as unknown as { makeCollection: typeof makeCalendar }).makeCollection;

/** Collection properties as the tests set and compare them. */
export interface Props {
  displayName?: string;
  description?: string;
  color?: string;
  order?: string;
  timezone?: string;
  components?: string[];
}

/** One DAV account reached through tsdav with Basic credentials (Xandikos ignores them). */
export class Account {
  readonly base: string;
  readonly fetch: typeof fetch;
  constructor(base: string, user?: string, password?: string) {
    this.base = base;
    const auth = user ? `Basic ${Buffer.from(`${user}:${password ?? ''}`).toString('base64')}` : undefined;
    this.fetch = (input, init = {}) => {
      const headers = new Headers(init.headers ?? {});
      if (auth) headers.set('authorization', auth);
      return fetch(input, { ...init, headers });
    };
  }

  url(path: string): string {
    return new URL(path, this.base).href;
  }

  async mkcalendar(path: string, p: Props): Promise<void> {
    const props: Record<string, unknown> = {};
    if (p.displayName !== undefined) props['d:displayname'] = { _text: p.displayName };
    if (p.description !== undefined) props['c:calendar-description'] = { _text: p.description };
    if (p.color !== undefined) props['ca:calendar-color'] = { _text: p.color };
    if (p.order !== undefined) props['ca:calendar-order'] = { _text: p.order };
    if (p.timezone !== undefined) props['c:calendar-timezone'] = { _text: p.timezone };
    if (p.components) props['c:supported-calendar-component-set'] = { 'c:comp': p.components.map((name) => ({ _attributes: { name } })) };
    const [res] = await makeCalendar({ url: this.url(path), props, fetch: this.fetch });
    if (!res || res.status !== 201) throw new Error(`MKCALENDAR ${path}: ${res?.status}`);
  }

  async mkaddressbook(path: string, p: Props): Promise<void> {
    const props: Record<string, unknown> = { 'd:resourcetype': { 'd:collection': {}, 'card:addressbook': {} } };
    if (p.displayName !== undefined) props['d:displayname'] = { _text: p.displayName };
    if (p.description !== undefined) props['card:addressbook-description'] = { _text: p.description };
    const [res] = await makeCollection({ url: this.url(path), props, fetch: this.fetch });
    if (!res || res.status !== 201) throw new Error(`MKCOL ${path}: ${res?.status}`);
  }

  /** Sets properties after creation (Xandikos ignores most MKCALENDAR properties). */
  async proppatch(path: string, xmlProps: string): Promise<void> {
    const body = `<?xml version="1.0" encoding="utf-8"?><d:propertyupdate xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:a="http://apple.com/ns/ical/" xmlns:card="urn:ietf:params:xml:ns:carddav"><d:set><d:prop>${xmlProps}</d:prop></d:set></d:propertyupdate>`;
    const res = await this.fetch(this.url(path), { method: 'PROPPATCH', body, headers: { 'content-type': 'application/xml' } });
    await res.arrayBuffer();
  }

  async put(path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
    const type = path.endsWith('.vcf') ? 'text/vcard' : 'text/calendar';
    const res = await this.fetch(this.url(path), { method: 'PUT', body, headers: { 'content-type': `${type}; charset=utf-8`, ...headers } });
    await res.arrayBuffer();
    if (res.status >= 300) throw new Error(`PUT ${path}: ${res.status}`);
    return res;
  }

  async delete(path: string): Promise<void> {
    const res = await this.fetch(this.url(path), { method: 'DELETE' });
    await res.arrayBuffer();
  }

  /** The collections of a home with their properties, by last path segment. */
  async collections(homePath: string, kind: 'calendar' | 'addressbook'): Promise<Map<string, Props>> {
    const res = await propfind({
      url: this.url(homePath),
      depth: '1',
      props: {
        'd:resourcetype': {},
        'd:displayname': {},
        'c:calendar-description': {},
        'ca:calendar-color': {},
        'ca:calendar-order': {},
        'c:calendar-timezone': {},
        'c:supported-calendar-component-set': {},
        'card:addressbook-description': {},
      },
      fetch: this.fetch,
    });
    const out = new Map<string, Props>();
    for (const r of res) {
      const types = Object.keys(r.props?.resourcetype ?? {});
      if (!types.includes(kind)) continue;
      const p = r.props ?? {};
      const text = (v: unknown): string | undefined => (v === undefined || v === null || (typeof v === 'object' && !('_cdata' in (v as object))) ? undefined : String((v as { _cdata?: unknown })?._cdata ?? v));
      const comps = p.supportedCalendarComponentSet?.comp;
      const list = (Array.isArray(comps) ? comps : comps ? [comps] : []).map((c: { _attributes?: { name?: string } }) => String(c._attributes?.name));
      const props: Props = {
        displayName: text(p.displayname),
        description: text(kind === 'calendar' ? p.calendarDescription : p.addressbookDescription),
        color: text(p.calendarColor),
        order: text(p.calendarOrder),
        timezone: text(p.calendarTimezone),
        components: list.length > 0 ? list.sort() : undefined,
      };
      for (const k of Object.keys(props) as Array<keyof Props>) if (props[k] === undefined) delete props[k];
      const segs = new URL(r.href ?? '', this.base).pathname.split('/').filter(Boolean);
      out.set(decodeURIComponent(segs[segs.length - 1] ?? ''), props);
    }
    return out;
  }

  /** The objects of a collection (PROPFIND Depth 1, then a GET each): last path segment → data. */
  async objects(collectionPath: string, _kind: 'calendar' | 'addressbook'): Promise<Map<string, string>> {
    const url = this.url(collectionPath.endsWith('/') ? collectionPath : `${collectionPath}/`);
    const listing = await propfind({ url, depth: '1', props: { 'd:getetag': {}, 'd:resourcetype': {} }, fetch: this.fetch });
    const out = new Map<string, string>();
    for (const r of listing) {
      const href = new URL(r.href ?? '', url);
      if (href.pathname === new URL(url).pathname || Object.keys(r.props?.resourcetype ?? {}).includes('collection')) continue;
      const res = await this.fetch(href.href);
      const text = await res.text();
      if (res.status !== 200) throw new Error(`GET ${href.pathname}: ${res.status}`);
      const segs = href.pathname.split('/').filter(Boolean);
      out.set(decodeURIComponent(segs[segs.length - 1] ?? ''), text);
    }
    return out;
  }
}

/**
 * A comparable summary of an iCalendar object or vCard: every component but VTIMEZONE, keyed by UID and
 * RECURRENCE-ID, with all its properties parsed and sorted (PRODID and METHOD left out; servers reformat text).
 */
export function parsed(text: string): Record<string, string[]> {
  const jcal = ICAL.parse(text) as unknown[];
  const top = new ICAL.Component((Array.isArray(jcal[0]) ? jcal[0] : jcal) as unknown[]);
  const comps = top.name === 'vcard' ? [top] : top.getAllSubcomponents().filter((c) => c.name !== 'vtimezone');
  const out: Record<string, string[]> = {};
  for (const c of comps) {
    const rid = c.getFirstPropertyValue('recurrence-id');
    const key = `${c.name.toUpperCase()} ${String(c.getFirstPropertyValue('uid'))}${rid ? ` @${String(rid)}` : ''}`;
    out[key] = describe(c);
  }
  return out;
}

function describe(c: ICAL.Component): string[] {
  const props = c
    .getAllProperties()
    .filter((p) => !['prodid', 'method'].includes(p.name))
    .map((p) => `${p.name.toUpperCase()}${sortedParams(p)}:${p.getValues().map((v) => (typeof v === 'object' && v !== null ? String(v.toString()) : String(v))).join(',')}`);
  const subs = c.getAllSubcomponents().flatMap((s) => describe(s).map((line) => `${s.name.toUpperCase()}/${line}`));
  return [...props, ...subs].sort();
}

function sortedParams(p: ICAL.Property): string {
  const params = (p.toJSON() as [string, Record<string, unknown>])[1];
  const keys = Object.keys(params).sort();
  return keys.map((k) => `;${k.toUpperCase()}=${String(params[k])}`).join('');
}

/** The value of one property of the first non-VTIMEZONE component (for readable assertions). */
export function propOf(text: string, name: string, index = 0): string | undefined {
  const jcal = ICAL.parse(text) as unknown[];
  const top = new ICAL.Component((Array.isArray(jcal[0]) ? jcal[0] : jcal) as unknown[]);
  const comps = top.name === 'vcard' ? [top] : top.getAllSubcomponents().filter((c) => c.name !== 'vtimezone');
  const v = comps[index]?.getFirstPropertyValue(name);
  return v === null || v === undefined ? undefined : String(typeof v === 'object' ? v.toString() : v);
}
