// Pure mappings of the caldav integration: hrefs ↔ snapshot names, the saved collection file, stable mtimes, and iCalendar/vCard checks.
import ICAL from 'ical.js';
import { decodeSegment, encodeSegment } from '../../shared/index.ts';
import type { DavKind } from './options.ts';

/** Name of the file that carries a collection's properties inside its snapshot directory. */
export const COLLECTION_FILE = '.collection.json';
/** Extended attribute holding a resource's ETag as the server gave it. */
export const ETAG_XATTR = 'caldav.etag';
/** `format` value of the collection file; bumped if its shape ever changes incompatibly. */
export const COLLECTION_FORMAT = 'kloset-ts caldav collection v1';

/** File extension of one object resource. */
export function extensionOf(kind: DavKind): '.ics' | '.vcf' {
  return kind === 'carddav' ? '.vcf' : '.ics';
}

/** Properties of a calendar or address book that a restore recreates. Absent = not set on the server. */
export interface CollectionProps {
  displayName?: string;
  description?: string;
  /** Apple calendar-color, e.g. `#FF0000FF`. */
  color?: string;
  /** Apple calendar-order, as text. */
  order?: string;
  /** CalDAV calendar-timezone: a VCALENDAR holding one VTIMEZONE. */
  timezone?: string;
  /** CalDAV supported-calendar-component-set, e.g. `['VEVENT', 'VTODO']`. */
  components?: string[];
}

/** What the collection file holds: the kind, where it came from, and its properties. */
export interface SavedCollection {
  format: string;
  kind: 'calendar' | 'addressbook';
  /** The collection's URL path on the source server (informational). */
  href: string;
  props: CollectionProps;
}

/** The collection file's bytes: sorted keys, two-space indent, final newline, so equal properties give equal bytes. */
export function collectionFile(saved: SavedCollection): Buffer {
  const props: Record<string, unknown> = {};
  for (const key of ['displayName', 'description', 'color', 'order', 'timezone', 'components'] as const) {
    const v = saved.props[key];
    if (v !== undefined) props[key] = v;
  }
  return Buffer.from(`${JSON.stringify({ format: saved.format, kind: saved.kind, href: saved.href, props }, null, 2)}\n`, 'utf8');
}

/** Parses and checks a collection file; throws an Error saying what is wrong. */
export function parseCollectionFile(bytes: Buffer): SavedCollection {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new Error(`${COLLECTION_FILE} is not valid JSON: ${(err as Error).message}`);
  }
  const o = json as Partial<SavedCollection> | null;
  if (!o || typeof o !== 'object' || o.format !== COLLECTION_FORMAT) {
    throw new Error(`${COLLECTION_FILE} is not a collection file of this integration (format ${JSON.stringify(o?.format)})`);
  }
  if (o.kind !== 'calendar' && o.kind !== 'addressbook') throw new Error(`${COLLECTION_FILE}: unknown kind ${JSON.stringify(o.kind)}`);
  const p = (o.props ?? {}) as Record<string, unknown>;
  const props: CollectionProps = {};
  for (const key of ['displayName', 'description', 'color', 'order', 'timezone'] as const) {
    if (typeof p[key] === 'string') props[key] = p[key];
  }
  if (Array.isArray(p.components)) props.components = p.components.filter((c): c is string => typeof c === 'string');
  return { format: o.format, kind: o.kind, href: typeof o.href === 'string' ? o.href : '', props };
}

/** The last non-empty segment of a URL path, percent-decoded. */
export function lastSegment(url: URL): string {
  const segs = url.pathname.split('/').filter((s) => s !== '');
  const last = segs[segs.length - 1] ?? '';
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** Snapshot directory name of a collection: its URL's last segment (stable across renames of the display name). */
export function collectionName(url: URL): string {
  return encodeSegment(lastSegment(url));
}

/**
 * Snapshot file name of an object resource: its URL's last segment, with the kind's extension added when the server's
 * name lacks it (Google and some others use bare UIDs). Restores PUT under this name.
 */
export function resourceName(url: URL, kind: DavKind): string {
  const name = lastSegment(url);
  const ext = extensionOf(kind);
  return encodeSegment(name.toLowerCase().endsWith(ext) ? name : `${name}${ext}`);
}

/** The server resource name of a snapshot file name (the reverse of encodeSegment). */
export function serverNameOf(fileName: string): string {
  return decodeSegment(fileName);
}

/** FNV-1a 32-bit hash of a string. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * A modification time that changes whenever the content does: the server's time (whole seconds, as HTTP and
 * iCalendar dates are) plus a sub-second fingerprint of the ETag or content (or its fnv1a hash, given as a number). Plakar reuses an unchanged file's old
 * content when name, size and mtime match, so an edit within the same second must still move the mtime.
 */
export function stableMtime(time: Date | undefined, fingerprintOf: string | number): Date {
  const base = time && Number.isFinite(time.getTime()) ? Math.floor(time.getTime() / 1000) * 1000 : 0;
  const hash = typeof fingerprintOf === 'number' ? fingerprintOf : fnv1a(fingerprintOf);
  return new Date(base + (hash % 1000));
}

/** Compiles `include`/`exclude` glob lists into one predicate over a collection's name and display name. */
export function collectionFilter(include: readonly string[], exclude: readonly string[]): (name: string, displayName?: string) => boolean {
  const compile = (glob: string): RegExp =>
    new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
  const inc = include.map(compile);
  const exc = exclude.map(compile);
  return (name, displayName) => {
    const hit = (res: RegExp[]): boolean => res.some((re) => re.test(name) || (displayName !== undefined && re.test(displayName)));
    if (exc.length > 0 && hit(exc)) return false;
    return inc.length === 0 || hit(inc);
  };
}

/** Canonical iCalendar line endings: every line ends with CRLF, including the last. */
export function canonicalLines(text: string): string {
  const t = text.replace(/\r\n|\r|\n/g, '\r\n');
  return t.endsWith('\r\n') ? t : `${t}\r\n`;
}

/** Parses one calendar object (VCALENDAR) or vCard with ical.js; throws an Error saying why it is not valid. */
export function parseObject(text: string, kind: DavKind): ICAL.Component {
  const what = kind === 'carddav' ? 'vCard' : 'iCalendar';
  let jcal: unknown;
  try {
    jcal = ICAL.parse(text);
  } catch (err) {
    throw new Error(`not valid ${what}: ${(err as Error).message}`);
  }
  const top = Array.isArray(jcal) && Array.isArray(jcal[0]) ? (jcal as unknown[])[0] : jcal;
  const comp = new ICAL.Component(top as unknown[]);
  const expected = kind === 'carddav' ? 'vcard' : 'vcalendar';
  if (comp.name !== expected) throw new Error(`not valid ${what}: the object is a ${comp.name.toUpperCase()}, expected ${expected.toUpperCase()}`);
  if (kind === 'caldav' && mainComponents(comp).length === 0) {
    throw new Error(`not valid iCalendar: the VCALENDAR holds no VEVENT, VTODO or VJOURNAL`);
  }
  return comp;
}

/** The VCALENDAR's content components (everything but VTIMEZONE). */
function mainComponents(cal: ICAL.Component): ICAL.Component[] {
  return cal.getAllSubcomponents().filter((c) => c.name !== 'vtimezone');
}

/** The component type of a calendar object (`VEVENT`, `VTODO`, `VJOURNAL`, …) or `VCARD`. */
export function componentType(comp: ICAL.Component): string {
  if (comp.name === 'vcard') return 'VCARD';
  return (mainComponents(comp)[0]?.name ?? '').toUpperCase();
}

/** The object's UID (calendar objects share one UID across the master and its overrides). */
export function uidOf(comp: ICAL.Component): string | undefined {
  const source = comp.name === 'vcard' ? comp : mainComponents(comp)[0];
  const uid = source?.getFirstPropertyValue('uid');
  return typeof uid === 'string' && uid !== '' ? uid : undefined;
}

function timeOf(prop: ICAL.Property | null): Date | undefined {
  const v = prop?.getFirstValue() as { toJSDate?: () => Date } | string | null | undefined;
  if (v && typeof v === 'object' && typeof v.toJSDate === 'function') {
    const d = v.toJSDate();
    return Number.isFinite(d.getTime()) ? d : undefined;
  }
  if (typeof v === 'string') {
    const d = new Date(v);
    return Number.isFinite(d.getTime()) ? d : undefined;
  }
  return undefined;
}

/** When the object itself says it was last changed: the latest LAST-MODIFIED (then DTSTAMP) of its components, or a vCard's REV. */
export function objectLastModified(comp: ICAL.Component): Date | undefined {
  if (comp.name === 'vcard') return timeOf(comp.getFirstProperty('rev'));
  let best: Date | undefined;
  for (const name of ['last-modified', 'dtstamp']) {
    for (const sub of mainComponents(comp)) {
      const d = timeOf(sub.getFirstProperty(name));
      if (d && (!best || d > best)) best = d;
    }
    if (best) return best;
  }
  return undefined;
}

/** What a restore PUTs: the object as stored, minus what servers reject (`METHOD`), plus its UID and type. */
export interface PreparedObject {
  body: string;
  uid: string | undefined;
  type: string;
  /** True when the body was rewritten (METHOD removed). */
  rewritten: boolean;
}

/**
 * Validates an object for a restore and strips `METHOD` (RFC 4791 §4.1: calendar object resources must not carry it;
 * Google and others refuse them). The body is re-serialised only in that case; otherwise the bytes are kept as they are.
 */
export function prepareObject(text: string, kind: DavKind): PreparedObject {
  const comp = parseObject(text, kind);
  let body = canonicalLines(text);
  let rewritten = false;
  if (kind === 'caldav' && comp.getFirstProperty('method')) {
    comp.removeAllProperties('method');
    body = canonicalLines(comp.toString());
    rewritten = true;
  }
  return { body, uid: uidOf(comp), type: componentType(comp), rewritten };
}

function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v as Record<string, unknown>)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** A canonical text of a jCal component: properties sorted, subcomponents sorted, VTIMEZONE/METHOD/PRODID left out. */
function canonical(jcal: unknown[]): string {
  const [name, props, subs] = jcal as [string, unknown[][], unknown[][]];
  const p = props
    .filter((prop) => !['method', 'prodid'].includes(String(prop[0])))
    .map((prop) => stable(prop))
    .sort();
  const s = (subs ?? [])
    .filter((sub) => sub[0] !== 'vtimezone')
    .map((sub) => canonical(sub))
    .sort();
  return `${name}{${p.join(';')}}[${s.join(';')}]`;
}

/**
 * True when two objects hold the same data once parsed: servers reorder properties, fold lines differently, add
 * VTIMEZONEs and a PRODID, so bytes cannot be compared. Used to tell "already restored" from a real conflict.
 */
export function sameObject(a: string, b: string, kind: DavKind): boolean {
  try {
    return canonical(parseObject(a, kind).toJSON() as unknown[]) === canonical(parseObject(b, kind).toJSON() as unknown[]);
  } catch {
    return false;
  }
}
