// Names OneDrive refuses, mapped to look-alike characters on the way in (as rclone does), so restores never fail on them.
// https://support.microsoft.com/office/restrictions-and-limitations-in-onedrive-and-sharepoint

/** ASCII characters OneDrive forbids in names and their full-width look-alikes. */
const REPLACEMENTS: Readonly<Record<string, string>> = {
  '"': '\uFF02',
  '*': '\uFF0A',
  ':': '\uFF1A',
  '<': '\uFF1C',
  '>': '\uFF1E',
  '?': '\uFF1F',
  '\\': '\uFF3C',
  '|': '\uFF5C',
};

/** A name OneDrive accepts for a snapshot name: forbidden characters replaced, control characters shown as symbols. */
export function driveName(name: string): string {
  let out = name.replace(/["*:<>?\\|]/g, (c) => REPLACEMENTS[c] ?? c);
  // Control characters become the Unicode "control pictures" (U+2400 + code).
  out = out.replace(/[\x00-\x1f]/g, (c) => String.fromCharCode(0x2400 + c.charCodeAt(0)));
  if (out === '.' || out === '..') out = out.replace(/\./g, '\uFF0E');
  return out;
}

/** The drive path of a snapshot path below a drive folder: each segment mapped with `driveName`. */
export function drivePathOf(base: string, snapshotPath: string): string {
  if (snapshotPath === '/') return base;
  const rel = snapshotPath
    .split('/')
    .filter((s) => s !== '')
    .map(driveName)
    .join('/');
  return base === '/' ? `/${rel}` : `${base}/${rel}`;
}
