// OneDrive importer: lists a folder tree (delta feed, or children walk), streams records with fileSystemInfo times,
// and downloads each file lazily through its pre-authenticated URL, checking the hashes Graph reported.
import { ConfigError, defineImporter, NotFoundError, type ImportItem, type XattrItem } from '../../shared/index.ts';
import type { DriveItem, Hashes } from './api.ts';
import { connect, LOCATION } from './connect.ts';
import { listTree } from './delta.ts';
import { download } from './download.ts';
import { DEFAULT_LIST_CONCURRENCY, folderOf, importerOptions } from './options.ts';

/** The OneDrive importer. */
export const importer = defineImporter({
  options: importerOptions,
  location: LOCATION,
  async init(ctx) {
    const o = ctx.options;
    const folder = folderOf(o.location, ctx.proto);
    const g = await connect(ctx, 'importer');
    const root = await g.itemAt(folder, `cannot open ${folder}`);
    if (!root) throw new NotFoundError(`cannot back up ${folder}: no such folder in drive ${g.drive.id}`);
    if (root.file) throw new ConfigError('location', `${folder} is a file; give the folder that holds it`);
    const maxAttempts = o.maxRetries;
    // `plakar backup -no-xattr` (the host's noxattr): the hashes are still verified, just not recorded.
    const keepHashes = !ctx.host?.noXattr;
    return {
      // The drive ID is global and stable: it keys the parent snapshot (with the root) across runs and accounts.
      origin: g.drive.id,
      type: ctx.proto,
      root: folder,
      async *records(signal: AbortSignal): AsyncIterable<ImportItem> {
        const listing = listTree(g, root, folder, {
          mode: o.listing,
          includeOneNote: o.includeOnenote,
          concurrency: o.concurrency ?? DEFAULT_LIST_CONCURRENCY,
        });
        for await (const l of listing) {
          if (signal.aborted) return;
          if (l.type === 'skipped') yield { type: 'error', path: l.path, error: l.reason };
          else if (l.type === 'error') yield { type: 'error', path: l.path, error: l.error };
          else yield recordOf(l.item, l.path);
        }
      },
      async ping() {
        await g.request('cannot reach the drive', 'GET', g.drivePath);
      },
    };

    function recordOf(item: DriveItem, path: string): ImportItem {
      const mtime = timeOf(item);
      if (!item.file) return { type: 'dir', path, mtime, perm: 0o755 };
      const id = item.id;
      const size = typeof item.size === 'number' ? item.size : -1;
      const hashes = item.file.hashes;
      return {
        type: 'file',
        path,
        size,
        mtime,
        perm: 0o644,
        xattrs: keepHashes ? hashXattrs(hashes) : undefined,
        // Only the id, size and hashes stay with the record until the host acks it; the URL is asked for at open.
        open: () =>
          Promise.resolve(download(
            g,
            {
              resolveUrl: () => g.downloadUrl(`${g.drivePath}/items/${encodeURIComponent(id)}`, 'cannot get a download URL'),
              expect: size >= 0 ? { size, hashes } : undefined,
            },
            maxAttempts,
          )),
      };
    }
  },
});

/** Extended attributes under which OneDrive's hashes of a file are kept in the snapshot. */
export const HASH_XATTRS = {
  quickXorHash: 'user.onedrive.quickxorhash',
  sha1Hash: 'user.onedrive.sha1',
  sha256Hash: 'user.onedrive.sha256',
} as const;

/** The hashes OneDrive reported for a file, as extended attributes (the value as Graph gives it: base64 or hex). */
function hashXattrs(hashes: Hashes | undefined): XattrItem[] | undefined {
  if (!hashes) return undefined;
  const out: XattrItem[] = [];
  for (const key of ['quickXorHash', 'sha1Hash', 'sha256Hash'] as const) {
    const value = hashes[key];
    if (value) out.push({ name: HASH_XATTRS[key], value });
  }
  return out.length > 0 ? out : undefined;
}

/** The client modification time (fileSystemInfo), else the service's, else the epoch. */
function timeOf(item: DriveItem): Date {
  const t = Date.parse(item.fileSystemInfo?.lastModifiedDateTime ?? item.lastModifiedDateTime ?? '');
  return new Date(Number.isNaN(t) ? 0 : t);
}
