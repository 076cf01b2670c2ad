// Go fs.FileMode bits, FileInfo construction and Timestamp conversions, as the Plakar host expects them.

/** Go fs.FileMode type bits (PROTOCOL.md §4.1); use `>>> 0` after combining, bit 31 is ModeDir. */
export const GoMode = {
  dir: 0x80000000,
  append: 0x40000000,
  exclusive: 0x20000000,
  temporary: 0x10000000,
  symlink: 0x08000000,
  device: 0x04000000,
  namedPipe: 0x02000000,
  socket: 0x01000000,
  setuid: 0x00800000,
  setgid: 0x00400000,
  charDevice: 0x00200000,
  sticky: 0x00100000,
  irregular: 0x00080000,
  perm: 0o777,
} as const;

const TYPE_MASK =
  (GoMode.dir | GoMode.symlink | GoMode.namedPipe | GoMode.socket | GoMode.device | GoMode.charDevice | GoMode.irregular) >>> 0;

/** True when a Go FileMode describes a regular file (no type bit set). */
export function isRegularMode(mode: number): boolean {
  return ((mode >>> 0) & TYPE_MASK) === 0;
}

/** True when a Go FileMode has the directory bit. */
export function isDirMode(mode: number): boolean {
  return ((mode >>> 0) & GoMode.dir) !== 0;
}

/** True when a Go FileMode has the symlink bit. */
export function isSymlinkMode(mode: number): boolean {
  return ((mode >>> 0) & GoMode.symlink) !== 0;
}

/** Converts a Unix `st_mode` (e.g. `fs.Stats.mode`) to Go FileMode bits, as Go's os.Stat does. */
export function goModeFromUnix(stMode: number): number {
  let mode = stMode & 0o777;
  switch (stMode & 0o170000) {
    case 0o040000:
      mode |= GoMode.dir;
      break;
    case 0o120000:
      mode |= GoMode.symlink;
      break;
    case 0o060000:
      mode |= GoMode.device;
      break;
    case 0o020000:
      mode |= GoMode.device | GoMode.charDevice;
      break;
    case 0o010000:
      mode |= GoMode.namedPipe;
      break;
    case 0o140000:
      mode |= GoMode.socket;
      break;
    default:
      break;
  }
  if (stMode & 0o4000) mode |= GoMode.setuid;
  if (stMode & 0o2000) mode |= GoMode.setgid;
  if (stMode & 0o1000) mode |= GoMode.sticky;
  return mode >>> 0;
}

/** The Unix permission bits (rwx plus setuid/setgid/sticky) of a Go FileMode. */
export function unixPermFromGoMode(mode: number): number {
  const m = mode >>> 0;
  let perm = m & 0o777;
  if (m & GoMode.setuid) perm |= 0o4000;
  if (m & GoMode.setgid) perm |= 0o2000;
  if (m & GoMode.sticky) perm |= 0o1000;
  return perm;
}

/** A google.protobuf.Timestamp as plain numbers. */
export interface TimestampValue {
  seconds: number;
  nanos: number;
}

/** Date → Timestamp; works before 1970 (negative seconds, non-negative nanos). */
export function timestampFromDate(date: Date): TimestampValue {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) return { seconds: 0, nanos: 0 };
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

/** A protobuf int64 as decoded by protobufjs (number, string or Long-like) → number. */
export function int64ToNumber(v: unknown): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Number(v);
  if (typeof v === 'bigint') return Number(v);
  const long = v as { low: number; high: number; unsigned?: boolean; toNumber?: () => number };
  if (typeof long.toNumber === 'function') return long.toNumber();
  return long.high * 4294967296 + (long.unsigned ? long.low >>> 0 : long.low >>> 0);
}

/** Timestamp (as decoded) → Date. An absent timestamp is the epoch, as the host reads it; Go's zero time is year 1. */
export function dateFromTimestamp(ts: { seconds?: unknown; nanos?: number | null } | null | undefined): Date {
  if (!ts) return new Date(0);
  return new Date(int64ToNumber(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1_000_000));
}

/** What an integration says about an entry; the SDK fills the rest of FileInfo. */
export interface FileInfoInput {
  name: string;
  size: number;
  mode: number;
  mtime: Date;
}

/** Builds the wire FileInfo: nlink 1, dev/ino/uid/gid 0 (so the fs exporter never hard-links API objects). */
export function fileInfo(input: FileInfoInput): Record<string, unknown> {
  return {
    name: input.name,
    size: input.size,
    mode: input.mode >>> 0,
    mod_time: timestampFromDate(input.mtime),
    dev: 0,
    ino: 0,
    uid: 0,
    gid: 0,
    nlink: 1,
    username: '',
    groupname: '',
    flags: 0,
  };
}
