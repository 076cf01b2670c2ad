// Pure mapping between IMAP and the snapshot: mailbox ↔ path, message file names (official v1.1.0 format), flags, metadata names.
import { encodeSegment } from '../../shared/index.ts';

/** System flags and the single letter each one has in a message file name (official imap v1.1.0). */
export const SYSTEM_FLAG_LETTERS: Readonly<Record<string, string>> = {
  '\\Seen': 'S',
  '\\Answered': 'A',
  '\\Flagged': 'F',
  '\\Draft': 'D',
  '\\Deleted': 'T',
};

const LETTER_FLAGS: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(SYSTEM_FLAG_LETTERS).map(([flag, letter]) => [letter, flag]),
);

/** Longest subject part of a file name, in ASCII characters (as the official connector). */
export const SUBJECT_MAX = 80;

/** Prefix of the extended-attribute names this integration writes (`imap.<key>=<value>`). */
export const XATTR_PREFIX = 'imap.';

// ---------------------------------------------------------------------------------------------
// Percent-encoding
// ---------------------------------------------------------------------------------------------

/**
 * Percent-encodes a keyword the way Go's `url.PathEscape` does (what the official connector writes),
 * and additionally encodes `-`, so the official restore, which cuts a name at its first `-`, keeps
 * hyphenated keywords whole.
 */
export function encodeKeyword(keyword: string): string {
  let out = '';
  for (const byte of Buffer.from(keyword, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9_.~$&+:=@]/.test(c)) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Decodes percent-escapes as UTF-8 bytes (Go's `url.PathUnescape`, and the SDK's `encodeSegment` output).
 * A `%` that does not start a valid escape is kept as is; `%_` alone is the empty name.
 */
export function decodePercent(text: string): string {
  if (text === '%_') return '';
  if (!text.includes('%')) return text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; ) {
    const c = text.charCodeAt(i);
    if (c === 0x25 && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 3;
      continue;
    }
    const cp = text.codePointAt(i) as number;
    const ch = String.fromCodePoint(cp);
    for (const b of Buffer.from(ch, 'utf8')) bytes.push(b);
    i += ch.length;
  }
  return Buffer.from(bytes).toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// Message file names: <UID>[,<flags>][-<subject>].eml
// ---------------------------------------------------------------------------------------------

/** The ASCII-only subject part of a file name (the official `SafeName`): `[A-Za-z0-9_.]`, others become `_`, 80 chars. */
export function safeSubject(subject: string): string {
  const trimmed = subject.trim();
  if (trimmed === '') return 'message';
  let out = '';
  for (const ch of trimmed) out += /^[A-Za-z0-9_.]$/.test(ch) ? ch : '_';
  return out.slice(0, SUBJECT_MAX);
}

/** The flag block of a file name: system letters sorted, then `{keyword}` blocks sorted; `\Recent` dropped. */
export function encodeFlags(flags: Iterable<string>): string {
  const letters: string[] = [];
  const keywords: string[] = [];
  for (const flag of flags) {
    if (flag.toLowerCase() === '\\recent') continue;
    const letter = systemLetter(flag);
    if (letter) letters.push(letter);
    else keywords.push(`{${encodeKeyword(flag)}}`);
  }
  letters.sort();
  keywords.sort();
  return [...new Set(letters)].join('') + [...new Set(keywords)].join('');
}

function systemLetter(flag: string): string | undefined {
  for (const [name, letter] of Object.entries(SYSTEM_FLAG_LETTERS)) if (name.toLowerCase() === flag.toLowerCase()) return letter;
  return undefined;
}

/** The file name of a message: `<uid>[,<flags>][-<subject>].eml`. */
export function messageFileName(uid: number, flags: Iterable<string>, subject: string | undefined): string {
  let name = String(uid);
  const block = encodeFlags(flags);
  if (block) name += `,${block}`;
  if (subject) name += `-${safeSubject(subject)}`;
  return `${name}.eml`;
}

/** What a message file name says. */
export interface ParsedName {
  /** The UID at backup time (undefined when the name does not start with digits). */
  uid: number | undefined;
  /** System flags and keywords, decoded. */
  flags: string[];
}

/**
 * Parses a message file name written by this integration or by the official one. Braces are read
 * before the subject, so a keyword containing a raw `-` (official names) is kept whole, and so is one
 * written with `%2D` (our names). Unknown letters are ignored, as the official parser does.
 */
export function parseMessageFileName(name: string): ParsedName {
  const base = name.endsWith('.eml') ? name.slice(0, -4) : name;
  const digits = /^\d+/.exec(base)?.[0];
  const flags: string[] = [];
  let i = digits ? digits.length : 0;
  if (base[i] === ',') {
    i++;
    while (i < base.length) {
      const c = base[i] as string;
      if (c === '-') break;
      if (c === '{') {
        const end = base.indexOf('}', i + 1);
        if (end < 0) break;
        flags.push(decodePercent(base.slice(i + 1, end)));
        i = end + 1;
        continue;
      }
      const flag = LETTER_FLAGS[c];
      if (flag) flags.push(flag);
      i++;
    }
  }
  return { uid: digits ? Number(digits) : undefined, flags: [...new Set(flags)] };
}

// ---------------------------------------------------------------------------------------------
// Mailboxes ↔ snapshot paths
// ---------------------------------------------------------------------------------------------

/** The segments of a mailbox name split on the server's delimiter (a flat namespace has one segment). */
export function mailboxSegments(name: string, delimiter: string | undefined): string[] {
  return delimiter ? name.split(delimiter) : [name];
}

/** The snapshot directory of a mailbox: each segment percent-encoded (`encodeSegment`), joined with `/`. */
export function mailboxToPath(name: string, delimiter: string | undefined): string {
  return `/${mailboxSegments(name, delimiter).map(encodeSegment).join('/')}`;
}

/** The decoded mailbox segments of a snapshot directory path (`/` gives none). */
export function pathSegments(path: string): string[] {
  return path
    .split('/')
    .filter((s) => s !== '')
    .map(decodePercent);
}

/**
 * A native mailbox name from decoded segments and the destination's delimiter. A segment that contains the
 * destination's delimiter cannot be one level there: the delimiter is replaced with `_` in it.
 */
export function segmentsToMailbox(segments: readonly string[], delimiter: string | undefined): string {
  if (!delimiter) return segments.join('/');
  return segments.map((s) => s.split(delimiter).join('_')).join(delimiter);
}

/** True when the segment had to change to fit the destination's delimiter. */
export function segmentNeedsRename(segment: string, delimiter: string | undefined): boolean {
  return !!delimiter && segment.includes(delimiter);
}

// ---------------------------------------------------------------------------------------------
// Mailbox selection: include / exclude patterns
// ---------------------------------------------------------------------------------------------

/**
 * Compiles a mailbox pattern (segments separated by `/`; `*` matches anything, `%` anything but `/`).
 * A pattern matches a mailbox and everything below it.
 */
export function compilePattern(pattern: string): RegExp {
  const body = pattern
    .replace(/^\/+|\/+$/g, '')
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '%' ? '[^/]*' : c.replace(/[.+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}(?:/.*)?$`, 'u');
}

/** Decides whether a mailbox (its decoded segments) is backed up under the include and exclude patterns. */
export function mailboxSelected(segments: readonly string[], include: readonly RegExp[], exclude: readonly RegExp[]): boolean {
  const name = segments.join('/');
  const candidates = [name];
  // INBOX is case-insensitive (RFC 3501 §5.1): let `inbox` and `INBOX` both match it.
  if (segments[0]?.toUpperCase() === 'INBOX') candidates.push(['INBOX', ...segments.slice(1)].join('/'), ['inbox', ...segments.slice(1)].join('/'));
  const matches = (res: readonly RegExp[]): boolean => res.some((re) => candidates.some((c) => re.test(c)));
  if (include.length > 0 && !matches(include)) return false;
  return !matches(exclude);
}

// ---------------------------------------------------------------------------------------------
// Metadata carried in extended-attribute names
// ---------------------------------------------------------------------------------------------

/**
 * Plakar v1.1 hosts give an exporter only the *names* of a record's extended attributes, never their
 * values, so every piece of metadata the restore needs is written into the name as `imap.<key>=<value>`
 * (the value of the attribute repeats it).
 */
export function metadataName(key: string, value: string): string {
  return `${XATTR_PREFIX}${key}=${value}`;
}

/** Reads `imap.<key>=<value>` names back: every value of every key. */
export function readMetadata(names: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const name of names) {
    if (!name.startsWith(XATTR_PREFIX)) continue;
    const eq = name.indexOf('=');
    if (eq < 0) continue;
    const key = name.slice(XATTR_PREFIX.length, eq);
    const list = out.get(key) ?? [];
    list.push(name.slice(eq + 1));
    out.set(key, list);
  }
  return out;
}

/** Special-use attributes that this integration carries and maps on restore (RFC 6154). */
export const SPECIAL_USES = ['\\All', '\\Archive', '\\Drafts', '\\Flagged', '\\Junk', '\\Sent', '\\Trash'] as const;

/** The RFC 6154 attribute with canonical case, or undefined. */
export function canonicalSpecialUse(value: string | undefined): string | undefined {
  if (!value) return undefined;
  return SPECIAL_USES.find((s) => s.toLowerCase() === value.toLowerCase());
}

/**
 * Special use guessed from a mailbox name, for snapshots without the attribute (made by the official
 * connector): only well-known top-level names and Gmail's `[Gmail]/…` folders.
 */
export function guessSpecialUse(segments: readonly string[]): string | undefined {
  const last = segments[segments.length - 1]?.toLowerCase();
  if (!last) return undefined;
  const gmail = segments.length === 2 && /^\[(gmail|google mail)\]$/i.test(segments[0] as string);
  if (segments.length !== 1 && !gmail) return undefined;
  const table: Record<string, string> = {
    sent: '\\Sent',
    'sent items': '\\Sent',
    'sent messages': '\\Sent',
    'sent mail': '\\Sent',
    drafts: '\\Drafts',
    draft: '\\Drafts',
    trash: '\\Trash',
    'deleted items': '\\Trash',
    'deleted messages': '\\Trash',
    bin: '\\Trash',
    junk: '\\Junk',
    spam: '\\Junk',
    'junk e-mail': '\\Junk',
    'junk email': '\\Junk',
    archive: '\\Archive',
    'all mail': '\\All',
  };
  return table[last];
}

// ---------------------------------------------------------------------------------------------
// Gmail
// ---------------------------------------------------------------------------------------------

/** The IMAP keyword-like label Gmail uses for its system labels, mapped to what a non-Gmail server has instead. */
export const GMAIL_SYSTEM_LABELS: Readonly<Record<string, string>> = {
  '\\Inbox': 'INBOX',
  '\\Sent': '\\Sent',
  '\\Draft': '\\Drafts',
  '\\Drafts': '\\Drafts',
  '\\Trash': '\\Trash',
  '\\Spam': '\\Junk',
  '\\Junk': '\\Junk',
  // Not folders: \Starred is the \Flagged flag, \Important has no equivalent.
  '\\Starred': '',
  '\\Important': '',
};

/**
 * With Gmail in `labels` mode, which mailboxes are backed up: All Mail (every message once, its labels kept
 * as metadata), plus Spam and Trash, which All Mail does not contain. Label folders (INBOX included) are skipped.
 */
export function gmailMailboxWanted(specialUse: string | undefined): boolean {
  return specialUse === '\\All' || specialUse === '\\Junk' || specialUse === '\\Trash';
}

// ---------------------------------------------------------------------------------------------
// UID sets
// ---------------------------------------------------------------------------------------------

/** A compact IMAP sequence set of ascending UIDs (`1:4,7,9:10`). */
export function uidSet(uids: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < uids.length; ) {
    const start = uids[i] as number;
    let end = start;
    while (i + 1 < uids.length && uids[i + 1] === end + 1) end = uids[++i] as number;
    parts.push(start === end ? String(start) : `${start}:${end}`);
    i++;
  }
  return parts.join(',');
}
