// S3 importer: streams ListObjectsV2 pages into file and directory records, with metadata and tags kept as extended attributes.
import { GetObjectTaggingCommand, HeadObjectCommand, type HeadObjectCommandOutput } from '@aws-sdk/client-s3';
import {
  AuthError,
  createLimiter,
  defineImporter,
  describeError,
  NotFoundError,
  ServiceError,
  type ImportItem,
} from '../../shared/index.ts';
import { S3, socketsFor, type ListedObject } from './client.ts';
import { checkCombinations, importerOptions, locationSpec, parseLocation } from './options.ts';
import {
  ancestorsBelow,
  emptyMetadata,
  keyToPath,
  markerToPath,
  metadataToXattrs,
  parseMtime,
  prefixToPath,
  selfPath,
  type ObjectMetadata,
} from './map.ts';

/** Codes meaning tags cannot be read at all here (the service or the policy): warn once and go on without them. */
const TAGS_UNAVAILABLE = new Set(['NotImplemented', 'AccessDenied', 'Forbidden', 'MethodNotAllowed', 'NotSupported']);

/** gRPC PERMISSION_DENIED, the code of an AuthError for a refusal (as opposed to bad credentials). */
const PERMISSION_DENIED = 7;

/** One listed object with what we learnt about it. */
interface Described {
  obj: ListedObject;
  /** Zero-byte `dir/` marker. */
  marker: boolean;
  meta: ObjectMetadata;
  mtime: Date;
  /** Why the object cannot be backed up (a per-item error record). */
  error?: string;
  /** The object vanished between the listing and its HEAD: skip it. */
  gone?: boolean;
}

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function systemFrom(head: HeadObjectCommandOutput): ObjectMetadata['system'] {
  return {
    'content-type': head.ContentType,
    'cache-control': head.CacheControl,
    'content-encoding': head.ContentEncoding,
    'content-disposition': head.ContentDisposition,
    'content-language': head.ContentLanguage,
    expires: head.ExpiresString ?? (head.Expires instanceof Date && !Number.isNaN(head.Expires.getTime()) ? head.Expires.toUTCString() : undefined),
    'website-redirect-location': head.WebsiteRedirectLocation,
  };
}

/** The s3 importer. */
export const importer = defineImporter({
  options: importerOptions,
  location: locationSpec,
  async init(ctx) {
    const o = ctx.options;
    checkCombinations(o);
    const loc = parseLocation(o, ctx.proto);
    const hostConcurrency = ctx.host?.maxConcurrency ?? 4;
    const s3 = new S3(ctx, { location: loc, options: o, maxSockets: socketsFor(o.concurrency + hostConcurrency * 2) });
    await s3.probe(`cannot back up ${loc.display}`);
    const root = prefixToPath(loc.prefix);
    let tagsEnabled = o.tags !== 'never';

    const describe = async (obj: ListedObject): Promise<Described> => {
      const marker = obj.key.endsWith('/') && obj.size === 0;
      const meta = emptyMetadata();
      meta.info['storage-class'] = obj.storageClass ?? 'STANDARD';
      meta.info.etag = obj.etag?.replace(/^"|"$/g, '');
      let mtime = obj.lastModified;
      const d: Described = { obj, marker, meta, mtime };
      try {
        /** Whether the HEAD told us the object has no tags (auto mode trusts x-amz-tagging-count). */
        let untagged = false;
        if (o.metadata) {
          const head = await s3.call(s3.url(obj.key), (abortSignal) =>
            s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: obj.key, ...s3.ssec, ...s3.payer }), { abortSignal }),
          );
          meta.system = systemFrom(head);
          meta.user = { ...(head.Metadata ?? {}) };
          if (head.StorageClass) meta.info['storage-class'] = head.StorageClass;
          if (head.VersionId && head.VersionId !== 'null') meta.info['version-id'] = head.VersionId;
          if (head.ServerSideEncryption) meta.info.sse = head.ServerSideEncryption;
          if (head.SSEKMSKeyId) meta.info['sse-kms-key-id'] = head.SSEKMSKeyId;
          if (head.SSECustomerAlgorithm) meta.info.sse = `customer-${head.SSECustomerAlgorithm}`;
          mtime = parseMtime(meta.user['mtime']) ?? mtime;
          untagged = o.tags === 'auto' && !(head.TagCount && head.TagCount > 0);
        }
        if (tagsEnabled && !untagged) {
          try {
            const tagging = await s3.call(s3.url(obj.key), (abortSignal) =>
              s3.client.send(new GetObjectTaggingCommand({ Bucket: s3.bucket, Key: obj.key, ...s3.payer }), { abortSignal }),
            );
            for (const t of tagging.TagSet ?? []) if (t.Key !== undefined) meta.tags[t.Key] = t.Value ?? '';
          } catch (err) {
            const denied = err instanceof AuthError && err.code === PERMISSION_DENIED;
            const code = err instanceof ServiceError ? err.serviceCode : denied ? 'AccessDenied' : '';
            if (!TAGS_UNAVAILABLE.has(code)) throw err;
            tagsEnabled = false;
            ctx.log.warn(`object tags cannot be read here (${code}); objects are backed up without their tags`, { bucket: loc.bucket });
          }
        }
      } catch (err) {
        // Broken credentials fail the whole import; a refusal on one object is that object's error.
        if (err instanceof AuthError && err.code !== PERMISSION_DENIED) throw err;
        if (err instanceof NotFoundError && !/NoSuchBucket/.test(err.message)) d.gone = true;
        else d.error = describeError(err);
      }
      d.mtime = mtime;
      return d;
    };

    return {
      origin: `${loc.host}/${loc.bucket}`,
      root,

      async *records(signal: AbortSignal): AsyncIterable<ImportItem> {
        const limit = createLimiter(o.concurrency);
        const pages = s3.listPages(loc.prefix, signal)[Symbol.asyncIterator]();
        const nextPage = async (): Promise<Described[] | undefined> => {
          const r = await pages.next();
          if (r.done) return undefined;
          return Promise.all(r.value.map((obj) => limit(() => describe(obj))));
        };
        /** Latest mtime below each directory path; markers carry their own metadata. */
        const dirs = new Map<string, { mtime: Date; meta?: ObjectMetadata }>();
        const noteDir = (path: string, mtime: Date, meta?: ObjectMetadata): void => {
          const cur = dirs.get(path);
          if (!cur) dirs.set(path, { mtime, meta });
          else {
            if (mtime > cur.mtime) cur.mtime = mtime;
            if (meta) cur.meta = meta;
          }
        };
        /** Files whose key may still turn out to be the prefix of later keys (`a/b` before `a/b/c`). */
        let held: Described[] = [];
        let seen = 0;

        const fileItem = (d: Described, path: string): ImportItem => {
          for (const dir of ancestorsBelow(path, root)) noteDir(dir, d.mtime);
          if (root !== '/') noteDir(root, d.mtime);
          if (d.error !== undefined) return { type: 'error', path, error: d.error };
          const attrs = metadataToXattrs(d.meta);
          const key = d.obj.key;
          const etag = d.obj.etag;
          return {
            type: 'file',
            path,
            size: d.obj.size,
            mtime: d.mtime,
            perm: 0o644,
            xattrs: attrs.map((a) => ({ name: a.name, value: a.value })),
            open: () => s3.download(key, { etag, what: s3.url(key) }),
          };
        };

        let page = await nextPage();
        while (page) {
          const upcoming = nextPage();
          upcoming.catch(() => undefined);
          for (const d of page) {
            if (signal.aborted) return;
            seen++;
            const key = d.obj.key;
            // Release the held files that this key proves are (or are not) also directories.
            if (held.length > 0) {
              const keep: Described[] = [];
              for (const h of held) {
                const asDir = `${h.obj.key}/`;
                if (key.startsWith(asDir)) yield fileItem(h, selfPath(h.obj.key));
                else if (compareUtf8(key, asDir) > 0) yield fileItem(h, keyToPath(h.obj.key));
                else keep.push(h);
              }
              held = keep;
            }
            if (d.gone) {
              ctx.log.debug('object vanished during the backup', { key });
              continue;
            }
            if (d.marker) {
              const path = markerToPath(key);
              if (d.error !== undefined) {
                yield { type: 'error', path, error: d.error };
                continue;
              }
              d.meta.marker = true;
              delete d.meta.info.etag;
              noteDir(path, d.mtime, d.meta);
              for (const dir of ancestorsBelow(path, root)) noteDir(dir, d.mtime);
              continue;
            }
            held.push(d);
          }
          page = await upcoming;
        }
        for (const h of held) yield fileItem(h, keyToPath(h.obj.key));
        held = [];

        // An empty listing of a prefix that names one object: back up that object alone.
        if (seen === 0 && loc.prefix !== '') {
          const single = loc.prefix.slice(0, -1);
          try {
            const head = await s3.call(s3.url(single), (abortSignal) =>
              s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: single, ...s3.ssec, ...s3.payer }), { abortSignal }),
            );
            const d = await describe({
              key: single,
              size: head.ContentLength ?? 0,
              lastModified: head.LastModified ?? new Date(0),
              etag: head.ETag,
              storageClass: head.StorageClass,
            });
            if (!d.gone) yield fileItem(d, keyToPath(single));
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err;
          }
        }

        for (const [path, info] of dirs) {
          const attrs = info.meta ? metadataToXattrs(info.meta) : [];
          yield { type: 'dir', path, mtime: info.mtime, perm: 0o755, xattrs: attrs.map((a) => ({ name: a.name, value: a.value })) };
        }
        ctx.log.debug('listing done', { objects: seen, directories: dirs.size });
      },

      async ping() {
        await s3.probe(`cannot reach ${loc.display}`);
      },

      async close() {
        s3.releaseSockets();
      },
    };
  },
});
