// The gdrive importer: lists the tree in pages of 1000 with only the needed fields, builds paths from parents, streams
// records as soon as their path is known, exports Google documents, follows or links shortcuts.
import type { Readable } from 'node:stream';
import { ConfigError, defineImporter, ItemError, joinPath, type ImportItem } from '../../shared/index.ts';
import { FILE_FIELDS, FOLDER_MIME, XATTR_ID, XATTR_MD5, XATTR_MIME, type DriveFile, type ExportFormat } from './api.ts';
import { DriveClient, DriveError, folderNotFound, quoteQuery } from './client.ts';
import { byId, exportChoice, exportedName, kindOf, relativeLink, segmentOf, SiblingNames } from './map.ts';
import { exportExtensions, importerOptions, parseLocation } from './options.ts';

/** Folders asked for in one `('a' in parents or 'b' in parents …)` query when walking a subtree. */
const PARENTS_PER_QUERY = 50;

/** Extra fields of the listings (the shared-with-me view needs to know what was shared directly). */
const LIST_FIELDS = `${FILE_FIELDS},sharedWithMeTime,ownedByMe`;

/** The gdrive importer. */
export const importer = defineImporter({
  options: importerOptions,
  location: {
    help: 'gdrive://[/path]: a folder of My Drive, of the shared drive named by `drive`, or below `root_folder_id` (`gdrive://` is the whole drive)',
    examples: ['gdrive://', 'gdrive:///Documents/Work'],
    pattern: '^gdrive://',
  },
  async init(ctx) {
    const o = ctx.options;
    const loc = parseLocation(o.location, ctx.proto);
    const client = await DriveClient.connect(ctx, o, true);
    const formats = exportChoice(exportExtensions(o.exportFormats));
    let base: { id: string; mtime?: Date } | undefined;
    if (o.sharedWithMe) {
      if (loc.segments.length > 0) {
        throw new ConfigError('location', 'shared_with_me backs up the whole "Shared with me" view: use gdrive:// as the location');
      }
    } else {
      const found = await client.resolveFolder(client.start.id, loc.segments, false, client.start.label);
      if (!found) throw folderNotFound(client, loc.path);
      const meta = await client.get(found.id, 'id,modifiedTime', `look up ${JSON.stringify(loc.path)}`);
      base = { id: found.id, mtime: meta.modifiedTime ? new Date(meta.modifiedTime) : undefined };
    }
    const scope = o.sharedWithMe
      ? '/shared-with-me'
      : o.rootFolderId
        ? `/folders/${o.rootFolderId}`
        : client.start.driveId
          ? `/drives/${client.start.driveId}`
          : '';
    return {
      origin: `drive.google.com/${client.email}${scope}`,
      root: loc.path,
      async *records(signal: AbortSignal): AsyncIterable<ImportItem> {
        const walker = new Walker(client, {
          formats,
          skipGdocs: o.skipGdocs,
          shortcuts: o.shortcuts,
          rootKey: base?.id ?? 'shared-with-me',
          rootPath: loc.path,
          sharedWithMe: o.sharedWithMe,
        });
        yield { type: 'dir', path: loc.path, mtime: base?.mtime };
        let pages: AsyncIterable<DriveFile[]>;
        if (o.sharedWithMe) pages = sharedWithMePages(client);
        else if (loc.segments.length === 0 && !o.rootFolderId) pages = client.listPages('trashed = false', `list ${client.start.label}`, { orderBy: 'createdTime', fields: LIST_FIELDS });
        else pages = subtreePages(client, [base?.id as string], `list ${JSON.stringify(loc.path)}`);
        yield* walker.consume(pages, signal);
        yield* walker.finishShortcuts(signal, new Set(base ? [base.id] : []));
        walker.report();
      },
      async ping() {
        await client.call('ping Google Drive', () => client.api.about.get({ fields: 'user(emailAddress)' }, client.mo()));
      },
      async close() {
        client.close();
      },
    };
  },
});

/** The items of folders `roots` and everything below them, a level at a time, each query ordered by creation time. */
async function* subtreePages(client: DriveClient, roots: string[], what: string): AsyncGenerator<DriveFile[]> {
  const queue = [...roots];
  while (queue.length > 0) {
    const batch = queue.splice(0, PARENTS_PER_QUERY);
    const q = `(${batch.map((id) => `${quoteQuery(id)} in parents`).join(' or ')}) and trashed = false`;
    for await (const page of client.listPages(q, what, { orderBy: 'createdTime', fields: LIST_FIELDS })) {
      for (const f of page) if (f.mimeType === FOLDER_MIME && f.id) queue.push(f.id);
      yield page;
    }
  }
}

/** The "Shared with me" view: the items shared directly, then the contents of the shared folders. */
async function* sharedWithMePages(client: DriveClient): AsyncGenerator<DriveFile[]> {
  const folders: string[] = [];
  for await (const page of client.listPages('sharedWithMe = true and trashed = false', 'list "Shared with me"', { orderBy: 'createdTime', fields: LIST_FIELDS })) {
    for (const f of page) if (f.mimeType === FOLDER_MIME && f.id) folders.push(f.id);
    yield page.map((f) => ({ ...f, sharedWithMeTime: f.sharedWithMeTime ?? f.createdTime ?? 'shared' }));
  }
  if (folders.length > 0) yield* subtreePages(client, folders, 'list "Shared with me"');
}

/** A listed item reduced to what records and content need (the walker may hold many). */
interface Entry {
  id: string;
  name: string;
  mimeType: string;
  parent: string | undefined;
  size: number;
  md5: string | undefined;
  mtime: Date;
  sharedWithMe: boolean;
  targetId: string | undefined;
  targetMime: string | undefined;
}

function entryOf(f: DriveFile): Entry {
  return {
    id: f.id ?? '',
    name: f.name ?? '',
    mimeType: f.mimeType ?? 'application/octet-stream',
    parent: f.parents?.[0] ?? undefined,
    size: f.size !== undefined && f.size !== null ? Number(f.size) : -1,
    md5: f.md5Checksum ?? undefined,
    mtime: new Date(f.modifiedTime ?? 0),
    sharedWithMe: Boolean(f.sharedWithMeTime) && f.ownedByMe !== true,
    targetId: f.shortcutDetails?.targetId ?? undefined,
    targetMime: f.shortcutDetails?.targetMimeType ?? undefined,
  };
}

interface WalkerOptions {
  formats: Map<string, ExportFormat>;
  skipGdocs: boolean;
  shortcuts: 'skip' | 'follow' | 'link';
  /** Key of the top folder (its Drive id, or a marker for the shared-with-me view). */
  rootKey: string;
  rootPath: string;
  sharedWithMe: boolean;
}

interface DeferredShortcut {
  entry: Entry;
  path: string;
}

/** Turns listed items into records: places each under its parent's path as soon as that path is known. */
class Walker {
  private readonly out: ImportItem[] = [];
  /** Folder id → snapshot path. */
  private readonly folders = new Map<string, string>();
  /** Items whose parent has not been placed yet, by parent id. */
  private readonly waiting = new Map<string, Entry[]>();
  private readonly names = new SiblingNames();
  /** Every placed item's path, for `shortcuts = link`. */
  private readonly paths: Map<string, string> | undefined;
  private readonly deferred: DeferredShortcut[] = [];
  private unexportable = 0;
  private dangling = 0;
  private readonly client: DriveClient;
  private readonly o: WalkerOptions;

  constructor(client: DriveClient, options: WalkerOptions) {
    this.client = client;
    this.o = options;
    this.folders.set(options.rootKey, options.rootPath);
    this.paths = options.shortcuts === 'link' ? new Map() : undefined;
  }

  /**
   * Places items page by page. Items created at the same instant are held until the time changes and then taken in
   * id order, so that same-named siblings are claimed in the same order on every run.
   */
  async *consume(pages: AsyncIterable<DriveFile[]>, signal: AbortSignal): AsyncGenerator<ImportItem> {
    let group: DriveFile[] = [];
    let groupTime: string | undefined;
    for await (const page of pages) {
      if (signal.aborted) return;
      for (const f of page) {
        if (group.length > 0 && f.createdTime !== groupTime) {
          for (const g of byId(group)) this.place(entryOf(g));
          group = [];
        }
        groupTime = f.createdTime ?? undefined;
        group.push(f);
      }
      yield* this.drain();
    }
    for (const g of byId(group)) this.place(entryOf(g));
    yield* this.drain();
  }

  private *drain(): Generator<ImportItem> {
    while (this.out.length > 0) yield this.out.shift() as ImportItem;
  }

  private place(e: Entry): void {
    if (!e.id) return;
    const parent = this.o.sharedWithMe && e.sharedWithMe ? this.o.rootKey : e.parent;
    if (parent === undefined) return;
    const parentPath = this.folders.get(parent);
    if (parentPath === undefined) {
      const list = this.waiting.get(parent);
      if (list) list.push(e);
      else this.waiting.set(parent, [e]);
      return;
    }
    // Depth-first with an explicit stack: a placed folder releases the children that arrived before it, in arrival order.
    const stack: Array<[Entry, string, string]> = [[e, parent, parentPath]];
    while (stack.length > 0) {
      const [item, key, path] = stack.pop() as [Entry, string, string];
      const placed = this.emit(item, key, path);
      if (placed === undefined) continue;
      const children = this.waiting.get(item.id);
      if (!children) continue;
      this.waiting.delete(item.id);
      for (let i = children.length - 1; i >= 0; i--) stack.push([children[i] as Entry, item.id, placed]);
    }
  }

  /** Emits one item below `parentPath`; returns the path of a placed folder (whose children may follow). */
  private emit(e: Entry, parentKey: string, parentPath: string): string | undefined {
    const kind = kindOf(e.mimeType, this.o.formats);
    switch (kind) {
      case 'unexportable':
        this.unexportable++;
        return undefined;
      case 'folder': {
        const path = joinPath(parentPath, segmentOf(this.names.claim(parentKey, e.name, e.id, true)));
        this.out.push({ type: 'dir', path, mtime: e.mtime });
        this.folders.set(e.id, path);
        this.paths?.set(e.id, path);
        return path;
      }
      case 'doc': {
        if (this.o.skipGdocs) return undefined;
        const format = this.o.formats.get(e.mimeType) as ExportFormat;
        const path = joinPath(parentPath, segmentOf(this.names.claim(parentKey, exportedName(e.name, format), e.id, false)));
        this.out.push(this.docItem(e, path, format));
        this.paths?.set(e.id, path);
        return undefined;
      }
      case 'file': {
        const path = joinPath(parentPath, segmentOf(this.names.claim(parentKey, e.name, e.id, false)));
        this.out.push(this.fileItem(e, path));
        this.paths?.set(e.id, path);
        return undefined;
      }
      case 'shortcut': {
        if (this.o.shortcuts === 'skip' || !e.targetId) return undefined;
        // The name is claimed now, in creation order like any other item; the target is resolved after the listing.
        let name = e.name;
        const targetKind = e.targetMime ? kindOf(e.targetMime, this.o.formats) : 'file';
        if (this.o.shortcuts === 'follow') {
          if (targetKind === 'unexportable' || targetKind === 'shortcut' || (targetKind === 'doc' && this.o.skipGdocs)) return undefined;
          if (targetKind === 'doc') name = exportedName(name, this.o.formats.get(e.targetMime as string) as ExportFormat);
        }
        const path = joinPath(parentPath, segmentOf(this.names.claim(parentKey, name, e.id, targetKind === 'folder')));
        this.deferred.push({ entry: e, path });
        return undefined;
      }
    }
  }

  private fileItem(e: Entry, path: string): ImportItem {
    const client = this.client;
    const file = { id: e.id, size: e.size, md5: e.md5 };
    return {
      type: 'file',
      path,
      size: e.size,
      mtime: e.mtime,
      xattrs: e.md5 ? [{ name: XATTR_MD5, value: e.md5 }] : undefined,
      open: async () => client.download(file, `download (Drive file ${e.id})`),
    };
  }

  private docItem(e: Entry, path: string, format: ExportFormat): ImportItem {
    const client = this.client;
    return {
      type: 'file',
      path,
      size: -1,
      mtime: e.mtime,
      xattrs: [
        { name: XATTR_ID, value: e.id },
        { name: XATTR_MIME, value: e.mimeType },
      ],
      open: async (): Promise<Readable> => {
        try {
          return await client.exportDoc(e.id, format.mime, `export as ${format.ext} (Google document ${e.id})`);
        } catch (err) {
          if (err instanceof DriveError && err.reason === 'exportSizeLimitExceeded') {
            throw new ItemError(
              path,
              `Google document ${JSON.stringify(e.name)} (${e.id}) is too large to be exported as ${format.ext}: Google's export limit is 10 MB (hint: add another format such as pdf to export_formats, or download it from the Drive web interface)`,
            );
          }
          throw err;
        }
      },
    };
  }

  /**
   * After the listing: `link` shortcuts become symbolic links (relative when the target was backed up), `follow`
   * shortcuts back up their target in their place (a folder's whole subtree, never into its own ancestors).
   */
  async *finishShortcuts(signal: AbortSignal, chain: Set<string>): AsyncGenerator<ImportItem> {
    for (const { entry, path } of this.deferred) {
      if (signal.aborted) return;
      const targetId = entry.targetId as string;
      if (this.o.shortcuts === 'link') {
        const targetPath = this.paths?.get(targetId);
        yield { type: 'symlink', path, target: targetPath ? relativeLink(path, targetPath) : `gdrive:${targetId}`, mtime: entry.mtime };
        continue;
      }
      let target: DriveFile;
      try {
        target = await this.client.get(targetId, `${FILE_FIELDS},trashed`, `look up the target of shortcut ${path}`);
      } catch (err) {
        if (err instanceof DriveError && (err.httpStatus === 404 || err.httpStatus === 403)) {
          this.dangling++;
          this.client.log.once('dangling-shortcut', 'info', 'skipping shortcuts whose target is gone or not shared with this account', { path });
          continue;
        }
        throw err;
      }
      if (target.trashed) {
        this.dangling++;
        continue;
      }
      const t = entryOf(target);
      const kind = kindOf(t.mimeType, this.o.formats);
      if (kind === 'folder') {
        const own = this.folders.get(t.id);
        if (chain.has(t.id) || (own !== undefined && (path === own || path.startsWith(`${own}/`)))) {
          this.client.log.once('shortcut-cycle', 'info', 'not following shortcuts to a folder that contains them (a cycle)', { path });
          continue;
        }
        yield { type: 'dir', path, mtime: t.mtime };
        const sub = new Walker(this.client, { ...this.o, rootKey: t.id, rootPath: path, sharedWithMe: false });
        yield* sub.consume(subtreePages(this.client, [t.id], `list the target of shortcut ${path}`), signal);
        yield* sub.finishShortcuts(signal, new Set([...chain, t.id]));
      } else if (kind === 'doc') {
        yield this.docItem(t, path, this.o.formats.get(t.mimeType) as ExportFormat);
      } else if (kind === 'file') {
        yield this.fileItem(t, path);
      }
    }
  }

  /** Logs what was left out (debug: per-item logging is never above debug). */
  report(): void {
    let outside = 0;
    for (const list of this.waiting.values()) outside += list.length;
    if (this.unexportable > 0) {
      this.client.log.info(`${this.unexportable} Google items with no export format (forms, sites, maps…) were skipped`);
    }
    this.client.log.debug('listing done', { outsideTheTree: outside, danglingShortcuts: this.dangling });
  }
}
