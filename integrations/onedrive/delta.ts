// Lists a folder tree: the delta feed (a few paged calls for the whole tree, paths rebuilt from parentReference ids),
// or, where a drive offers no delta for the folder, a children walk of several folders at once.
// https://learn.microsoft.com/graph/api/driveitem-delta
import { describeError, encodeSegment, ServiceError } from '../../shared/index.ts';
import type { DeltaPage, DriveItem } from './api.ts';
import { joinOne, OneDriveError, type GraphClient } from './client.ts';

/** One listed item with its snapshot path, or an item left out with the reason. */
export type Listed =
  | { type: 'item'; item: DriveItem; path: string }
  | { type: 'skipped'; path: string; reason: string }
  | { type: 'error'; path: string; error: unknown };

/** How to list. */
export interface ListOptions {
  mode: 'auto' | 'delta' | 'children';
  includeOneNote: boolean;
  /** Folders listed at once by the children walk. */
  concurrency: number;
}

/** A snapshot path segment for a OneDrive name (names never hold `/`; encode anyway if a service ever sends one). */
export function segmentOf(name: string): string {
  return /[/\x00-\x1f\x7f]/.test(name) || name === '.' || name === '..' || name === '' ? encodeSegment(name) : name;
}

function isFolderLike(item: DriveItem): boolean {
  return item.folder !== undefined || item.package !== undefined || item.root !== undefined;
}

/** Why an item is left out, or undefined to keep it. Folders whose reason is set are left out with everything below. */
function skipReason(item: DriveItem, o: ListOptions): string | undefined {
  if (item.package && !o.includeOneNote && (item.package.type ?? '').toLowerCase() === 'onenote') {
    return 'OneNote notebook not backed up (set include_onenote=true to back up its files)';
  }
  if (item.remoteItem) {
    return 'shared item from another drive, not backed up here (back up that drive with its own drive_id)';
  }
  if (item.malware) return `not backed up: OneDrive flagged it as malware (${item.malware.description ?? 'no details'})`;
  return undefined;
}

/** Every item at and below `root` (which lives at `rootPath` in the snapshot). */
export async function* listTree(g: GraphClient, root: DriveItem, rootPath: string, o: ListOptions): AsyncGenerator<Listed> {
  if (o.mode !== 'children') {
    const viaDelta = deltaListing(g, root, rootPath, o);
    let first: IteratorResult<Listed> | undefined;
    try {
      first = await viaDelta.next();
    } catch (err) {
      if (o.mode === 'delta' || !deltaUnavailable(err)) throw err;
      g.log.info('the drive offers no delta feed for this folder; listing it folder by folder', { cause: describeError(err) });
    }
    if (first) {
      if (!first.done) yield first.value;
      yield* viaDelta;
      return;
    }
  }
  yield* childrenListing(g, root, rootPath, o);
}

/** A first delta call that fails with a client error means "not offered here" (OneDrive for Business folders, some libraries). */
function deltaUnavailable(err: unknown): boolean {
  let cur: unknown = err;
  for (let i = 0; cur && i < 4; i++) {
    if (cur instanceof OneDriveError) {
      const s = cur.httpStatus;
      if (s === 400 || s === 403 || s === 405 || s === 501 || cur.serviceCode === 'notSupported' || cur.serviceCode === 'invalidRequest') return true;
    }
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
}

async function* deltaListing(g: GraphClient, root: DriveItem, rootPath: string, o: ListOptions): AsyncGenerator<Listed> {
  const start = root.root ? `${g.drivePath}/root/delta` : `${g.drivePath}/items/${encodeURIComponent(root.id)}/delta`;
  for (let attempt = 1; ; attempt++) {
    let emitted = 0;
    /** Folder id → snapshot path (files are never parents, so they are not kept). */
    const paths = new Map<string, string>([[root.id, rootPath]]);
    /** Folder ids left out with everything below them. */
    const skipped = new Set<string>();
    /** Parent id → items that arrived before their parent. */
    const waiting = new Map<string, DriveItem[]>();

    function* place(item: DriveItem, parentPath: string): Generator<Listed> {
      const path = joinOne(parentPath, segmentOf(item.name ?? item.id));
      const reason = skipReason(item, o);
      if (reason) {
        if (isFolderLike(item)) skipped.add(item.id);
        yield { type: 'skipped', path, reason };
        yield* drop(item.id);
        return;
      }
      yield { type: 'item', item, path };
      if (isFolderLike(item)) {
        paths.set(item.id, path);
        const children = waiting.get(item.id);
        if (children) {
          waiting.delete(item.id);
          for (const c of children) yield* place(c, path);
        }
      }
    }

    function* drop(id: string): Generator<Listed> {
      const children = waiting.get(id);
      if (!children) return;
      waiting.delete(id);
      for (const c of children) {
        if (isFolderLike(c)) {
          skipped.add(c.id);
          yield* drop(c.id);
        }
      }
    }

    try {
      for await (const page of g.pages<DriveItem>(`cannot list ${rootPath} (delta)`, start)) {
        for (const item of (page as DeltaPage).value) {
          if (item.deleted) continue;
          if (item.id === root.id) {
            emitted++;
            yield { type: 'item', item: { ...root, ...item, root: root.root }, path: rootPath };
            continue;
          }
          const parentId = item.parentReference?.id;
          if (!parentId) continue;
          if (skipped.has(parentId)) {
            if (isFolderLike(item)) {
              skipped.add(item.id);
              yield* drop(item.id);
            }
            continue;
          }
          const parentPath = paths.get(parentId);
          if (parentPath === undefined) {
            const list = waiting.get(parentId);
            if (list) list.push(item);
            else waiting.set(parentId, [item]);
            continue;
          }
          for (const l of place(item, parentPath)) {
            emitted++;
            yield l;
          }
        }
      }
    } catch (err) {
      const resync = err instanceof OneDriveError && (err.serviceCode === 'resyncRequired' || err.httpStatus === 410);
      if (resync && emitted === 0 && attempt < 3) {
        g.log.info('the delta feed asked for a resync; listing again');
        continue;
      }
      if (resync) {
        throw new OneDriveError('resyncRequired', `cannot list ${rootPath}: the drive reset its change feed during the listing (resyncRequired); run the backup again`, { cause: err });
      }
      throw err;
    }
    if (waiting.size > 0) yield* placeStragglers(g, rootPath, paths, waiting, place);
    return;
  }
}

/**
 * Items whose parent never appeared in the feed: ask Graph where each waiting parent is; keep those inside the tree.
 */
async function* placeStragglers(
  g: GraphClient,
  rootPath: string,
  paths: Map<string, string>,
  waiting: Map<string, DriveItem[]>,
  place: (item: DriveItem, parentPath: string) => Generator<Listed>,
): AsyncGenerator<Listed> {
  for (const parentId of [...waiting.keys()]) {
    const children = waiting.get(parentId);
    if (!children) continue;
    waiting.delete(parentId);
    let parentPath = paths.get(parentId);
    if (parentPath === undefined) {
      try {
        const parent = await g.request<DriveItem>(`cannot look up folder ${parentId}`, 'GET', `${g.drivePath}/items/${encodeURIComponent(parentId)}`);
        const refPath = parent.parentReference?.path?.replace(/^\/drives?\/[^/]*\/?root:|^\/drive\/root:/, '') ?? '';
        const full = joinOne(refPath === '' ? '/' : decodeURIComponentSafe(refPath), parent.name ?? parentId);
        if (rootPath === '/' || full === rootPath || full.startsWith(`${rootPath}/`)) parentPath = full;
      } catch (err) {
        g.log.debug('cannot place items whose folder was not listed', { parentId, cause: describeError(err) });
      }
    }
    if (parentPath === undefined) continue;
    paths.set(parentId, parentPath);
    for (const c of children) yield* place(c, parentPath);
  }
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

async function* childrenListing(g: GraphClient, root: DriveItem, rootPath: string, o: ListOptions): AsyncGenerator<Listed> {
  yield { type: 'item', item: root, path: rootPath };
  const queue: Array<{ id: string; path: string }> = [{ id: root.id, path: rootPath }];
  type Listing = { key: number; path: string; items: DriveItem[]; error?: unknown };
  const running = new Map<number, Promise<Listing>>();
  let next = 0;
  const listFolder = async (key: number, id: string, path: string): Promise<Listing> => {
    const items: DriveItem[] = [];
    try {
      for await (const page of g.children(id, `cannot list folder ${path}`)) items.push(...page);
    } catch (err) {
      // Auth and quota problems, and a root that cannot be listed, end the run; anything else is this folder's own error.
      if (!(err instanceof ServiceError) || key === 0) throw err;
      return { key, path, items: [], error: err };
    }
    return { key, path, items };
  };
  while (queue.length > 0 || running.size > 0) {
    while (queue.length > 0 && running.size < Math.max(1, o.concurrency)) {
      const f = queue.shift() as { id: string; path: string };
      const key = next++;
      running.set(key, listFolder(key, f.id, f.path));
    }
    const done = await Promise.race(running.values());
    running.delete(done.key);
    if (done.error !== undefined) {
      yield { type: 'error', path: done.path, error: done.error };
      continue;
    }
    for (const item of done.items) {
      const path = joinOne(done.path, segmentOf(item.name ?? item.id));
      const reason = skipReason(item, o);
      if (reason) {
        yield { type: 'skipped', path, reason };
        continue;
      }
      yield { type: 'item', item, path };
      if (isFolderLike(item)) queue.push({ id: item.id, path });
    }
  }
}
