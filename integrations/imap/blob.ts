// The message format of repository blobs (compatible with the official imap storage) and the rules that split and index them.

/** Header naming a blob stored whole in one message: its MAC in hex, or `config` (the official format). */
export const MAC_HEADER = 'X-Plakar-Mac';
/** Header naming the blob a part belongs to (split blobs only: the official connector does not see them). */
export const PART_OF_HEADER = 'X-Plakar-Part-Of';
/** Random id shared by the parts written by one Put. */
export const PUT_HEADER = 'X-Plakar-Put';
/** 0-based index of a part. */
export const PART_HEADER = 'X-Plakar-Part';
/** Offset of a part's bytes in the blob. */
export const OFFSET_HEADER = 'X-Plakar-Offset';
/** Decoded bytes carried by this message. */
export const SIZE_HEADER = 'X-Plakar-Size';
/** On the last part only: how many parts the blob has; its presence commits the blob. */
export const PARTS_HEADER = 'X-Plakar-Parts';
/** On the last part only: the blob's total size. */
export const TOTAL_HEADER = 'X-Plakar-Total';

/** Every header the index reads (one `BODY.PEEK[HEADER.FIELDS (…)]` per message). */
export const INDEX_HEADERS = [MAC_HEADER, PART_OF_HEADER, PUT_HEADER, PART_HEADER, OFFSET_HEADER, SIZE_HEADER, PARTS_HEADER, TOTAL_HEADER];

/** The name the configuration blob is stored under (official). */
export const CONFIG_KEY = 'config';

/** Leaf mailbox of each resource, under the root (official names). */
export const RESOURCE_MAILBOXES = {
  packfile: 'packfile',
  state: 'state',
  lock: 'lock',
  'ecc-packfile': 'eccpackfile',
  'ecc-state': 'eccstate',
} as const;

/** Leaf mailbox holding the configuration (official). */
export const CONFIG_MAILBOX = 'config';

/** base64 characters per line (then CRLF), as the official writer wraps them. */
export const LINE_CHARS = 76;
/** Encoded bytes per full line, CRLF included. */
export const LINE_BYTES = LINE_CHARS + 2;
/** Decoded bytes per full line. */
export const LINE_DATA = (LINE_CHARS / 4) * 3;

/** Room kept for headers when sizing parts. */
const HEADER_BUDGET = 1024;

/** Decoded bytes that fit in one message of at most `maxMessageSize` bytes. */
export function partCapacity(maxMessageSize: number): number {
  return Math.max(1, Math.floor((maxMessageSize - HEADER_BUDGET) / LINE_BYTES)) * LINE_DATA;
}

/** Headers of one blob message. */
export interface BlobHeaders {
  resource: string;
  /** Hex MAC, or `config`. */
  name: string;
  /** Decoded bytes in this message. */
  size: number;
  /** Present for a part of a split blob. */
  split?: { put: string; index: number; offset: number; last?: { parts: number; total: number } };
}

/** Builds a blob message: headers (MAC first, as the official writer), then base64 wrapped at 76 columns with CRLF. */
export function buildBlobMessage(h: BlobHeaders, data: Buffer): Buffer {
  const lines: string[] = [];
  if (h.split) {
    lines.push(`${PART_OF_HEADER}: ${h.name}`, `${PUT_HEADER}: ${h.split.put}`, `${PART_HEADER}: ${h.split.index}`, `${OFFSET_HEADER}: ${h.split.offset}`);
    if (h.split.last) lines.push(`${PARTS_HEADER}: ${h.split.last.parts}`, `${TOTAL_HEADER}: ${h.split.last.total}`);
  } else {
    lines.push(`${MAC_HEADER}: ${h.name}`);
  }
  lines.push(
    `${SIZE_HEADER}: ${h.size}`,
    `Subject: plakar ${h.resource} ${h.name}${h.split ? ` part ${h.split.index}` : ''}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    'MIME-Version: 1.0',
    'Content-Type: application/octet-stream',
    'Content-Transfer-Encoding: base64',
    '',
    '',
  );
  const head = Buffer.from(lines.join('\r\n'), 'latin1');
  const b64 = data.toString('base64');
  const fullLines = Math.floor(b64.length / LINE_CHARS);
  const rest = b64.length - fullLines * LINE_CHARS;
  const bodyLength = fullLines * LINE_BYTES + (rest > 0 ? rest + 2 : 0);
  const out = Buffer.allocUnsafe(head.length + bodyLength);
  head.copy(out, 0);
  let pos = head.length;
  for (let i = 0; i < b64.length; i += LINE_CHARS) {
    pos += out.write(b64.slice(i, i + LINE_CHARS), pos, 'latin1');
    out[pos++] = 13;
    out[pos++] = 10;
  }
  return out;
}

/** The encoded window `[start, end)` of the body text that holds decoded bytes `[from, to)`, and where they begin in it. */
export function encodedWindow(from: number, to: number): { start: number; end: number; skip: number } {
  const line = Math.floor(from / LINE_DATA);
  const group = Math.floor((from % LINE_DATA) / 3);
  const start = line * LINE_BYTES + group * 4;
  const skip = from - (line * LINE_DATA + group * 3);
  const last = Math.max(from, to - 1);
  const endLine = Math.floor(last / LINE_DATA);
  const endGroup = Math.floor((last % LINE_DATA) / 3);
  return { start, end: endLine * LINE_BYTES + (endGroup + 1) * 4, skip };
}

/**
 * Decodes an encoded window that starts at text offset `start`, checking it has the layout this format
 * promises (CRLF exactly every 78 bytes, base64 elsewhere, whitespace only at the very end). Returns
 * undefined when it does not (the server re-encoded the message): the caller then decodes the whole text.
 */
export function decodeWindow(window: Buffer, start: number): Buffer | undefined {
  const clean = Buffer.allocUnsafe(window.length);
  let n = 0;
  let tail = false;
  for (let i = 0; i < window.length; i++) {
    const c = window[i] as number;
    const col = (start + i) % LINE_BYTES;
    if (c === 13 || c === 10 || c === 32 || c === 9) {
      if (col === LINE_CHARS && c === 13) continue;
      if (col === LINE_CHARS + 1 && c === 10) continue;
      tail = true;
      continue;
    }
    if (tail) return undefined;
    if (col >= LINE_CHARS) return undefined;
    const ok = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47 || c === 61;
    if (!ok) return undefined;
    clean[n++] = c;
  }
  if (n % 4 !== 0) return undefined;
  return Buffer.from(clean.subarray(0, n).toString('latin1'), 'base64');
}

/** Decodes a whole body text leniently (any line length): the fallback for messages re-encoded by a server. */
export function decodeText(text: Buffer): Buffer {
  return Buffer.from(text.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
}

/** Parsed index headers of one message. */
export interface BlobRow {
  uid: number;
  /** Whole blob: its name (hex MAC or `config`). */
  mac?: string;
  /** Part: the blob's name. */
  partOf?: string;
  put?: string;
  part?: number;
  offset?: number;
  /** Decoded size (undefined for messages written by the official connector). */
  size?: number;
  parts?: number;
  total?: number;
}

/** Reads the index headers of one message (a `HEADER.FIELDS` block); undefined when it is not a blob. */
export function parseBlobRow(uid: number, headerBlock: Buffer | string | undefined): BlobRow | undefined {
  if (!headerBlock) return undefined;
  const text = (typeof headerBlock === 'string' ? headerBlock : headerBlock.toString('latin1')).replace(/\r?\n[ \t]+/g, ' ');
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim().toLowerCase();
    if (!fields.has(key)) fields.set(key, line.slice(colon + 1).trim());
  }
  const int = (k: string): number | undefined => {
    const v = fields.get(k.toLowerCase());
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  const mac = fields.get(MAC_HEADER.toLowerCase());
  const partOf = fields.get(PART_OF_HEADER.toLowerCase());
  if (mac) return { uid, mac: mac.toLowerCase() === CONFIG_KEY ? CONFIG_KEY : mac.toLowerCase(), size: int(SIZE_HEADER) };
  if (partOf) {
    const row: BlobRow = {
      uid,
      partOf: partOf.toLowerCase(),
      put: fields.get(PUT_HEADER.toLowerCase()) ?? '',
      part: int(PART_HEADER),
      offset: int(OFFSET_HEADER),
      size: int(SIZE_HEADER),
      parts: int(PARTS_HEADER),
      total: int(TOTAL_HEADER),
    };
    if (row.part === undefined || row.offset === undefined || row.size === undefined) return undefined;
    return row;
  }
  return undefined;
}

/** One stored version of a blob. */
export interface BlobVersion {
  /** The UID that committed it (the whole message, or the last part): the newest version wins. */
  commit: number;
  /** Decoded total, when known. */
  size: number | undefined;
  /** Messages holding the data, in order, with the decoded range each one covers. */
  parts: Array<{ uid: number; offset: number; size: number | undefined }>;
}

/**
 * The current version of one blob from all its messages, and the UIDs no longer needed (older versions,
 * duplicates left by retried APPENDs, parts of Puts that never committed).
 */
export function resolveBlob(rows: readonly BlobRow[]): { current: BlobVersion | undefined; garbage: number[] } {
  const versions: BlobVersion[] = [];
  for (const r of rows) if (r.mac !== undefined) versions.push({ commit: r.uid, size: r.size, parts: [{ uid: r.uid, offset: 0, size: r.size }] });
  const byPut = new Map<string, BlobRow[]>();
  for (const r of rows) {
    if (r.partOf === undefined) continue;
    const list = byPut.get(r.put ?? '') ?? [];
    list.push(r);
    byPut.set(r.put ?? '', list);
  }
  for (const list of byPut.values()) {
    const last = list.filter((r) => r.parts !== undefined).sort((a, b) => b.uid - a.uid)[0];
    if (!last || last.parts === undefined) continue;
    const parts: BlobVersion['parts'] = [];
    let offset = 0;
    let complete = true;
    for (let i = 0; i < last.parts; i++) {
      const p = list.filter((r) => r.part === i).sort((a, b) => a.uid - b.uid)[0];
      if (!p || p.offset !== offset || p.size === undefined) {
        complete = false;
        break;
      }
      parts.push({ uid: p.uid, offset, size: p.size });
      offset += p.size;
    }
    if (complete && (last.total === undefined || last.total === offset)) versions.push({ commit: last.uid, size: offset, parts });
  }
  versions.sort((a, b) => b.commit - a.commit);
  const current = versions[0];
  const keep = new Set(current?.parts.map((p) => p.uid) ?? []);
  const garbage = rows.map((r) => r.uid).filter((u) => !keep.has(u));
  // Parts of a Put still in progress (no commit yet, newer than the current version) are not garbage.
  const inFlight = new Set<number>();
  for (const [, list] of byPut) {
    if (list.some((r) => r.parts !== undefined)) continue;
    const newest = Math.max(...list.map((r) => r.uid));
    if (!current || newest > current.commit) for (const r of list) inFlight.add(r.uid);
  }
  return { current, garbage: garbage.filter((u) => !inFlight.has(u)) };
}
