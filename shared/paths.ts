// Snapshot path helpers: cleaning, joining, reversible segment encoding and export containment checks.
import { lstat, realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';

/** Cleans an absolute `/`-separated path the way Go's path.Clean does (no `.`/`..`, no double or trailing slash). */
export function cleanPath(path: string): string {
  const out: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return `/${out.join('/')}`;
}

/** Joins snapshot path segments under a base (segments are used as given: encode them first). */
export function joinPath(base: string, ...segments: string[]): string {
  const parts = base === '/' ? [''] : [base.replace(/\/+$/, '')];
  for (const s of segments) if (s !== '') parts.push(s);
  const joined = parts.join('/');
  return joined === '' ? '/' : joined;
}

/** Last element of a clean absolute path (`/` for the root). */
export function baseName(path: string): string {
  if (path === '/') return '/';
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Parent of a clean absolute path (`/` for top-level entries and the root). */
export function dirName(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

const EMPTY_SEGMENT = '%_';

/**
 * Encodes one name so it is a safe single path segment: `%`, `/`, control characters and DEL are
 * percent-encoded; `.` and `..` become `%2E` and `%2E%2E`; the empty name becomes `%_`. Reversible with `decodeSegment`.
 */
export function encodeSegment(name: string): string {
  if (name === '') return EMPTY_SEGMENT;
  if (name === '.') return '%2E';
  if (name === '..') return '%2E%2E';
  return name.replace(/[%/\x00-\x1f\x7f]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** Reverses `encodeSegment`. Text that is not valid encoding is returned unchanged. */
export function decodeSegment(segment: string): string {
  if (segment === EMPTY_SEGMENT) return '';
  return segment.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** Encodes a key with `/` separators (an object key, a mailbox path) into an absolute snapshot path, segment by segment. */
export function encodeKeyPath(key: string, separator = '/'): string {
  return `/${key.split(separator).map(encodeSegment).join('/')}`;
}

/** Reverses `encodeKeyPath` for the part of a snapshot path below `/`. */
export function decodeKeyPath(path: string, separator = '/'): string {
  const rel = path.replace(/^\//, '');
  if (rel === '') return '';
  return rel.split('/').map(decodeSegment).join(separator);
}

/** Why a host-provided export path is unsafe, or undefined when it is a clean absolute path. */
export function unsafePathReason(path: string): string | undefined {
  if (typeof path !== 'string' || path === '') return 'empty path';
  if (!path.startsWith('/')) return 'path is not absolute';
  if (path.includes('\0')) return 'path contains a NUL character';
  if (/[\x01-\x1f\x7f]/.test(path)) return 'path contains a control character';
  const segs = path.split('/').slice(1);
  if (path !== '/' && segs.some((s) => s === '' || s === '.' || s === '..')) return 'path is not clean (empty, "." or ".." segment)';
  if (path.includes('\\') && segs.some((s) => s.split('\\').includes('..'))) return 'path contains a backslash ".." segment';
  return undefined;
}

/** True when a `relative()` result leaves its base: `..` or `../…`, or absolute (another drive). `..hidden` stays inside. */
function escapes(rel: string): boolean {
  return rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel);
}

/**
 * Joins a clean snapshot path under a local directory and proves the result stays inside it:
 * rejects `..`, absolute escapes and any existing symlink on the way that leads outside `root`.
 */
export async function containedLocalPath(root: string, path: string): Promise<string> {
  const reason = unsafePathReason(path);
  if (reason) throw new Error(`refusing ${JSON.stringify(path)}: ${reason}`);
  const base = resolve(root);
  const target = resolve(base, `.${path}`);
  const rel = relative(base, target);
  if (escapes(rel)) throw new Error(`refusing ${JSON.stringify(path)}: it escapes the target`);
  const realBase = await realpath(base).catch(() => base);
  let cur = base;
  for (const seg of rel === '' ? [] : rel.split(sep)) {
    cur = resolve(cur, seg);
    const st = await lstat(cur).catch(() => undefined);
    if (!st) break;
    if (st.isSymbolicLink()) {
      const real = await realpath(cur).catch(() => undefined);
      const r = real === undefined ? '..' : relative(realBase, real);
      if (escapes(r)) {
        throw new Error(`refusing ${JSON.stringify(path)}: a symbolic link on the way leads outside the target`);
      }
    }
  }
  return target;
}
