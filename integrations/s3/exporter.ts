// S3 exporter: restores files as objects under the destination prefix, with their metadata, tags and mtime.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  AuthError,
  defineExporter,
  describeError,
  FatalError,
  ItemError,
  NotFoundError,
  type ExportEntry,
} from '../../shared/index.ts';
import { S3, socketsFor } from './client.ts';
import {
  escapesPrefix,
  formatMtime,
  guessContentType,
  metadataFromXattrNames,
  parseMtime,
  pathToKey,
  taggingHeader,
  XATTR_PREFIX,
  type ObjectMetadata,
} from './map.ts';
import { checkCombinations, exporterOptions, locationSpec, parseLocation } from './options.ts';
import { PartPool, uploadStream, type ObjectHeaders } from './upload.ts';

/** True when a record carries s3 metadata attributes, i.e. it was made by the s3 importer. */
function isFromS3(entry: ExportEntry): boolean {
  return entry.xattrNames.some((n) => n.startsWith(XATTR_PREFIX));
}

/** The X-Amz-Meta-Mtime to write: the recorded text when it names the same instant (kept byte for byte), else ours. */
function mtimeText(recorded: string | undefined, mtime: Date): string {
  const parsed = parseMtime(recorded);
  return recorded !== undefined && parsed !== undefined && parsed.getTime() === mtime.getTime() ? recorded : formatMtime(mtime);
}

/** S3's limit on key length, in UTF-8 bytes. */
const MAX_KEY_BYTES = 1024;

/** The s3 exporter. */
export const exporter = defineExporter({
  options: exporterOptions,
  location: locationSpec,
  async init(ctx) {
    const o = ctx.options;
    checkCombinations(o);
    const loc = parseLocation(o, ctx.proto);
    const parallel = ctx.host?.maxConcurrency ?? 4;
    const s3 = new S3(ctx, { location: loc, options: o, maxSockets: socketsFor(parallel * o.uploadConcurrency) });
    await s3.ensureBucket();
    const pool = new PartPool(o.partSize, Math.max(2, o.uploadConcurrency * 2));
    const upload = { partSize: o.partSize, cutoff: o.uploadCutoff, concurrency: o.uploadConcurrency, contentMD5: o.contentMd5 };
    let warnedForeign = false;

    /** Whether an earlier record of this restore came from the s3 importer (its paths are encoded keys). */
    let sawS3 = false;

    /**
     * The destination key of a restored path; throws ItemError for paths that would leave the prefix. Paths of records
     * made by the s3 importer (they carry s3.v1 attributes) are encoded keys and are decoded; other snapshots' paths
     * (a filesystem backup) are used as they are, so `100%20.txt` stays `100%20.txt`.
     */
    const keyOf = (entry: ExportEntry, fromS3: boolean): string => {
      const rel = fromS3 ? pathToKey(entry.path) : entry.path.replace(/^\//, '');
      if (escapesPrefix(rel)) {
        throw new ItemError(entry.path, `refusing to restore ${JSON.stringify(entry.path)}: its key ${JSON.stringify(rel)} would escape ${loc.display}`);
      }
      const key = s3.key(rel);
      if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
        throw new ItemError(entry.path, `cannot restore ${JSON.stringify(entry.path)}: the key is longer than S3's ${MAX_KEY_BYTES} bytes`);
      }
      return key;
    };

    /** Object headers from the record's metadata names (the snapshot may come from S3 or from a filesystem). */
    const headersOf = (entry: ExportEntry, key: string, meta: ObjectMetadata, fallbackType: string): ObjectHeaders => {
      const sys = meta.system;
      const expires = sys.expires ? new Date(sys.expires) : undefined;
      return {
        ContentType: sys['content-type'] ?? fallbackType,
        CacheControl: sys['cache-control'],
        ContentEncoding: sys['content-encoding'],
        ContentDisposition: sys['content-disposition'],
        ContentLanguage: sys['content-language'],
        Expires: expires && !Number.isNaN(expires.getTime()) ? expires : undefined,
        WebsiteRedirectLocation: sys['website-redirect-location'],
        Metadata: { ...meta.user, mtime: mtimeText(meta.user['mtime'], entry.mtime) },
        Tagging: taggingHeader(meta.tags),
        StorageClass: o.storageClass,
        ServerSideEncryption: o.sse,
        SSEKMSKeyId: o.sseKmsKeyId,
      };
    };

    const metadataOf = (entry: ExportEntry): ObjectMetadata => {
      const { meta, ignored } = metadataFromXattrNames(entry.xattrNames);
      if (ignored.length > 0 && !warnedForeign) {
        warnedForeign = true;
        ctx.log.debug('extended attributes that are not s3 metadata are not restored', { path: entry.path, example: ignored[0] });
      }
      return meta;
    };

    /** Credential failures and a vanished bucket stop the restore; anything else fails this item only. */
    const failure = (entry: ExportEntry, err: unknown): Error => {
      if (err instanceof AuthError || (err instanceof NotFoundError && /NoSuchBucket/.test(err.message))) {
        return new FatalError(describeError(err), { cause: err, code: err.code });
      }
      return err instanceof ItemError ? err : new ItemError(entry.path, err);
    };

    return {
      origin: `${loc.host}/${loc.bucket}`,
      root: `/${loc.prefix.replace(/\/$/, '')}`,

      async write(entry, content) {
        const fromS3 = isFromS3(entry);
        if (fromS3) sawS3 = true;
        let key: string;
        try {
          key = keyOf(entry, fromS3);
          if (entry.path === '/') throw new ItemError(entry.path, 'a file cannot be restored as the destination prefix itself');
        } catch (err) {
          content.resume();
          throw err;
        }
        const meta = metadataOf(entry);
        try {
          await uploadStream(s3, key, content, headersOf(entry, key, meta, guessContentType(key)), upload, pool, entry.size);
        } catch (err) {
          throw failure(entry, err);
        }
      },

      async mkdir(entry) {
        const meta = metadataOf(entry);
        if (!meta.marker && !o.directoryMarkers) return;
        let key: string;
        if (entry.path === '/') {
          // The restore target itself: only a marker the snapshot recorded, and only below the bucket root.
          if (!meta.marker || loc.prefix === '') return;
          key = loc.prefix;
        } else {
          key = `${keyOf(entry, meta.marker === true || sawS3)}/`;
        }
        try {
          await s3.call(`cannot write ${s3.url(key)}`, (abortSignal) =>
            s3.client.send(
              new PutObjectCommand({
                Bucket: s3.bucket,
                Key: key,
                Body: Buffer.alloc(0),
                ContentLength: 0,
                ContentMD5: '1B2M2Y8AsgTpgAmY7PhCfg==',
                ...headersOf(entry, key, meta, 'application/x-directory'),
                ...s3.ssec,
                ...s3.payer,
              }),
              { abortSignal },
            ),
          );
        } catch (err) {
          throw failure(entry, err);
        }
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
