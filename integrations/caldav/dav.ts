// WebDAV, CalDAV and CardDAV operations: discovery, collection and resource listings, multiget, collection creation, PUT.
import tsdav from 'tsdav';
import { AuthError, ConfigError, NotFoundError, ServiceError } from '../../shared/index.ts';
import { isNetworkFailure, unreachableError, type BodySink, type DavHttp, type DavRequest, type DavResponse } from './client.ts';
import type { CollectionProps } from './map.ts';
import { lastSegment } from './map.ts';
import type { DavKind } from './options.ts';
import { XmlStream, type XmlNode } from './xml.ts';

/** XML namespaces used here. */
export const NS = {
  DAV: 'DAV:',
  CALDAV: 'urn:ietf:params:xml:ns:caldav',
  CARDDAV: 'urn:ietf:params:xml:ns:carddav',
  APPLE: 'http://apple.com/ns/ical/',
  CS: 'http://calendarserver.org/ns/',
} as const;

/** tsdav's extended MKCOL: only on its default export object, which its typings do not describe. */
const makeCollection = (tsdav as unknown as {
  makeCollection: (p: { url: string; props: Record<string, unknown>; fetch: typeof fetch }) => Promise<Array<{ status?: number }>>;
}).makeCollection;

const XMLNS = `xmlns:d="${NS.DAV}" xmlns:c="${NS.CALDAV}" xmlns:card="${NS.CARDDAV}" xmlns:a="${NS.APPLE}" xmlns:cs="${NS.CS}"`;

// --- XML ---

export { parseXml, type XmlNode } from './xml.ts';

function child(node: XmlNode | undefined, ns: string, name: string): XmlNode | undefined {
  return node?.children.find((c) => c.ns === ns && c.name === name);
}

function childrenOf(node: XmlNode | undefined, ns: string, name: string): XmlNode[] {
  return node?.children.filter((c) => c.ns === ns && c.name === name) ?? [];
}

/** Escapes text for an XML element or attribute. */
export function xmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}

/** Clark notation `{ns}name`, the key of a property. */
function clark(ns: string, name: string): string {
  return `{${ns}}${name}`;
}

/** One `<response>` of a multistatus. */
export interface MsResponse {
  /** The href resolved against the request URL. */
  url: URL;
  /** The response-level status, when the server gave one instead of propstats. */
  status: number | undefined;
  /** Properties found (2xx propstats), by Clark name. */
  props: Map<string, XmlNode>;
  /** The `<error>` element, if any (preconditions such as no-uid-conflict). */
  error: XmlNode | undefined;
  description: string | undefined;
}

function statusCode(node: XmlNode | undefined): number | undefined {
  const m = /^\S+\s+(\d{3})/.exec(node?.text.trim() ?? '');
  return m ? Number(m[1]) : undefined;
}

/** Most characters of text in one `<response>` (one object's data): objects over 64 MiB are not restored anyway. */
const MAX_RESPONSE_CHARS = 64 * 1024 * 1024;

/** One `<response>` element as an MsResponse; undefined without a usable href. */
function toResponse(r: XmlNode, base: URL): MsResponse | undefined {
  const href = child(r, NS.DAV, 'href')?.text.trim();
  if (!href) return undefined;
  let url: URL;
  try {
    url = new URL(href, base);
  } catch {
    return undefined;
  }
  const props = new Map<string, XmlNode>();
  for (const ps of childrenOf(r, NS.DAV, 'propstat')) {
    const st = statusCode(child(ps, NS.DAV, 'status'));
    if (st !== undefined && (st < 200 || st >= 300)) continue;
    for (const p of child(ps, NS.DAV, 'prop')?.children ?? []) props.set(clark(p.ns, p.name), p);
  }
  return {
    url,
    status: statusCode(child(r, NS.DAV, 'status')),
    props,
    error: child(r, NS.DAV, 'error'),
    description: child(r, NS.DAV, 'responsedescription')?.text.trim(),
  };
}

/**
 * A streaming 207 Multi-Status parser: feed it the body chunk by chunk and each `<response>` goes to `each` as soon as
 * it closes (hrefs resolved against `base`), so only one response is held at a time. Throws on anything but a DAV
 * multistatus document.
 */
export function multistatusStream(base: URL, each: (r: MsResponse) => void): XmlStream {
  return new XmlStream({
    depth: 1,
    maxChars: MAX_RESPONSE_CHARS,
    onRoot: (root) => {
      if (root.ns !== NS.DAV || root.name !== 'multistatus') throw new Error(`expected a DAV multistatus, got <${root.name}>`);
    },
    onElement: (node) => {
      if (node.ns !== NS.DAV || node.name !== 'response') return;
      const r = toResponse(node, base);
      if (r) each(r);
    },
  });
}

/** Parses a whole 207 Multi-Status body; hrefs are resolved against `base`. */
export function parseMultistatus(body: Buffer | string, base: URL): MsResponse[] {
  const out: MsResponse[] = [];
  const s = multistatusStream(base, (r) => out.push(r));
  s.write(body);
  s.end();
  return out;
}

/** A path key for comparing URLs from different sources: decoded path without a trailing slash. */
export function pathKey(url: URL): string {
  let p = url.pathname;
  try {
    p = decodeURIComponent(p);
  } catch {
    // keep the raw path
  }
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

function hrefs(node: XmlNode | undefined, base: URL): URL[] {
  const out: URL[] = [];
  for (const h of childrenOf(node, NS.DAV, 'href')) {
    try {
      out.push(new URL(h.text.trim(), base));
    } catch {
      // skip unusable hrefs
    }
  }
  return out;
}

function prop(r: MsResponse, ns: string, name: string): XmlNode | undefined {
  return r.props.get(clark(ns, name));
}

function propText(r: MsResponse, ns: string, name: string): string | undefined {
  const p = prop(r, ns, name);
  return p === undefined || (p.text === '' && p.children.length === 0) ? undefined : p.text;
}

function resourceTypes(r: MsResponse): Set<string> {
  return new Set((prop(r, NS.DAV, 'resourcetype')?.children ?? []).map((c) => clark(c.ns, c.name)));
}

function httpDate(text: string | undefined): Date | undefined {
  if (!text) return undefined;
  const d = new Date(text.trim());
  return Number.isFinite(d.getTime()) ? d : undefined;
}

// --- Collections ---

/** A calendar or address book on the server. */
export interface CollectionInfo {
  url: URL;
  /** Snapshot-safe name is derived from this: the URL's last segment. */
  segment: string;
  kind: 'calendar' | 'addressbook';
  props: CollectionProps;
  lastModified: Date | undefined;
}

/** The properties asked for every collection. */
const COLLECTION_PROPS = [
  '<d:resourcetype/>',
  '<d:displayname/>',
  '<d:getlastmodified/>',
  '<c:calendar-description/>',
  '<c:calendar-timezone/>',
  '<c:supported-calendar-component-set/>',
  '<a:calendar-color/>',
  '<a:calendar-order/>',
  '<card:addressbook-description/>',
];

function propfindBody(props: string[]): string {
  return `<?xml version="1.0" encoding="utf-8"?>\n<d:propfind ${XMLNS}><d:prop>${props.join('')}</d:prop></d:propfind>`;
}

/** The collection properties of one PROPFIND response. */
export function collectionProps(r: MsResponse, kind: 'calendar' | 'addressbook'): CollectionProps {
  const props: CollectionProps = {};
  const set = <K extends keyof CollectionProps>(k: K, v: CollectionProps[K] | undefined): void => {
    if (v !== undefined) props[k] = v;
  };
  set('displayName', propText(r, NS.DAV, 'displayname'));
  if (kind === 'calendar') {
    set('description', propText(r, NS.CALDAV, 'calendar-description'));
    set('color', propText(r, NS.APPLE, 'calendar-color'));
    set('order', propText(r, NS.APPLE, 'calendar-order'));
    set('timezone', propText(r, NS.CALDAV, 'calendar-timezone'));
    const comps = childrenOf(prop(r, NS.CALDAV, 'supported-calendar-component-set'), NS.CALDAV, 'comp')
      .map((c) => (c.attrs.name ?? '').toUpperCase())
      .filter((n) => n !== '');
    if (comps.length > 0) props.components = comps;
  } else {
    set('description', propText(r, NS.CARDDAV, 'addressbook-description'));
  }
  return props;
}

function collectionOf(r: MsResponse, kind: DavKind): CollectionInfo | undefined {
  const types = resourceTypes(r);
  const ckind = kind === 'caldav' ? 'calendar' : 'addressbook';
  const ns = kind === 'caldav' ? NS.CALDAV : NS.CARDDAV;
  if (!types.has(clark(ns, ckind))) return undefined;
  const url = new URL(r.url.href);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return { url, segment: lastSegment(url), kind: ckind, props: collectionProps(r, ckind), lastModified: httpDate(propText(r, NS.DAV, 'getlastmodified')) };
}

/** Where a location points. `missing` only when the caller allows it (a restore may create that collection). */
export type Target =
  | { mode: 'homes'; homes: URL[]; principal: URL | undefined }
  | { mode: 'collection'; collection: CollectionInfo }
  | { mode: 'missing'; url: URL };

/** WebDAV operations on one account. */
export class Dav {
  readonly http: DavHttp;
  readonly kind: DavKind;
  constructor(http: DavHttp, kind: DavKind) {
    this.http = http;
    this.kind = kind;
  }

  private get collectionWord(): string {
    return this.kind === 'caldav' ? 'calendar' : 'address book';
  }

  /** Sends a request; network failures become one clear "cannot reach" error. */
  async send(req: Parameters<DavHttp['request']>[0]): Promise<DavResponse> {
    try {
      return await this.http.request(req);
    } catch (err) {
      if (isNetworkFailure(err)) throw unreachableError(new URL(req.url), err);
      throw err;
    }
  }

  private propfindRequest(url: URL, depth: '0' | '1', props: string[]): DavRequest {
    return { method: 'PROPFIND', url, depth, headers: { 'content-type': 'application/xml; charset=utf-8' }, body: propfindBody(props) };
  }

  private report(url: URL, body: string): DavRequest {
    return { method: 'REPORT', url, depth: '1', headers: { 'content-type': 'application/xml; charset=utf-8' }, body };
  }

  private async propfind(url: URL, depth: '0' | '1', props: string[]): Promise<DavResponse> {
    return this.send(this.propfindRequest(url, depth, props));
  }

  private multistatus(res: DavResponse, what: string): MsResponse[] {
    if (res.status !== 207) throw new ServiceError(`http-${res.status}`, `${what}: unexpected answer ${res.status} ${res.statusText}`.trim(), { httpStatus: res.status });
    try {
      return parseMultistatus(res.body, res.url);
    } catch (err) {
      throw new ServiceError('bad-xml', `${what}: the server sent an unreadable multistatus (${(err as Error).message})`);
    }
  }

  /**
   * Sends a request whose 207 answer is parsed as it arrives, each `<response>` handed to `each` (again if the request
   * is retried); any other answer comes back whole for the caller to judge. An unreadable multistatus fails it with a
   * ServiceError naming `what`.
   */
  private async streamed(req: DavRequest, what: string, each: (r: MsResponse) => void): Promise<DavResponse> {
    const unreadable = (err: unknown): ServiceError =>
      new ServiceError('bad-xml', `${what}: the server sent an unreadable multistatus (${(err as Error).message})`);
    const sink = (status: number, url: URL): BodySink | undefined => {
      if (status !== 207) return undefined;
      const s = multistatusStream(url, each);
      return {
        write(chunk) {
          try {
            s.write(chunk);
          } catch (err) {
            throw unreadable(err);
          }
        },
        end() {
          try {
            s.end();
          } catch (err) {
            throw unreadable(err);
          }
        },
      };
    };
    return this.send({ ...req, sink });
  }

  /** Throws unless a streamed request was answered 207 Multi-Status. */
  private expect207(res: DavResponse, what: string): void {
    if (res.status !== 207) throw new ServiceError(`http-${res.status}`, `${what}: unexpected answer ${res.status} ${res.statusText}`.trim(), { httpStatus: res.status });
  }

  /** PROPFIND Depth 0 on `url`: the response for `url` itself, or undefined when it does not exist. */
  private async self(url: URL, props: string[]): Promise<MsResponse | undefined> {
    const res = await this.propfind(url, '0', props);
    const what = `PROPFIND ${url.href}`;
    if (res.status === 404 || res.status === 410) return undefined;
    if (res.status === 403) {
      throw new AuthError(`access to ${url.href} is denied ${this.http.who} (403 Forbidden) (hint: check that location belongs to this account)`, { denied: true });
    }
    if (res.status === 405 || res.status === 501) {
      throw new NotFoundError(`${url.href} is not a WebDAV resource (${res.status} ${res.statusText} to PROPFIND) (hint: check the path in location)`);
    }
    const all = this.multistatus(res, what);
    const me = all.find((r) => pathKey(r.url) === pathKey(url)) ?? all[0];
    if (!me || me.status === 404) return undefined;
    return me;
  }

  /**
   * Finds what a location names: a collection, or the home(s) holding the account's collections. Follows
   * current-user-principal → calendar-home-set / addressbook-home-set, and /.well-known/caldav|carddav from the root.
   */
  async discover(start: URL, allowMissing = false): Promise<Target> {
    const homeProp = this.kind === 'caldav' ? '<c:calendar-home-set/>' : '<card:addressbook-home-set/>';
    const visited = new Set<string>();
    let triedWellKnown = false;
    let principal: URL | undefined;
    const other = this.kind === 'caldav' ? clark(NS.CARDDAV, 'addressbook') : clark(NS.CALDAV, 'calendar');
    const otherProto = this.kind === 'caldav' ? 'carddav' : 'caldav';
    let url = start;
    for (;;) {
      visited.add(pathKey(url));
      const r = await this.self(url, [...COLLECTION_PROPS, '<d:current-user-principal/>', homeProp]);
      if (!r) {
        if (allowMissing && url === start) return { mode: 'missing', url };
        throw new NotFoundError(
          `${url.href} does not exist (404 Not Found) (hint: location must name the server root, a principal, a ${this.collectionWord} home or one ${this.collectionWord})`,
        );
      }
      const collection = collectionOf(r, this.kind);
      if (collection) return { mode: 'collection', collection: { ...collection, url: new URL(url.href) } };
      if (resourceTypes(r).has(other)) {
        throw new ConfigError('location', `${url.href} is ${this.kind === 'caldav' ? 'an address book' : 'a calendar'}; use ${otherProto}:// for it`);
      }
      const homeNode = prop(r, this.kind === 'caldav' ? NS.CALDAV : NS.CARDDAV, this.kind === 'caldav' ? 'calendar-home-set' : 'addressbook-home-set');
      const homes = hrefs(homeNode, r.url);
      if (homes.length > 0) return { mode: 'homes', homes: homes.map(withSlash), principal: principal ?? url };
      const cup = hrefs(prop(r, NS.DAV, 'current-user-principal'), r.url)[0];
      if (cup && !visited.has(pathKey(cup))) {
        principal = withSlash(cup);
        url = principal;
        continue;
      }
      if (url.pathname === '/' && !triedWellKnown) {
        triedWellKnown = true;
        const found = await this.wellKnown(url);
        if (found && !visited.has(pathKey(found))) {
          url = found;
          continue;
        }
      }
      if (resourceTypes(r).has(clark(NS.DAV, 'collection'))) return { mode: 'homes', homes: [url], principal };
      throw new NotFoundError(
        `${url.href} is not a ${this.collectionWord}, a ${this.collectionWord} home or a principal (hint: check the path in location)`,
      );
    }
  }

  /** RFC 6764 service discovery through tsdav (/.well-known/caldav or carddav redirects). */
  private async wellKnown(root: URL): Promise<URL | undefined> {
    try {
      const found = await tsdav.serviceDiscovery({
        account: { serverUrl: root.href, accountType: this.kind, credentials: {} } as never,
        fetch: this.http.fetch as typeof fetch,
      });
      const u = withSlash(new URL(found));
      return u.href === root.href ? undefined : u;
    } catch {
      return undefined;
    }
  }

  /** The collections of this kind inside one home, sorted by URL. */
  async listCollections(home: URL): Promise<CollectionInfo[]> {
    const what = `PROPFIND ${home.href}`;
    const found = new Map<string, CollectionInfo>();
    const res = await this.streamed(this.propfindRequest(home, '1', COLLECTION_PROPS), what, (r) => {
      if (pathKey(r.url) === pathKey(home)) return;
      const c = collectionOf(r, this.kind);
      if (c) found.set(pathKey(c.url), c);
    });
    if (res.status === 403) throw new AuthError(`access to ${home.href} is denied ${this.http.who} (403 Forbidden)`, { denied: true });
    this.expect207(res, what);
    return [...found.values()].sort((x, y) => (x.url.pathname < y.url.pathname ? -1 : x.url.pathname > y.url.pathname ? 1 : 0));
  }

  /** Whether `url` exists (PROPFIND Depth 0 answers); 403 is an AuthError. */
  async exists(url: URL): Promise<boolean> {
    return (await this.self(url, ['<d:resourcetype/>'])) !== undefined;
  }

  /** The properties of one collection, or undefined when it does not exist. */
  async collection(url: URL): Promise<CollectionInfo | undefined> {
    const r = await this.self(url, COLLECTION_PROPS);
    if (!r) return undefined;
    const c = collectionOf(r, this.kind);
    return c ? { ...c, url } : undefined;
  }

  /**
   * The object resources of a collection (no sub-collections), sorted by URL. With `components`, a CalDAV
   * calendar-query per component type keeps only objects holding one of them (server-side filtering).
   */
  async listResources(collection: URL, components?: readonly string[]): Promise<ResourceInfo[]> {
    const props = ['<d:getetag/>', '<d:getlastmodified/>', '<d:getcontentlength/>', '<d:resourcetype/>'];
    const found = new Map<string, ResourceInfo>();
    const add = (r: MsResponse): void => {
      if (pathKey(r.url) === pathKey(collection) || resourceTypes(r).has(clark(NS.DAV, 'collection'))) return;
      if (r.status !== undefined && (r.status < 200 || r.status >= 300)) return;
      const length = Number(propText(r, NS.DAV, 'getcontentlength') ?? NaN);
      found.set(pathKey(r.url), {
        url: r.url,
        etag: propText(r, NS.DAV, 'getetag')?.trim(),
        lastModified: httpDate(propText(r, NS.DAV, 'getlastmodified')),
        size: Number.isSafeInteger(length) && length >= 0 ? length : undefined,
      });
    };
    if (components && this.kind === 'caldav') {
      for (const comp of components) {
        const body = `<?xml version="1.0" encoding="utf-8"?>\n<c:calendar-query ${XMLNS}><d:prop>${props.join('')}</d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="${xmlEscape(comp)}"/></c:comp-filter></c:filter></c:calendar-query>`;
        const what = `REPORT calendar-query ${collection.href}`;
        this.expect207(await this.streamed(this.report(collection, body), what, add), what);
      }
    } else {
      const what = `PROPFIND ${collection.href}`;
      const res = await this.streamed(this.propfindRequest(collection, '1', props), what, add);
      if (res.status === 404) throw new NotFoundError(`${collection.href} no longer exists (404 Not Found)`);
      this.expect207(res, what);
    }
    return [...found.values()].sort((a, b) => (a.url.pathname < b.url.pathname ? -1 : a.url.pathname > b.url.pathname ? 1 : 0));
  }

  /**
   * Fetches several objects in one calendar-multiget / addressbook-multiget REPORT, handing each object to `each`
   * (by path key) as soon as its response is parsed. Objects the server did not return are not handed over; a 404
   * for one object is handed over with its status.
   */
  async multiget(collection: URL, urls: URL[], each: (key: string, f: FetchedObject) => void): Promise<void> {
    const caldav = this.kind === 'caldav';
    const report = caldav ? 'c:calendar-multiget' : 'card:addressbook-multiget';
    const data = caldav ? '<c:calendar-data/>' : '<card:address-data/>';
    const body = `<?xml version="1.0" encoding="utf-8"?>\n<${report} ${XMLNS}><d:prop><d:getetag/>${data}</d:prop>${urls
      .map((u) => `<d:href>${xmlEscape(u.pathname)}</d:href>`)
      .join('')}</${report}>`;
    const what = `REPORT ${caldav ? 'calendar' : 'addressbook'}-multiget ${collection.href}`;
    const res = await this.streamed(this.report(collection, body), what, (r) => {
      const node = caldav ? prop(r, NS.CALDAV, 'calendar-data') : prop(r, NS.CARDDAV, 'address-data');
      each(pathKey(r.url), { status: node ? 200 : (r.status ?? 404), etag: propText(r, NS.DAV, 'getetag')?.trim(), data: node?.text });
    });
    this.expect207(res, what);
  }

  /**
   * Every object of a collection with its data in one calendar-query / addressbook-query REPORT, each handed to
   * `each` (by path key) as soon as its response is parsed: the answer is never held whole. Servers that find
   * objects by name in linear time (Xandikos: ~0.2 s per href in a 2,000-object calendar, for multiget and GET
   * alike) answer this in one pass, so it is how whole collections are read when their size allows.
   */
  async queryAll(collection: URL, each: (key: string, f: FetchedObject) => void): Promise<void> {
    const caldav = this.kind === 'caldav';
    const body = caldav
      ? `<?xml version="1.0" encoding="utf-8"?>\n<c:calendar-query ${XMLNS}><d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"/></c:filter></c:calendar-query>`
      : `<?xml version="1.0" encoding="utf-8"?>\n<card:addressbook-query ${XMLNS}><d:prop><d:getetag/><card:address-data/></d:prop></card:addressbook-query>`;
    const what = `REPORT ${caldav ? 'calendar' : 'addressbook'}-query ${collection.href}`;
    const res = await this.streamed(this.report(collection, body), what, (r) => {
      const node = caldav ? prop(r, NS.CALDAV, 'calendar-data') : prop(r, NS.CARDDAV, 'address-data');
      if (node) each(pathKey(r.url), { status: 200, etag: propText(r, NS.DAV, 'getetag')?.trim(), data: node.text });
    });
    this.expect207(res, what);
  }

  /** GET of one object. */
  async get(url: URL): Promise<FetchedObject> {
    const res = await this.send({ method: 'GET', url, headers: { accept: this.kind === 'caldav' ? 'text/calendar' : 'text/vcard' } });
    const etag = res.headers.etag;
    return { status: res.status, etag, data: res.status === 200 ? res.body.toString('utf8') : undefined };
  }

  /** PUT of one object, conditional on `If-None-Match: *` (create only) or `If-Match` (replace that version only). */
  async put(url: URL, body: string, condition: { ifNoneMatch: true } | { ifMatch: string }): Promise<DavResponse> {
    const headers: Record<string, string> = {
      'content-type': this.kind === 'caldav' ? 'text/calendar; charset=utf-8' : 'text/vcard; charset=utf-8',
    };
    if ('ifNoneMatch' in condition) headers['if-none-match'] = '*';
    else headers['if-match'] = condition.ifMatch;
    return this.send({ method: 'PUT', url, headers, body });
  }

  /** The hrefs of objects whose UID is `uid` (calendar-query / addressbook-query text-match), best effort. */
  async findUid(collection: URL, uid: string): Promise<URL[]> {
    const caldav = this.kind === 'caldav';
    const match = xmlEscape(uid);
    const filters = caldav
      ? ['VEVENT', 'VTODO', 'VJOURNAL'].map(
          (comp) =>
            `<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="${comp}"><c:prop-filter name="UID"><c:text-match collation="i;octet">${match}</c:text-match></c:prop-filter></c:comp-filter></c:comp-filter></c:filter>`,
        )
      : [`<card:filter><card:prop-filter name="UID"><card:text-match collation="i;octet" match-type="equals">${match}</card:text-match></card:prop-filter></card:filter>`];
    const report = caldav ? 'c:calendar-query' : 'card:addressbook-query';
    const out = new Map<string, URL>();
    for (const f of filters) {
      const body = `<?xml version="1.0" encoding="utf-8"?>\n<${report} ${XMLNS}><d:prop><d:getetag/></d:prop>${f}</${report}>`;
      const res = await this.send({ method: 'REPORT', url: collection, depth: '1', headers: { 'content-type': 'application/xml; charset=utf-8' }, body });
      if (res.status !== 207) continue;
      for (const r of parseMultistatus(res.body, res.url)) {
        if (pathKey(r.url) !== pathKey(collection) && (r.status === undefined || r.status < 300)) out.set(pathKey(r.url), r.url);
      }
    }
    return [...out.values()];
  }

  /**
   * Creates a calendar (MKCALENDAR, RFC 4791) or address book (extended MKCOL, RFC 5689) with its saved properties,
   * then sets with PROPPATCH, one by one, whatever the creation request did not set. Returns the properties the
   * server would not take. An existing collection is left as it is.
   */
  async createCollection(url: URL, props: CollectionProps): Promise<{ existed: boolean; refused: string[] }> {
    const fetchFn = this.http.fetch as typeof fetch;
    let status: number;
    if (this.kind === 'caldav') {
      // tsdav builds the MKCALENDAR body; prefixes must be lowercase (d:, c:, ca:) or Radicale answers 400 "unbound prefix".
      const p: Record<string, unknown> = {};
      if (props.displayName !== undefined) p['d:displayname'] = { _text: props.displayName };
      if (props.description !== undefined) p['c:calendar-description'] = { _text: props.description };
      if (props.color !== undefined) p['ca:calendar-color'] = { _text: props.color };
      if (props.order !== undefined) p['ca:calendar-order'] = { _text: props.order };
      if (props.timezone !== undefined) p['c:calendar-timezone'] = { _text: props.timezone };
      if (props.components && props.components.length > 0) {
        p['c:supported-calendar-component-set'] = { 'c:comp': props.components.map((name) => ({ _attributes: { name } })) };
      }
      const res = await tsdav.makeCalendar({ url: url.href, props: p, fetch: fetchFn });
      status = res[0]?.status ?? 0;
    } else {
      const p: Record<string, unknown> = { 'd:resourcetype': { 'd:collection': {}, 'card:addressbook': {} } };
      if (props.displayName !== undefined) p['d:displayname'] = { _text: props.displayName };
      if (props.description !== undefined) p['card:addressbook-description'] = { _text: props.description };
      const res = await makeCollection({ url: url.href, props: p, fetch: fetchFn });
      status = res[0]?.status ?? 0;
    }
    if (status === 405) return { existed: true, refused: [] };
    if (status < 200 || status >= 300) {
      const method = this.kind === 'caldav' ? 'MKCALENDAR' : 'MKCOL';
      throw new ServiceError(`http-${status}`, `cannot create ${this.collectionWord} ${url.href}: ${method} answered ${status}`, { httpStatus: status });
    }
    return { existed: false, refused: await this.applyProps(url, props) };
  }

  /** Sets each saved property the collection lacks, one PROPPATCH per property; returns those still missing. */
  async applyProps(url: URL, props: CollectionProps): Promise<string[]> {
    const current = await this.collection(url);
    if (!current) throw new NotFoundError(`${url.href} vanished right after it was created`);
    const caldav = this.kind === 'caldav';
    const wanted: Array<[keyof CollectionProps, string, string]> = [
      ['displayName', 'displayname', '<d:displayname>%s</d:displayname>'],
      ['description', 'description', caldav ? '<c:calendar-description>%s</c:calendar-description>' : '<card:addressbook-description>%s</card:addressbook-description>'],
    ];
    if (caldav) {
      wanted.push(
        ['color', 'calendar-color', '<a:calendar-color>%s</a:calendar-color>'],
        ['order', 'calendar-order', '<a:calendar-order>%s</a:calendar-order>'],
        ['timezone', 'calendar-timezone', '<c:calendar-timezone>%s</c:calendar-timezone>'],
      );
    }
    const refused: string[] = [];
    for (const [key, label, template] of wanted) {
      const want = props[key];
      if (typeof want !== 'string' || samePropValue(key, want, current.props[key] as string | undefined)) continue;
      const body = `<?xml version="1.0" encoding="utf-8"?>\n<d:propertyupdate ${XMLNS}><d:set><d:prop>${template.replace('%s', xmlEscape(want).replace(/\r/g, '&#13;'))}</d:prop></d:set></d:propertyupdate>`;
      const res = await this.send({ method: 'PROPPATCH', url, headers: { 'content-type': 'application/xml; charset=utf-8' }, body });
      const ok =
        res.status >= 200 && res.status < 300 && (res.status !== 207 || parseMultistatus(res.body, res.url).every((r) => r.props.size > 0 || r.status === undefined));
      if (!ok) refused.push(label);
    }
    const after = refused.length < wanted.length ? await this.collection(url) : current;
    const still = new Set(refused);
    for (const [key, label] of wanted) {
      const want = props[key];
      if (typeof want === 'string' && !samePropValue(key, want, after?.props[key] as string | undefined)) still.add(label);
    }
    const comps = props.components ?? [];
    if (caldav && comps.length > 0) {
      const have = new Set(after?.props.components ?? ['VEVENT', 'VTODO', 'VJOURNAL']);
      if (!comps.every((c) => have.has(c))) still.add('supported-calendar-component-set');
    }
    return [...still];
  }
}

/** Whether a server's value of a property matches the saved one, allowing for reformatting servers. */
export function samePropValue(key: keyof CollectionProps, want: string, have: string | undefined): boolean {
  if (have === undefined) return false;
  if (key === 'color') {
    const norm = (c: string): string => {
      const t = c.trim().toUpperCase();
      return /^#[0-9A-F]{6}$/.test(t) ? `${t}FF` : t;
    };
    return norm(want) === norm(have);
  }
  if (key === 'timezone') return want.replace(/\r\n|\r/g, '\n').trim() === have.replace(/\r\n|\r/g, '\n').trim();
  return want === have;
}

/** An object resource as listed. */
export interface ResourceInfo {
  url: URL;
  etag: string | undefined;
  lastModified: Date | undefined;
  /** getcontentlength, when the server lists it. */
  size?: number | undefined;
}

/** An object as fetched: status 200 with data, or the status the server gave for it. */
export interface FetchedObject {
  status: number;
  etag: string | undefined;
  data: string | undefined;
}

function withSlash(u: URL): URL {
  const c = new URL(u.href);
  if (!c.pathname.endsWith('/')) c.pathname += '/';
  return c;
}
