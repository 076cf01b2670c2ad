// OneDrive storage: a Plakar repository in a drive folder (CONFIG, packfiles/<2hex>/<64hex>, states/<2hex>/<64hex>,
// locks/<64hex>). Puts are buffered in memory up to memory_buffer and spilled to a private temp file beyond it,
// because an upload session needs the size first; Gets are ranged downloads; List skips foreign names.
import { status } from '@grpc/grpc-js';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  CONFIG_NAME,
  defineStorage,
  KlosetError,
  macFromName,
  macHex,
  NotFoundError,
  objectName,
  RESOURCE_DIRS,
  type ContentSource,
  type Resource,
} from '../../shared/index.ts';
import type { DriveItem } from './api.ts';
import { baseOf, dirOf, isNotFound, joinOne, OneDriveError } from './client.ts';
import { connect, LOCATION } from './connect.ts';
import { download } from './download.ts';
import { DEFAULT_LIST_CONCURRENCY, folderOf, storageOptions } from './options.ts';
import { BufferSource, collect, FileSource, sessionUpload, simpleUpload, type UploadSource } from './upload.ts';

/** Packfiles never change under their MAC, so their download URLs can be reused for a while. */
const URL_REUSE_MS = 5 * 60_000;
/** Download URLs kept at most (a restore reads packfiles one after the other; a few hundred recent ones suffice). */
const MAX_CACHED_URLS = 512;

/** The OneDrive storage. */
export const storage = defineStorage({
  options: storageOptions,
  location: LOCATION,
  async init(ctx) {
    const o = ctx.options;
    const base = folderOf(o.location, ctx.proto);
    const g = await connect(ctx, 'storage');
    const where = `onedrive://${base} (drive ${g.drive.id})`;
    const pathOf = (resource: Resource, mac: Buffer): string => joinOne(base, objectName(resource, mac));
    const urls = new Map<string, { url: string; size: number; at: number }>();
    let spillDir: Promise<string> | undefined;
    const spillDirectory = (): Promise<string> => (spillDir ??= mkdtemp(join(o.tempDir ?? tmpdir(), 'kloset-onedrive-')));

    /** Size and a download URL of an object (cached for packfiles); NotFoundError when missing. */
    const locate = async (resource: Resource, mac: Buffer, fresh: boolean): Promise<{ url: string; size: number; item?: DriveItem }> => {
      const path = pathOf(resource, mac);
      const cached = urls.get(path);
      if (!fresh && cached && resource === 'packfile' && Date.now() - cached.at < URL_REUSE_MS) return cached;
      const item = await g.itemAt(path, `cannot read ${resource} ${macHex(mac)}`);
      if (!item || !item.file) throw new NotFoundError(`${resource} ${macHex(mac)} not found in ${where}`);
      const url = item['@microsoft.graph.downloadUrl'] ?? (await g.downloadUrl(g.itemPath(path), `cannot read ${resource} ${macHex(mac)}`));
      const found = { url, size: item.size ?? 0, at: Date.now() };
      if (resource === 'packfile') {
        urls.delete(path);
        urls.set(path, found);
        // Oldest first (insertion order): drop what went stale, and keep the map bounded however many packfiles are read.
        for (const [k, v] of urls) {
          if (urls.size <= MAX_CACHED_URLS && Date.now() - v.at < URL_REUSE_MS) break;
          urls.delete(k);
        }
      }
      return { ...found, item };
    };

    /** A whole object, checked against its hashes. */
    const whole = async (resource: Resource, mac: Buffer): Promise<Readable> => {
      const first = await locate(resource, mac, true);
      let calls = 0;
      return download(
        g,
        {
          what: `cannot read ${resource} ${macHex(mac)}`,
          resolveUrl: async () => (calls++ === 0 ? first.url : (await locate(resource, mac, true)).url),
          expect: { size: first.size, hashes: first.item?.file?.hashes },
        },
        o.maxRetries,
      );
    };

    return {
      origin: g.drive.id,
      type: ctx.proto,
      root: base,

      async create(config) {
        const configPath = joinOne(base, CONFIG_NAME);
        if (await g.itemAt(configPath, `cannot check ${where}`)) {
          throw new KlosetError(`a repository already exists at ${where}`, status.ALREADY_EXISTS);
        }
        const folder = await g.ensureFolder(base);
        try {
          await simpleUpload(g, { itemApiPath: g.childPath(folder.id, CONFIG_NAME), conflict: 'fail', what: `cannot create the repository at ${where}` }, config);
        } catch (err) {
          if (err instanceof OneDriveError && err.httpStatus === 409) throw new KlosetError(`a repository already exists at ${where}`, status.ALREADY_EXISTS);
          throw err;
        }
        for (const r of ['packfile', 'state', 'lock'] as const) await g.ensureFolder(joinOne(base, RESOURCE_DIRS[r].dir));
      },

      async open() {
        const item = await g.itemAt(joinOne(base, CONFIG_NAME), `cannot open the repository at ${where}`);
        if (!item || !item.file) throw new NotFoundError(`no repository at ${where} (no ${CONFIG_NAME} file)`);
        const url = item['@microsoft.graph.downloadUrl'];
        let calls = 0;
        const stream = download(
          g,
          {
            what: `cannot read the repository configuration at ${where}`,
            resolveUrl: async () => (calls++ === 0 && url ? url : g.downloadUrl(g.itemPath(joinOne(base, CONFIG_NAME)), `cannot read ${CONFIG_NAME}`)),
            expect: { size: item.size ?? 0, hashes: item.file.hashes },
          },
          o.maxRetries,
        );
        const parts: Buffer[] = [];
        for await (const chunk of stream as AsyncIterable<Buffer>) parts.push(chunk);
        return Buffer.concat(parts);
      },

      mode: () => Promise.resolve(6),

      async size() {
        const item = await g.itemAt(base, `cannot measure ${where}`);
        return item?.size ?? -1;
      },

      async *list(resource) {
        const { dir, fanout } = RESOURCE_DIRS[resource];
        const dirPath = joinOne(base, dir);
        const folder = await g.itemAt(dirPath, `cannot list ${resource}s in ${where}`);
        if (!folder) return;
        g.knowFolder(dirPath, folder);
        if (!fanout) {
          for await (const page of g.children(folder.id, `cannot list ${resource}s in ${where}`)) {
            for (const item of page) {
              const mac = item.file && item.name ? macFromName(resource, `${dir}/${item.name}`) : undefined;
              if (mac) yield mac;
              else ctx.log.debug('list skipped a foreign name', { name: `${dir}/${item.name ?? ''}` });
            }
          }
          return;
        }
        const buckets: DriveItem[] = [];
        for await (const page of g.children(folder.id, `cannot list ${resource}s in ${where}`)) {
          for (const item of page) {
            if (item.folder && item.name && /^[0-9a-f]{2}$/.test(item.name)) {
              buckets.push(item);
              g.knowFolder(joinOne(dirPath, item.name), item);
            } else ctx.log.debug('list skipped a foreign name', { name: `${dir}/${item.name ?? ''}` });
          }
        }
        // Buckets are listed several at a time; each bucket's names are checked against the layout.
        const running = new Map<number, Promise<{ key: number; macs: Buffer[] }>>();
        let next = 0;
        const listBucket = async (key: number, bucket: DriveItem): Promise<{ key: number; macs: Buffer[] }> => {
          const macs: Buffer[] = [];
          for await (const page of g.children(bucket.id, `cannot list ${resource}s in ${where}`)) {
            for (const item of page) {
              const mac = item.file && item.name ? macFromName(resource, `${dir}/${bucket.name}/${item.name}`) : undefined;
              if (mac) macs.push(mac);
              else ctx.log.debug('list skipped a foreign name', { name: `${dir}/${bucket.name}/${item.name ?? ''}` });
            }
          }
          return { key, macs };
        };
        while (buckets.length > 0 || running.size > 0) {
          while (buckets.length > 0 && running.size < (o.concurrency ?? DEFAULT_LIST_CONCURRENCY)) {
            const key = next++;
            running.set(key, listBucket(key, buckets.shift() as DriveItem));
          }
          const done = await Promise.race(running.values());
          running.delete(done.key);
          yield* done.macs;
        }
      },

      async put(resource, mac, content) {
        const path = pathOf(resource, mac);
        const what = `cannot store ${resource} ${macHex(mac)} in ${where}`;
        const folder = await g.ensureFolder(dirOf(path));
        const got = await collect(content, o.memoryBuffer, spillDirectory);
        let src: UploadSource | undefined;
        try {
          const t = { itemApiPath: g.childPath(folder.id, baseOf(path)), conflict: 'replace' as const, what };
          if (got.size <= o.uploadCutoff) {
            const body = got.memory ?? (await readFile(got.file as string));
            await simpleUpload(g, t, body, got.quickXorHash);
          } else {
            src = got.memory ? new BufferSource(got.memory, got.quickXorHash) : await FileSource.open(got.file as string, got.size, got.quickXorHash);
            await sessionUpload(g, t, src, o.chunkSize);
          }
          urls.delete(path);
          return got.size;
        } finally {
          if (src instanceof FileSource) await src.close();
          if (got.file) await rm(got.file, { force: true });
        }
      },

      async get(resource, mac, range): Promise<ContentSource> {
        if (!range) return whole(resource, mac);
        const first = await locate(resource, mac, false);
        if (range.offset >= first.size) return new Uint8Array(0);
        const length = Math.min(range.length, first.size - range.offset);
        let calls = 0;
        return download(
          g,
          {
            what: `cannot read ${resource} ${macHex(mac)}`,
            resolveUrl: async () => (calls++ === 0 ? first.url : (await locate(resource, mac, true)).url),
            offset: range.offset,
            length,
          },
          o.maxRetries,
        );
      },

      async delete(resource, mac) {
        const path = pathOf(resource, mac);
        urls.delete(path);
        try {
          await g.request(`cannot delete ${resource} ${macHex(mac)} from ${where}`, 'DELETE', g.itemPath(path));
        } catch (err) {
          if (isNotFound(err)) throw new NotFoundError(`${resource} ${macHex(mac)} not found in ${where}`);
          throw err;
        }
      },

      readAhead: {
        fetch: (resource, mac) => whole(resource, mac),
      },

      async ping() {
        await g.request('cannot reach the drive', 'GET', g.drivePath);
      },

      async close() {
        if (spillDir) await rm(await spillDir, { recursive: true, force: true }).catch(() => undefined);
        spillDir = undefined;
      },
    };
  },
});
