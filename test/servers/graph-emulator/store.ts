// The emulator's drives: in-memory item metadata, file contents in a private temp folder, hashes, paths, quota.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { QuickXorHash } from '../../../integrations/onedrive/quickxorhash.ts';

/** Characters OneDrive refuses in names (https://support.microsoft.com/office/restrictions-and-limitations-in-onedrive-and-sharepoint). */
const INVALID_NAME = /["*:<>?/\\|\x00-\x1f]/;

/** A Graph-shaped failure raised by the store and turned into an error response by the server. */
export class GraphFault extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Kinds of drive. */
export type DriveType = 'personal' | 'business' | 'documentLibrary';

/** One item of a drive. */
export interface EmuItem {
  id: string;
  driveId: string;
  name: string;
  parentId: string | undefined;
  kind: 'root' | 'folder' | 'file' | 'package';
  packageType?: string;
  size: number;
  /** File content on disk. */
  blob?: string;
  hashes?: { quickXorHash: string; sha1Hash: string; sha256Hash: string };
  mimeType?: string;
  created: string;
  modified: string;
  fsCreated: string;
  fsModified: string;
  version: number;
  /** Change counter for delta. */
  seq: number;
  /** A shared item from another drive (remoteItem facet). */
  remote?: { driveId: string; id: string };
  malware?: boolean;
}

/** A drive. */
export interface EmuDrive {
  id: string;
  driveType: DriveType;
  owner: string;
  quotaTotal: number;
  rootId: string;
  items: Map<string, EmuItem>;
  /** parent id → lower-cased name → child id (OneDrive names are case-insensitive). */
  children: Map<string, Map<string, string>>;
  /** Deleted items for incremental delta: id → seq of deletion (and the item's last shape). */
  tombstones: Map<string, { seq: number; item: EmuItem }>;
}

/** OneDrive keeps client times to the second. */
export function toSeconds(iso: string | Date): string {
  const d = typeof iso === 'string' ? new Date(iso) : iso;
  if (Number.isNaN(d.getTime())) throw new GraphFault(400, 'invalidRequest', `invalid date ${String(iso)}`);
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Hashes of a file on disk: quickXorHash (base64), SHA-1 and SHA-256 (upper-case hex, as OneDrive reports them). */
export async function hashFile(path: string): Promise<{ size: number; quickXorHash: string; sha1Hash: string; sha256Hash: string }> {
  const q = new QuickXorHash();
  const s1 = createHash('sha1');
  const s256 = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    const b = chunk as Buffer;
    q.update(b);
    s1.update(b);
    s256.update(b);
    size += b.length;
  }
  return { size, quickXorHash: q.digestBase64(), sha1Hash: s1.digest('hex').toUpperCase(), sha256Hash: s256.digest('hex').toUpperCase() };
}

/** Every drive, item and blob of the emulator. */
export class DriveStore {
  readonly dir: string;
  readonly drives = new Map<string, EmuDrive>();
  private seq = 0;
  private blobCounter = 0;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The next change sequence number. */
  nextSeq(): number {
    return ++this.seq;
  }

  /** The current change sequence number. */
  get currentSeq(): number {
    return this.seq;
  }

  /** A new blob path in the private folder. */
  newBlobPath(): string {
    return join(this.dir, `blob-${++this.blobCounter}-${randomBytes(4).toString('hex')}`);
  }

  /** Creates a drive with an empty root folder. */
  createDrive(o: { id?: string; driveType?: DriveType; owner?: string; quotaTotal?: number } = {}): EmuDrive {
    const driveType = o.driveType ?? 'personal';
    const id = o.id ?? (driveType === 'personal' ? randomBytes(8).toString('hex').toUpperCase() : `b!${randomBytes(24).toString('base64url')}`);
    const now = toSeconds(new Date());
    const rootId = this.newId(id, driveType);
    const drive: EmuDrive = {
      id,
      driveType,
      owner: o.owner ?? 'Test User',
      quotaTotal: o.quotaTotal ?? 1024 ** 4,
      rootId,
      items: new Map(),
      children: new Map(),
      tombstones: new Map(),
    };
    drive.items.set(rootId, {
      id: rootId,
      driveId: id,
      name: 'root',
      parentId: undefined,
      kind: 'root',
      size: 0,
      created: now,
      modified: now,
      fsCreated: now,
      fsModified: now,
      version: 1,
      seq: this.nextSeq(),
    });
    drive.children.set(rootId, new Map());
    this.drives.set(id, drive);
    return drive;
  }

  private newId(driveId: string, type: DriveType): string {
    return type === 'personal' ? `${driveId}!${randomBytes(6).toString('hex').toUpperCase()}` : `01${randomBytes(16).toString('hex').toUpperCase()}`;
  }

  /** The drive `id`, or a 404 fault. */
  drive(id: string): EmuDrive {
    const d = this.drives.get(id);
    if (!d) throw new GraphFault(404, 'itemNotFound', 'The resource could not be found.');
    return d;
  }

  /** Item `id` of `drive`, or a 404 fault. */
  item(drive: EmuDrive, id: string): EmuItem {
    const it = drive.items.get(id);
    if (!it) throw new GraphFault(404, 'itemNotFound', 'The resource could not be found.');
    return it;
  }

  /** The child of `parent` named `name` (case-insensitive), if any. */
  child(drive: EmuDrive, parent: EmuItem, name: string): EmuItem | undefined {
    const id = drive.children.get(parent.id)?.get(name.toLowerCase());
    return id ? drive.items.get(id) : undefined;
  }

  /** Children of a folder in creation order. */
  childrenOf(drive: EmuDrive, parent: EmuItem): EmuItem[] {
    const ids = drive.children.get(parent.id);
    return ids ? [...ids.values()].map((id) => drive.items.get(id) as EmuItem) : [];
  }

  /** Walks `segments` (decoded names) from `base`; undefined when one is missing. */
  resolve(drive: EmuDrive, base: EmuItem, segments: readonly string[]): EmuItem | undefined {
    let cur: EmuItem | undefined = base;
    for (const seg of segments) {
      if (!cur) return undefined;
      if (seg === '' || seg === '.') continue;
      cur = this.child(drive, cur, seg);
    }
    return cur;
  }

  /** The path of an item from the root (`/a/b`; `/` for the root). */
  pathOf(drive: EmuDrive, item: EmuItem): string {
    const names: string[] = [];
    let cur: EmuItem | undefined = item;
    while (cur && cur.kind !== 'root') {
      names.unshift(cur.name);
      cur = cur.parentId ? drive.items.get(cur.parentId) : undefined;
    }
    return `/${names.join('/')}`;
  }

  /** Whether `item` is `ancestor` or below it. */
  isWithin(drive: EmuDrive, item: EmuItem, ancestor: EmuItem): boolean {
    let cur: EmuItem | undefined = item;
    while (cur) {
      if (cur.id === ancestor.id) return true;
      cur = cur.parentId ? drive.items.get(cur.parentId) : undefined;
    }
    return false;
  }

  /** Checks a name the way OneDrive does. */
  checkName(name: unknown): string {
    if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || INVALID_NAME.test(name) || name.length > 400) {
      throw new GraphFault(400, 'invalidRequest', 'The provided name cannot contain any illegal characters.');
    }
    return name;
  }

  /** Bytes used by files of a drive. */
  used(drive: EmuDrive): number {
    let total = 0;
    for (const it of drive.items.values()) if (it.kind === 'file') total += it.size;
    return total;
  }

  /** Total size of files at or below `item`. */
  treeSize(drive: EmuDrive, item: EmuItem): number {
    if (item.kind === 'file') return item.size;
    let total = 0;
    for (const c of this.childrenOf(drive, item)) total += this.treeSize(drive, c);
    return total;
  }

  private attach(drive: EmuDrive, parent: EmuItem, item: EmuItem): void {
    drive.items.set(item.id, item);
    let map = drive.children.get(parent.id);
    if (!map) {
      map = new Map();
      drive.children.set(parent.id, map);
    }
    map.set(item.name.toLowerCase(), item.id);
    if (item.kind !== 'file') drive.children.set(item.id, drive.children.get(item.id) ?? new Map());
    this.touch(drive, parent);
  }

  private touch(_drive: EmuDrive, item: EmuItem): void {
    item.modified = toSeconds(new Date());
    item.seq = this.nextSeq();
  }

  /** A free name for `rename`: `name 1.ext`, `name 2.ext`… */
  freeName(drive: EmuDrive, parent: EmuItem, name: string): string {
    const dot = name.lastIndexOf('.');
    const stem = dot > 0 ? name.slice(0, dot) : name;
    const ext = dot > 0 ? name.slice(dot) : '';
    for (let n = 1; ; n++) {
      const candidate = `${stem} ${n}${ext}`;
      if (!this.child(drive, parent, candidate)) return candidate;
    }
  }

  /** Creates a folder (or package) under `parent`, applying the conflict behaviour. */
  createFolder(
    drive: EmuDrive,
    parent: EmuItem,
    rawName: unknown,
    conflict: string = 'fail',
    extra: { packageType?: string; fsCreated?: string; fsModified?: string } = {},
  ): { item: EmuItem; created: boolean } {
    if (parent.kind === 'file') throw new GraphFault(400, 'invalidRequest', 'The parent is not a folder.');
    let name = this.checkName(rawName);
    const existing = this.child(drive, parent, name);
    if (existing) {
      if (conflict === 'rename') name = this.freeName(drive, parent, name);
      else if (conflict === 'replace') this.remove(drive, existing);
      else throw new GraphFault(409, 'nameAlreadyExists', 'The specified item name already exists.');
    }
    const now = toSeconds(new Date());
    const item: EmuItem = {
      id: this.newId(drive.id, drive.driveType),
      driveId: drive.id,
      name,
      parentId: parent.id,
      kind: extra.packageType ? 'package' : 'folder',
      packageType: extra.packageType,
      size: 0,
      created: now,
      modified: now,
      fsCreated: extra.fsCreated ? toSeconds(extra.fsCreated) : now,
      fsModified: extra.fsModified ? toSeconds(extra.fsModified) : now,
      version: 1,
      seq: this.nextSeq(),
    };
    this.attach(drive, parent, item);
    return { item, created: true };
  }

  /**
   * Stores the content at `blob` (a file this store now owns) as file `name` in `parent`, replacing, renaming or
   * failing on a name clash; checks the quota.
   */
  async putFile(
    drive: EmuDrive,
    parent: EmuItem,
    rawName: unknown,
    blob: string,
    o: { conflict?: string; fsCreated?: string; fsModified?: string; target?: EmuItem; hashes?: { size: number; quickXorHash: string; sha1Hash: string; sha256Hash: string } } = {},
  ): Promise<{ item: EmuItem; created: boolean }> {
    const h = o.hashes ?? (await hashFile(blob));
    let target = o.target;
    let name = target ? target.name : this.checkName(rawName);
    if (!target) {
      const existing = this.child(drive, parent, name);
      if (existing) {
        const conflict = o.conflict ?? 'replace';
        if (conflict === 'fail') {
          await rm(blob, { force: true });
          throw new GraphFault(409, 'nameAlreadyExists', 'The specified item name already exists.');
        }
        if (conflict === 'rename') name = this.freeName(drive, parent, name);
        else if (existing.kind !== 'file') {
          await rm(blob, { force: true });
          throw new GraphFault(409, 'nameAlreadyExists', 'A folder with the specified name already exists.');
        } else target = existing;
      }
    }
    const oldSize = target?.size ?? 0;
    if (this.used(drive) - oldSize + h.size > drive.quotaTotal) {
      await rm(blob, { force: true });
      throw new GraphFault(507, 'quotaLimitReached', 'Insufficient Space Available');
    }
    const now = toSeconds(new Date());
    if (target) {
      if (target.blob) await rm(target.blob, { force: true });
      target.blob = blob;
      target.size = h.size;
      target.hashes = { quickXorHash: h.quickXorHash, sha1Hash: h.sha1Hash, sha256Hash: h.sha256Hash };
      target.version++;
      target.modified = now;
      target.fsModified = o.fsModified ? toSeconds(o.fsModified) : now;
      if (o.fsCreated) target.fsCreated = toSeconds(o.fsCreated);
      target.seq = this.nextSeq();
      return { item: target, created: false };
    }
    const item: EmuItem = {
      id: this.newId(drive.id, drive.driveType),
      driveId: drive.id,
      name,
      parentId: parent.id,
      kind: 'file',
      size: h.size,
      blob,
      hashes: { quickXorHash: h.quickXorHash, sha1Hash: h.sha1Hash, sha256Hash: h.sha256Hash },
      mimeType: 'application/octet-stream',
      created: now,
      modified: now,
      fsCreated: o.fsCreated ? toSeconds(o.fsCreated) : now,
      fsModified: o.fsModified ? toSeconds(o.fsModified) : now,
      version: 1,
      seq: this.nextSeq(),
    };
    this.attach(drive, parent, item);
    return { item, created: true };
  }

  /** Deletes an item and everything below it. */
  remove(drive: EmuDrive, item: EmuItem): void {
    if (item.kind === 'root') throw new GraphFault(403, 'accessDenied', 'The root cannot be deleted.');
    for (const c of this.childrenOf(drive, item)) this.remove(drive, c);
    if (item.blob) void rm(item.blob, { force: true });
    drive.items.delete(item.id);
    drive.children.delete(item.id);
    if (item.parentId) {
      drive.children.get(item.parentId)?.delete(item.name.toLowerCase());
      const parent = drive.items.get(item.parentId);
      if (parent) this.touch(drive, parent);
    }
    drive.tombstones.set(item.id, { seq: this.nextSeq(), item });
  }

  /** Renames or moves an item and sets its fileSystemInfo (PATCH). */
  patch(drive: EmuDrive, item: EmuItem, body: Record<string, unknown>): EmuItem {
    const fsi = body.fileSystemInfo as { createdDateTime?: string; lastModifiedDateTime?: string } | undefined;
    if (fsi?.createdDateTime) item.fsCreated = toSeconds(fsi.createdDateTime);
    if (fsi?.lastModifiedDateTime) item.fsModified = toSeconds(fsi.lastModifiedDateTime);
    const newParentId = (body.parentReference as { id?: string } | undefined)?.id;
    const newName = body.name === undefined ? item.name : this.checkName(body.name);
    if (newName !== item.name || (newParentId && newParentId !== item.parentId)) {
      if (item.kind === 'root') throw new GraphFault(400, 'invalidRequest', 'The root cannot be renamed.');
      const parent = this.item(drive, newParentId ?? (item.parentId as string));
      const clash = this.child(drive, parent, newName);
      if (clash && clash.id !== item.id) throw new GraphFault(409, 'nameAlreadyExists', 'The specified item name already exists.');
      drive.children.get(item.parentId as string)?.delete(item.name.toLowerCase());
      item.name = newName;
      item.parentId = parent.id;
      drive.children.get(parent.id)?.set(newName.toLowerCase(), item.id);
    }
    item.modified = toSeconds(new Date());
    item.seq = this.nextSeq();
    return item;
  }

  /** Test helper: the folder at `path`, created with its parents. */
  mkdirp(drive: EmuDrive, path: string, o: { mtime?: Date } = {}): EmuItem {
    let cur = this.item(drive, drive.rootId);
    for (const seg of path.split('/').filter(Boolean)) {
      const next = this.child(drive, cur, seg);
      cur = next ?? this.createFolder(drive, cur, seg, 'fail', o.mtime ? { fsModified: o.mtime.toISOString(), fsCreated: o.mtime.toISOString() } : {}).item;
    }
    return cur;
  }

  /** Test helper: writes a file at `path` (parents created) with optional client mtime. */
  async writeFile(drive: EmuDrive, path: string, content: Uint8Array | string, o: { mtime?: Date; localFile?: string } = {}): Promise<EmuItem> {
    const segs = path.split('/').filter(Boolean);
    const name = segs.pop() as string;
    const parent = this.mkdirp(drive, segs.join('/'));
    const blob = this.newBlobPath();
    if (o.localFile) await copyFile(o.localFile, blob);
    else await writeFile(blob, content);
    const mtime = o.mtime?.toISOString();
    const { item } = await this.putFile(drive, parent, name, blob, { conflict: 'replace', fsModified: mtime, fsCreated: mtime });
    return item;
  }

  /** Makes sure the blob folder exists. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** Bytes of a blob on disk (for tests). */
  async blobSize(item: EmuItem): Promise<number> {
    return item.blob ? (await stat(item.blob)).size : 0;
  }
}
