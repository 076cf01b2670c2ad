// Pure S3 ↔ snapshot mapping: object keys as snapshot paths, object metadata as versioned xattr names, Content-Type guesses.
import { decodeKeyPath, encodeKeyPath } from '../../shared/index.ts';

/**
 * Last path segment standing for an object whose key is also the prefix of other keys (`a/b` beside `a/b/c`): the
 * snapshot cannot hold `/a/b` as both a file and a directory, so the object becomes `/a/b/%self`. `encodeSegment`
 * always writes `%` as `%25`, so no real key segment can ever encode to this.
 */
export const SELF_SEGMENT = '%self';

/** The snapshot path of an object key (lossless: `//`, trailing `/`, `.`/`..` and control characters survive). */
export function keyToPath(key: string): string {
  return encodeKeyPath(key);
}

/** The snapshot path of an object whose key is also a "directory" of other keys. */
export function selfPath(key: string): string {
  return `${encodeKeyPath(key)}/${SELF_SEGMENT}`;
}

/** The object key of a snapshot path (the reverse of `keyToPath` and `selfPath`). */
export function pathToKey(path: string): string {
  if (path === `/${SELF_SEGMENT}`) return '';
  if (path.endsWith(`/${SELF_SEGMENT}`)) return decodeKeyPath(path.slice(0, -SELF_SEGMENT.length - 1));
  return decodeKeyPath(path);
}

/** The snapshot path of the directory a zero-byte marker key (`photos/2024/`) stands for. */
export function markerToPath(key: string): string {
  return encodeKeyPath(key.slice(0, -1));
}

/** Every ancestor directory of a snapshot path strictly below `root`, outermost first (`/a/b/c` → `/a`, `/a/b`). */
export function ancestorsBelow(path: string, root: string): string[] {
  const out: string[] = [];
  const stop = root === '/' ? '' : root;
  let i = path.lastIndexOf('/');
  while (i > 0) {
    const dir = path.slice(0, i);
    if (dir.length <= stop.length) break;
    out.push(dir);
    i = path.lastIndexOf('/', i - 1);
  }
  return out.reverse();
}

/** Normalises a user prefix: no leading `/`, and either empty or ending in `/`. */
export function normalizePrefix(prefix: string): string {
  const p = prefix.replace(/^\/+/, '');
  if (p === '') return '';
  return p.endsWith('/') ? p : `${p}/`;
}

/** The snapshot path of a key prefix (`photos/` → `/photos`, `` → `/`). */
export function prefixToPath(prefix: string): string {
  if (prefix === '') return '/';
  return encodeKeyPath(prefix.slice(0, -1));
}

/** True when `key`, resolved like a file path, would leave `prefix` (`..` segments climbing above it). */
export function escapesPrefix(key: string): boolean {
  let depth = 0;
  for (const seg of key.split('/')) {
    if (seg === '..') {
      depth--;
      if (depth < 0) return true;
    } else if (seg !== '.' && seg !== '') depth++;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------------
// Metadata as extended attributes.
//
// A v1.1.x host gives an exporter only the *names* of a record's extended attributes (PROTOCOL.md §3.5.1), so each
// name carries its value: `s3.v1.<field>=<percent-encoded value>`. The same strings are also sent as xattr records
// whose value is the raw value, so the metadata is browsable in the snapshot. Encoding version 1:
//   s3.v1.content-type=…  s3.v1.cache-control=…  s3.v1.content-encoding=…  s3.v1.content-disposition=…
//   s3.v1.content-language=…  s3.v1.expires=…  s3.v1.website-redirect-location=…
//   s3.v1.storage-class=…  s3.v1.etag=…  s3.v1.version-id=…  s3.v1.sse=…  s3.v1.sse-kms-key-id=…
//                                                                           (informational, never written back)
//   s3.v1.meta.<name>=…        user metadata (x-amz-meta-<name>), name percent-encoded
//   s3.v1.tag.<key>=…          object tags, key percent-encoded
//   s3.v1.directory-marker=true   on a directory: a zero-byte `dir/` object existed
// Percent-encoding is encodeURIComponent's (so `=`, `/`, `:` and `%` never appear raw); decoders ignore unknown fields.

/** Prefix of every metadata xattr name of encoding version 1. */
export const XATTR_PREFIX = 's3.v1.';

/** System metadata fields kept, in name order. */
export const SYSTEM_FIELDS = [
  'content-type',
  'cache-control',
  'content-encoding',
  'content-disposition',
  'content-language',
  'expires',
  'website-redirect-location',
] as const;

/** Informational fields: recorded, never written back on restore. */
export const INFO_FIELDS = ['storage-class', 'etag', 'version-id', 'sse', 'sse-kms-key-id'] as const;

type SystemField = (typeof SYSTEM_FIELDS)[number];
type InfoField = (typeof INFO_FIELDS)[number];

/** Everything kept about one object besides its bytes. */
export interface ObjectMetadata {
  system: Partial<Record<SystemField, string>>;
  info: Partial<Record<InfoField, string>>;
  /** User metadata, names in lower case (as S3 returns them). */
  user: Record<string, string>;
  tags: Record<string, string>;
  /** A zero-byte `dir/` marker object existed (directories only). */
  marker?: boolean;
}

/** An empty metadata record. */
export function emptyMetadata(): ObjectMetadata {
  return { system: {}, info: {}, user: {}, tags: {} };
}

/** One metadata attribute: its xattr name (carrying the value) and the raw value. */
export interface MetadataAttribute {
  name: string;
  value: string;
}

function enc(text: string): string {
  return encodeURIComponent(text);
}

function dec(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** The xattr names and values of an object's metadata (encoding version 1), in a stable order. */
export function metadataToXattrs(meta: ObjectMetadata): MetadataAttribute[] {
  const out: MetadataAttribute[] = [];
  const add = (field: string, value: string): void => {
    out.push({ name: `${XATTR_PREFIX}${field}=${enc(value)}`, value });
  };
  for (const f of SYSTEM_FIELDS) {
    const v = meta.system[f];
    if (v !== undefined && v !== '') add(f, v);
  }
  for (const f of INFO_FIELDS) {
    const v = meta.info[f];
    if (v !== undefined && v !== '') add(f, v);
  }
  for (const name of Object.keys(meta.user).sort()) add(`meta.${enc(name)}`, meta.user[name] as string);
  for (const key of Object.keys(meta.tags).sort()) add(`tag.${enc(key)}`, meta.tags[key] as string);
  if (meta.marker) add('directory-marker', 'true');
  return out;
}

/** Metadata decoded from xattr names; names of other encodings or versions are returned in `ignored`. */
export function metadataFromXattrNames(names: readonly string[]): { meta: ObjectMetadata; ignored: string[] } {
  const meta = emptyMetadata();
  const ignored: string[] = [];
  for (const name of names) {
    const eq = name.indexOf('=');
    if (!name.startsWith(XATTR_PREFIX) || eq < 0) {
      ignored.push(name);
      continue;
    }
    const field = name.slice(XATTR_PREFIX.length, eq);
    const value = dec(name.slice(eq + 1));
    if (value === undefined) {
      ignored.push(name);
      continue;
    }
    if ((SYSTEM_FIELDS as readonly string[]).includes(field)) meta.system[field as SystemField] = value;
    else if ((INFO_FIELDS as readonly string[]).includes(field)) meta.info[field as InfoField] = value;
    else if (field.startsWith('meta.')) {
      const n = dec(field.slice(5));
      if (n) meta.user[n.toLowerCase()] = value;
      else ignored.push(name);
    } else if (field.startsWith('tag.')) {
      const k = dec(field.slice(4));
      if (k !== undefined && k !== '') meta.tags[k] = value;
      else ignored.push(name);
    } else if (field === 'directory-marker') meta.marker = value === 'true';
    else ignored.push(name);
  }
  return { meta, ignored };
}

/** The `x-amz-tagging` value for tags (URL query form), or undefined when there are none. */
export function taggingHeader(tags: Record<string, string>): string | undefined {
  const keys = Object.keys(tags);
  if (keys.length === 0) return undefined;
  return keys.map((k) => `${enc(k)}=${enc(tags[k] as string)}`).join('&');
}

/** Formats a modification time for `X-Amz-Meta-Mtime` as rclone does: seconds since the epoch with a fraction. */
export function formatMtime(date: Date): string {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  const frac = ms - seconds * 1000;
  return frac === 0 ? String(seconds) : `${seconds}.${String(frac).padStart(3, '0')}`;
}

/** Parses `X-Amz-Meta-Mtime` (seconds with an optional fraction, as rclone and s3cmd write it, or an ISO date). */
export function parseMtime(text: string | undefined): Date | undefined {
  if (!text) return undefined;
  const t = text.trim();
  if (/^-?\d+(?:\.\d+)?$/.test(t)) {
    const ms = Math.round(Number(t) * 1000);
    return Number.isFinite(ms) ? new Date(ms) : undefined;
  }
  const d = Date.parse(t);
  return Number.isNaN(d) ? undefined : new Date(d);
}

// ---------------------------------------------------------------------------------------------------------------
// Content-Type guesses for objects restored from snapshots that did not come from S3.

const MIME: Readonly<Record<string, string>> = {
  txt: 'text/plain; charset=utf-8',
  log: 'text/plain; charset=utf-8',
  md: 'text/markdown; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  tsv: 'text/tab-separated-values; charset=utf-8',
  html: 'text/html; charset=utf-8',
  htm: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  mjs: 'text/javascript; charset=utf-8',
  json: 'application/json',
  xml: 'application/xml',
  yaml: 'application/yaml',
  yml: 'application/yaml',
  ics: 'text/calendar; charset=utf-8',
  vcf: 'text/vcard; charset=utf-8',
  eml: 'message/rfc822',
  pdf: 'application/pdf',
  zip: 'application/zip',
  gz: 'application/gzip',
  tgz: 'application/gzip',
  bz2: 'application/x-bzip2',
  xz: 'application/x-xz',
  zst: 'application/zstd',
  tar: 'application/x-tar',
  '7z': 'application/x-7z-compressed',
  rar: 'application/vnd.rar',
  wasm: 'application/wasm',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  heic: 'image/heic',
  svg: 'image/svg+xml',
  ico: 'image/vnd.microsoft.icon',
  bmp: 'image/bmp',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  mp3: 'audio/mpeg',
  m4a: 'audio/mp4',
  ogg: 'audio/ogg',
  opus: 'audio/opus',
  flac: 'audio/flac',
  wav: 'audio/wav',
  mp4: 'video/mp4',
  m4v: 'video/mp4',
  mov: 'video/quicktime',
  webm: 'video/webm',
  mkv: 'video/x-matroska',
  avi: 'video/x-msvideo',
  woff: 'font/woff',
  woff2: 'font/woff2',
  ttf: 'font/ttf',
  otf: 'font/otf',
  doc: 'application/msword',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xls: 'application/vnd.ms-excel',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  ppt: 'application/vnd.ms-powerpoint',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text',
  ods: 'application/vnd.oasis.opendocument.spreadsheet',
  epub: 'application/epub+zip',
  sql: 'application/sql',
  sh: 'text/x-shellscript; charset=utf-8',
  py: 'text/x-python; charset=utf-8',
  ts: 'text/plain; charset=utf-8',
  go: 'text/plain; charset=utf-8',
  c: 'text/plain; charset=utf-8',
  h: 'text/plain; charset=utf-8',
};

/** A Content-Type guessed from a key's extension, or `application/octet-stream`. */
export function guessContentType(key: string): string {
  const base = key.slice(key.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  if (dot <= 0) return 'application/octet-stream';
  return MIME[base.slice(dot + 1).toLowerCase()] ?? 'application/octet-stream';
}
