// Go fs.FileMode bits as carried in FileInfo.mode, with conversions from and to Unix st_mode (PROTOCOL §4.1).

/** Go `fs.FileMode` bits; the permission bits (0o777) share the Unix layout. */
export const MODE = {
  DIR: 0x80000000,
  APPEND: 0x40000000,
  EXCLUSIVE: 0x20000000,
  TEMPORARY: 0x10000000,
  SYMLINK: 0x08000000,
  DEVICE: 0x04000000,
  NAMED_PIPE: 0x02000000,
  SOCKET: 0x01000000,
  SETUID: 0x00800000,
  SETGID: 0x00400000,
  CHAR_DEVICE: 0x00200000,
  STICKY: 0x00100000,
  IRREGULAR: 0x00080000,
  PERM: 0o777,
} as const;

/** Go `fs.ModeType`: the bits that make a mode non-regular. */
export const MODE_TYPE =
  (MODE.DIR | MODE.SYMLINK | MODE.NAMED_PIPE | MODE.SOCKET | MODE.DEVICE | MODE.CHAR_DEVICE | MODE.IRREGULAR) >>> 0;

/** Bits 9–18 are never used by Go; a Unix st_mode (e.g. 0o100644) lands there. */
const UNUSED_BITS = 0x0007fe00;

/** True when `mode` is a regular file in Go's sense (no type bit set), as `FileMode.IsRegular()`. */
export function isRegular(mode: number): boolean {
  return ((mode >>> 0) & MODE_TYPE) === 0;
}

/** True when `mode` has the directory bit. */
export function isDir(mode: number): boolean {
  return ((mode >>> 0) & MODE.DIR) !== 0;
}

/** True when `mode` has the symlink bit. */
export function isSymlink(mode: number): boolean {
  return ((mode >>> 0) & MODE.SYMLINK) !== 0;
}

/** Converts a Unix `st_mode` (Node `fs.Stats.mode`) to a Go FileMode, as Go's `os.Stat` does. */
export function goModeFromStat(stMode: number): number {
  let mode = stMode & 0o777;
  switch (stMode & 0o170000) {
    case 0o040000:
      mode |= MODE.DIR;
      break;
    case 0o120000:
      mode |= MODE.SYMLINK;
      break;
    case 0o060000:
      mode |= MODE.DEVICE;
      break;
    case 0o020000:
      mode |= MODE.DEVICE | MODE.CHAR_DEVICE;
      break;
    case 0o010000:
      mode |= MODE.NAMED_PIPE;
      break;
    case 0o140000:
      mode |= MODE.SOCKET;
      break;
    default:
      break;
  }
  if (stMode & 0o4000) mode |= MODE.SETUID;
  if (stMode & 0o2000) mode |= MODE.SETGID;
  if (stMode & 0o1000) mode |= MODE.STICKY;
  return mode >>> 0;
}

/** Converts a Go FileMode to the permission part of a Unix mode (rwx plus setuid/setgid/sticky), for chmod. */
export function chmodBitsFromGo(mode: number): number {
  let out = mode & 0o777;
  if (mode & MODE.SETUID) out |= 0o4000;
  if (mode & MODE.SETGID) out |= 0o2000;
  if (mode & MODE.STICKY) out |= 0o1000;
  return out;
}

/** Describes why `mode` is not a plausible Go FileMode, or returns undefined when it is. */
export function goModeProblem(mode: number): string | undefined {
  const m = mode >>> 0;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0xffffffff) return `mode ${mode} is not a uint32`;
  if (m & UNUSED_BITS) {
    return `mode 0x${m.toString(16)} sets bits 9-18, unused by Go FileMode (a Unix st_mode such as 0o100644?)`;
  }
  if (m & MODE.CHAR_DEVICE && !(m & MODE.DEVICE)) return `mode 0x${m.toString(16)} has CharDevice without Device`;
  const kinds = [MODE.DIR, MODE.SYMLINK, MODE.NAMED_PIPE, MODE.SOCKET, MODE.DEVICE, MODE.IRREGULAR].filter(
    (bit) => (m & bit) !== 0,
  );
  if (kinds.length > 1) return `mode 0x${m.toString(16)} combines several file types`;
  return undefined;
}

/** Formats a Go FileMode like Go's `FileMode.String()` (e.g. `drwxr-xr-x`, `-rw-r--r--`, `Lrwxrwxrwx`). */
export function formatGoMode(mode: number): string {
  const m = mode >>> 0;
  const letters = 'dalTLDpSugct?';
  let out = '';
  for (let i = 0; i < letters.length; i++) {
    if (m & (2 ** (31 - i))) out += letters[i];
  }
  if (out === '') out = '-';
  const rwx = 'rwxrwxrwx';
  for (let i = 0; i < 9; i++) out += m & (1 << (8 - i)) ? rwx[i] : '-';
  return out;
}
