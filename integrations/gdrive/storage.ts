// The gdrive storage: a Plakar repository in a Drive folder with the standard layout (CONFIG, packfiles/<2hex>/<64hex>,
// states/<2hex>/<64hex>, locks/<64hex>), resumable Puts of unknown length, ranged Gets, paged Lists.
import { Readable } from 'node:stream';
import {
  CONFIG_NAME,
  ConfigError,
  defineStorage,
  KlosetError,
  macFromName,
  macHex,
  NotFoundError,
  objectFolder,
  objectName,
  RESOURCE_DIRS,
  type Resource,
} from '../../shared/index.ts';
import { FOLDER_MIME, type DriveFile } from './api.ts';
import { DriveClient, DriveError, quoteQuery } from './client.ts';
import { parseLocation, storageOptions } from './options.ts';
import { uploadContent } from './upload.ts';

/** Folders asked for in one `('a' in parents or …)` query. */
const PARENTS_PER_QUERY = 50;

/** Lookups of one resource type after which the whole type is listed once to index it (a check or restore reads many). */
const INDEX_AFTER_MISSES = 8;

/** gRPC ALREADY_EXISTS: Create on a folder that already holds a repository. */
const ALREADY_EXISTS = 6;

interface StoredObject {
  id: string;
  size: number;
  md5?: string;
}

/** The gdrive storage. */
export const storage = defineStorage({
  options: storageOptions,
  location: {
    help: 'gdrive:///path: the folder holding the repository (created by `plakar create`), in My Drive, the shared drive named by `drive`, or below `root_folder_id`',
    examples: ['gdrive:///plakar', 'gdrive:///Backups/laptop'],
    pattern: '^gdrive://',
  },
  async init(ctx) {
    const o = ctx.options;
    const loc = parseLocation(o.location, ctx.proto);
    if (loc.segments.length === 0 && o.rootFolderId === undefined) {
      throw new ConfigError('location', `expected a folder for the repository, such as ${ctx.proto}:///plakar (the top of a drive holds other files), got ${JSON.stringify(o.location)}`);
    }
    const client = await DriveClient.connect(ctx, o, false);
    const repo = new Repository(client, loc.segments, `${o.location} (${client.start.label} of ${client.email})`, o.chunkSize);
    const scope = o.rootFolderId ? `/folders/${o.rootFolderId}` : client.start.driveId ? `/drives/${client.start.driveId}` : '';
    return {
      origin: `drive.google.com/${client.email}${scope}`,
      root: loc.path,
      create: (config) => repo.create(config),
      open: () => repo.open(),
      mode: async () => 6,
      size: async () => -1,
      list: (resource) => repo.list(resource),
      put: (resource, mac, content) => repo.put(resource, mac, content),
      get: (resource, mac, range) => repo.get(resource, mac, range),
      delete: (resource, mac) => repo.delete(resource, mac),
      readAhead: { fetch: (resource, mac) => repo.get(resource, mac, undefined) },
      async ping() {
        await client.call('ping Google Drive', () => client.api.about.get({ fields: 'user(emailAddress)' }, client.mo()));
      },
      async close() {
        client.close();
      },
    };
  },
});

/** The repository folder and its object index. */
class Repository {
  private readonly client: DriveClient;
  private readonly segments: readonly string[];
  private readonly label: string;
  private readonly chunkSize: number;
  /** Folder ids by path relative to the repository (`''` is the repository), oldest first. */
  private readonly folders = new Map<string, Promise<string[]>>();
  /** Folders this process created: nothing else can be in them yet, so Puts skip the existence check. */
  private readonly fresh = new Set<string>();
  /** Known objects by relative name. */
  private readonly objects = new Map<string, StoredObject>();
  /** Older copies of names that List found stored twice (racing processes), removed by the next Put of the name. */
  private readonly extras = new Map<string, string[]>();
  /** One Put at a time per object name (a second Put of the same name replaces the first). */
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Index misses per resource type, and the one listing that indexes a type. */
  private readonly misses = new Map<Resource, number>();
  private readonly indexing = new Map<Resource, Promise<void>>();

  constructor(client: DriveClient, segments: readonly string[], label: string, chunkSize: number) {
    this.client = client;
    this.segments = segments;
    this.label = label;
    this.chunkSize = chunkSize;
  }

  /**
   * Ids of the folder at `rel`, oldest first (several when concurrent processes each created one; objects are written
   * to the oldest, which every process picks alike); created when asked. `refresh` asks Drive again, for this folder
   * and its parents, instead of answering from what this process remembers (another process may have created some).
   */
  private folder(rel: string, create: boolean, refresh = false): Promise<string[]> {
    const cached = this.folders.get(rel);
    if (cached && !(refresh && rel !== '')) return cached;
    const p = (async (): Promise<string[]> => {
      if (rel === '') {
        const found = await this.client.resolveFolder(this.client.start.id, this.segments, create, this.client.start.label);
        if (!found) return [];
        if (found.created) this.fresh.add('');
        return [found.id];
      }
      const parentRel = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
      const name = rel.slice(rel.lastIndexOf('/') + 1);
      const parents = await this.folder(parentRel, create, refresh);
      if (parents.length === 0) return [];
      const what = `look up folder ${rel} of the repository at ${this.label}`;
      const find = async (): Promise<string[]> => {
        const found: DriveFile[] = [];
        for (const pid of parents) found.push(...(await this.client.children(pid, what, { name, foldersOnly: true, fields: 'id,createdTime' })));
        return oldestFirst(found).map((f) => f.id as string);
      };
      let ids = this.fresh.has(parentRel) && !refresh ? [] : await find();
      if (ids.length === 0 && create) {
        const f = await this.client.createFolder(parents[0] as string, name, `create folder ${rel} of the repository at ${this.label}`);
        // Another process may have created the same folder meanwhile: list again and use the oldest, as it will.
        ids = await find();
        if (!ids.includes(f.id as string)) ids.push(f.id as string);
        if (ids[0] === f.id && ids.length === 1) this.fresh.add(rel);
        else this.fresh.delete(rel);
      }
      return ids;
    })();
    this.folders.set(rel, p);
    // Only positive answers are kept: a folder another process creates later must still be found.
    p.then(
      (ids) => {
        if (ids.length === 0 && this.folders.get(rel) === p) this.folders.delete(rel);
      },
      () => {
        if (this.folders.get(rel) === p) this.folders.delete(rel);
      },
    );
    return p;
  }

  async create(config: Buffer): Promise<void> {
    const ids = await this.folder('', true);
    const repoId = ids[0] as string;
    const existing = await this.client.children(repoId, `look for a repository at ${this.label}`, { name: CONFIG_NAME, fields: 'id' });
    if (existing.length > 0) throw new KlosetError(`cannot create a repository at ${this.label}: one already exists there (it holds a CONFIG file)`, ALREADY_EXISTS);
    await uploadContent(
      this.client,
      { parentId: repoId, name: CONFIG_NAME, mediaType: 'application/octet-stream', size: config.length, what: `store the repository configuration at ${this.label}` },
      Readable.from([config]),
      this.chunkSize,
    );
  }

  async open(): Promise<Buffer> {
    const ids = await this.folder('', false);
    if (ids.length === 0) throw new NotFoundError(`no repository at ${this.label}: the folder does not exist`);
    const found = await this.client.children(ids[0] as string, `open the repository at ${this.label}`, { name: CONFIG_NAME, fields: 'id,size,md5Checksum,modifiedTime' });
    const config = newest(found);
    if (!config?.id) throw new NotFoundError(`no repository at ${this.label}: the folder holds no CONFIG file`);
    const parts: Buffer[] = [];
    for await (const c of this.client.download({ id: config.id, size: Number(config.size ?? -1), md5: config.md5Checksum ?? undefined }, `read the repository configuration at ${this.label}`)) {
      parts.push(c as Buffer);
    }
    return Buffer.concat(parts);
  }

  /**
   * Every copy of an object (normally one), newest first; cached unless `refresh` is asked. With `confirm`, a miss is
   * looked up again with the folders asked afresh from Drive before the object is called missing: another process (the
   * command and its cache daemon) may have stored it in folders this process has not seen.
   */
  private async lookup(resource: Resource, mac: Buffer, what: string, refresh = false, confirm = false): Promise<StoredObject[]> {
    const out = await this.lookupOnce(resource, mac, what, refresh, false);
    if (out.length > 0 || !confirm) return out;
    return this.lookupOnce(resource, mac, what, true, true);
  }

  private async lookupOnce(resource: Resource, mac: Buffer, what: string, refresh: boolean, refreshFolders: boolean): Promise<StoredObject[]> {
    const name = objectName(resource, mac);
    // Locks are rewritten in place by other processes: never trust a remembered size or checksum for them.
    if (resource === 'lock') refresh = true;
    const cached = this.objects.get(name);
    if (cached && !refresh) return [cached];
    if (!refresh) {
      // Many lookups of one type (a restore, a check): one paged listing indexes them all at 1000 per request.
      const misses = (this.misses.get(resource) ?? 0) + 1;
      this.misses.set(resource, misses);
      if (misses >= INDEX_AFTER_MISSES) {
        await this.index(resource);
        const found = this.objects.get(name);
        if (found) return [found];
      }
    }
    const parents = await this.folder(objectFolder(resource, mac), false, refreshFolders);
    if (parents.length === 0) return [];
    const q = `name = ${quoteQuery(macHex(mac))} and trashed = false and (${parents.map((p) => `${quoteQuery(p)} in parents`).join(' or ')})`;
    const found: DriveFile[] = [];
    for await (const page of this.client.listPages(q, what, { fields: 'id,size,md5Checksum,modifiedTime,createdTime' })) found.push(...page);
    found.sort((a, b) => Date.parse(b.modifiedTime ?? '') - Date.parse(a.modifiedTime ?? '') || (b.createdTime ?? '').localeCompare(a.createdTime ?? ''));
    const out = found.filter((f) => f.id).map((f) => ({ id: f.id as string, size: Number(f.size ?? -1), md5: f.md5Checksum ?? undefined }));
    if (out[0]) this.objects.set(name, out[0]);
    return out;
  }

  /** Lists `resource` once to fill the index (errors are left to the lookups that follow). */
  private index(resource: Resource): Promise<void> {
    let p = this.indexing.get(resource);
    if (!p) {
      p = (async () => {
        for await (const _ of this.list(resource)) {
          // list() records every object it meets
        }
      })().catch((err: unknown) => this.client.log.debug('indexing the repository failed', { resource, cause: String(err) }));
      this.indexing.set(resource, p);
    }
    return p;
  }

  async put(resource: Resource, mac: Buffer, content: Readable): Promise<number> {
    const name = objectName(resource, mac);
    const previous = this.locks.get(name) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(async () => {
      const folderRel = objectFolder(resource, mac);
      const parents = await this.folder(folderRel, true);
      const what = `store ${resource} ${macHex(mac)} at ${this.label}`;
      const copies = this.fresh.has(folderRel) ? [this.objects.get(name)].filter((o) => o !== undefined) : await this.lookup(resource, mac, what);
      const existing = copies[0];
      const result = await uploadContent(
        this.client,
        { parentId: parents[0] as string, fileId: existing?.id, name: macHex(mac), mediaType: 'application/octet-stream', what },
        content,
        this.chunkSize,
      );
      this.objects.set(name, { id: result.file.id as string, size: result.size, md5: result.md5 });
      // Copies left by processes that stored the same name at the same time: the one just written replaces them all.
      const older = new Set([...copies.slice(1).map((c) => c.id), ...(this.extras.get(name) ?? [])]);
      this.extras.delete(name);
      older.delete(result.file.id as string);
      for (const id of older) {
        await this.client.delete(id, `${what}: remove an older copy`).catch((err: unknown) => {
          if (!(err instanceof DriveError && err.httpStatus === 404)) throw err;
        });
      }
      return result.size;
    });
    this.locks.set(name, run);
    void run.finally(() => {
      if (this.locks.get(name) === run) this.locks.delete(name);
    }).catch(() => undefined);
    return run;
  }

  async get(resource: Resource, mac: Buffer, range: { offset: number; length: number } | undefined): Promise<Readable> {
    const what = `read ${resource} ${macHex(mac)} at ${this.label}`;
    const obj = (await this.lookup(resource, mac, what, false, true))[0];
    if (!obj) throw new NotFoundError(`${resource} ${macHex(mac)} not found at ${this.label}`);
    const source = this.client.download(obj, what, range);
    const name = objectName(resource, mac);
    const forget = (): void => {
      this.objects.delete(name);
    };
    const label = this.label;
    // An object deleted by another process since it was indexed answers 404: report it as missing.
    async function* guarded(): AsyncGenerator<Buffer> {
      try {
        for await (const c of source) yield c as Buffer;
      } catch (err) {
        if (err instanceof DriveError && err.httpStatus === 404) {
          forget();
          throw new NotFoundError(`${resource} ${macHex(mac)} not found at ${label}`);
        }
        throw err;
      }
    }
    return Readable.from(guarded(), { objectMode: false });
  }

  async delete(resource: Resource, mac: Buffer): Promise<void> {
    const what = `delete ${resource} ${macHex(mac)} at ${this.label}`;
    const copies = await this.lookup(resource, mac, what, true, true);
    if (copies.length === 0) throw new NotFoundError(`${resource} ${macHex(mac)} not found at ${this.label}`);
    for (const c of copies) {
      try {
        await this.client.delete(c.id, what);
      } catch (err) {
        if (!(err instanceof DriveError && err.httpStatus === 404)) throw err;
      }
    }
    this.objects.delete(objectName(resource, mac));
    this.extras.delete(objectName(resource, mac));
  }

  /** Every MAC of `resource`: pages through the fan-out folders, 50 per query; foreign names are skipped. */
  async *list(resource: Resource): AsyncGenerator<Buffer> {
    const { dir, fanout } = RESOURCE_DIRS[resource];
    // Always asked afresh: another process may have created folders (even a second copy of this one) since.
    const top = await this.folder(dir, false, true);
    if (top.length === 0) return;
    const what = `list the ${resource}s at ${this.label}`;
    const folderNames = new Map<string, string>();
    if (fanout) {
      const subfolders: DriveFile[] = [];
      for (const t of top) {
        for await (const page of this.client.listPages(`${quoteQuery(t)} in parents and trashed = false and mimeType = ${quoteQuery(FOLDER_MIME)}`, what, { fields: 'id,name,createdTime' })) {
          subfolders.push(...page.filter((f) => f.id && /^[0-9a-f]{2}$/.test(f.name ?? '')));
        }
      }
      for (const f of oldestFirst(subfolders)) folderNames.set(f.id as string, `${dir}/${f.name}`);
    } else {
      for (const t of top) folderNames.set(t, dir);
    }
    const ids = [...folderNames.keys()];
    if (fanout) {
      // Remember the fan-out folders as Drive has them now (oldest first), so the lookups that follow do not look them
      // up one by one.
      const byName = new Map<string, string[]>();
      for (const [id, rel] of folderNames) byName.set(rel, [...(byName.get(rel) ?? []), id]);
      for (const [rel, found] of byName) this.folders.set(rel, Promise.resolve(found));
    }
    // A name stored twice (two processes writing it at once) is one object, read from its newest copy.
    const seen = new Map<string, number>();
    for (let i = 0; i < ids.length; i += PARENTS_PER_QUERY) {
      const batch = ids.slice(i, i + PARENTS_PER_QUERY);
      const q = `(${batch.map((id) => `${quoteQuery(id)} in parents`).join(' or ')}) and trashed = false`;
      for await (const page of this.client.listPages(q, what, { fields: 'id,name,mimeType,parents,size,md5Checksum,modifiedTime' })) {
        for (const f of page) {
          if (f.mimeType === FOLDER_MIME || !f.id) continue;
          const folder = folderNames.get(f.parents?.[0] ?? '');
          if (!folder) continue;
          const rel = `${folder}/${f.name ?? ''}`;
          const mac = macFromName(resource, rel);
          if (!mac) {
            this.client.log.debug('skipping a foreign file in the repository', { name: rel });
            continue;
          }
          const time = Date.parse(f.modifiedTime ?? '') || 0;
          const before = seen.get(rel);
          if (before !== undefined) {
            const kept = this.objects.get(rel);
            const older = before >= time ? f.id : kept?.id;
            if (older) this.extras.set(rel, [...(this.extras.get(rel) ?? []), older]);
            if (before >= time) continue;
          }
          seen.set(rel, time);
          this.objects.set(rel, { id: f.id, size: Number(f.size ?? -1), md5: f.md5Checksum ?? undefined });
          if (before === undefined) yield mac;
        }
      }
    }
  }
}

/** The newest of several same-named files. */
function newest(files: DriveFile[]): DriveFile | undefined {
  return [...files].sort((a, b) => Date.parse(b.modifiedTime ?? '') - Date.parse(a.modifiedTime ?? ''))[0];
}

/** Folders oldest first, ties broken by id: every process orders the copies of a folder alike. */
function oldestFirst(files: DriveFile[]): DriveFile[] {
  return files.filter((f) => f.id).sort((a, b) => (a.createdTime ?? '').localeCompare(b.createdTime ?? '') || (a.id as string).localeCompare(b.id as string));
}
