// S3 storage: a Plakar repository in a bucket, laid out exactly like the official connector, with Glacier mode and ECC resources.
import type { Readable } from 'node:stream';
import { CopyObjectCommand, DeleteObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  CONFIG_NAME,
  defineStorage,
  KlosetError,
  macFromName,
  macHex,
  NotFoundError,
  objectName,
  resourcePrefix,
  ServiceError,
  type Resource,
} from '../../shared/index.ts';
import { S3, socketsFor } from './client.ts';
import { checkCombinations, COLD_CLASSES, locationSpec, parseLocation, storageOptions } from './options.ts';
import { contentMD5, PartPool, uploadStream, type ObjectHeaders } from './upload.ts';

/** Suffix of the cold copies written in Glacier mode (the official connector's name). */
export const FROZEN_SUFFIX = '.frozen';

/** gRPC ALREADY_EXISTS. */
const ALREADY_EXISTS = 6;

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts);
}

/** The s3 storage connector. */
export const storage = defineStorage({
  options: storageOptions,
  location: locationSpec,
  async init(ctx) {
    const o = ctx.options;
    checkCombinations(o);
    const loc = parseLocation(o, ctx.proto);
    const s3 = new S3(ctx, { location: loc, options: o, maxSockets: socketsFor(o.uploadConcurrency * 2 + 4 + o.cachePrefetch) });
    const pool = new PartPool(o.partSize, Math.max(2, o.uploadConcurrency * 2));
    const upload = { partSize: o.partSize, cutoff: o.uploadCutoff, concurrency: o.uploadConcurrency, contentMD5: o.contentMd5 };
    const storageClass = o.storageClass ?? 'STANDARD';
    const glacier = COLD_CLASSES.includes(storageClass);
    const repo = loc.display;
    const sse: ObjectHeaders = { ServerSideEncryption: o.sse, SSEKMSKeyId: o.sseKmsKeyId };
    /** Headers for an object of class `cls` (no storage-class header for STANDARD unless the user asked for it). */
    const headersFor = (cls: string): ObjectHeaders => ({
      ...sse,
      ContentType: 'application/octet-stream',
      StorageClass: cls === 'STANDARD' && o.storageClass === undefined ? undefined : (cls as ObjectHeaders['StorageClass']),
    });

    const putBuffer = async (key: string, body: Buffer, cls: string, ifNoneMatch = false): Promise<void> => {
      const what = `cannot write ${s3.url(key)}`;
      const md5 = contentMD5(body, upload);
      const send = (conditional: boolean) =>
        s3.call(what, (abortSignal) =>
          s3.client.send(
            new PutObjectCommand({
              Bucket: s3.bucket,
              Key: key,
              Body: body,
              ContentLength: body.length,
              ContentMD5: md5,
              IfNoneMatch: conditional ? '*' : undefined,
              ...headersFor(cls),
              ...s3.ssec,
              ...s3.payer,
            }),
            { abortSignal },
          ),
        );
      try {
        await send(ifNoneMatch);
      } catch (err) {
        // Conditional writes are recent (2024); services without them answer NotImplemented: fall back to a plain PUT.
        if (ifNoneMatch && err instanceof ServiceError && (err.serviceCode === 'NotImplemented' || err.httpStatus === 501)) await send(false);
        else throw err;
      }
    };

    const exists = async (key: string): Promise<boolean> => {
      try {
        await s3.call(`cannot check ${s3.url(key)}`, (abortSignal) =>
          s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key, ...s3.ssec, ...s3.payer }), { abortSignal }),
        );
        return true;
      } catch (err) {
        if (err instanceof NotFoundError && !/NoSuchBucket/.test(err.message)) return false;
        throw err;
      }
    };

    const copyToFrozen = async (key: string): Promise<void> => {
      const encodedSource = `${s3.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
      await s3.call(`cannot copy ${s3.url(key)} to its ${storageClass} copy`, (abortSignal) =>
        s3.client.send(
          new CopyObjectCommand({
            Bucket: s3.bucket,
            Key: key + FROZEN_SUFFIX,
            CopySource: encodedSource,
            StorageClass: storageClass as ObjectHeaders['StorageClass'],
            MetadataDirective: 'COPY',
            ServerSideEncryption: o.sse,
            SSEKMSKeyId: o.sseKmsKeyId,
            ...s3.ssec,
            ...(s3.ssec.SSECustomerKey
              ? { CopySourceSSECustomerAlgorithm: s3.ssec.SSECustomerAlgorithm, CopySourceSSECustomerKey: s3.ssec.SSECustomerKey }
              : {}),
            ...s3.payer,
          }),
          { abortSignal },
        ),
      );
    };

    /** Streams an object, falling back to its `.frozen` copy (readable once restored from Glacier outside Plakar). */
    const download = async (resource: Resource, mac: Buffer, range?: { offset: number; length: number }): Promise<Readable> => {
      const key = s3.key(objectName(resource, mac));
      try {
        return await s3.download(key, { range });
      } catch (err) {
        if (!(err instanceof NotFoundError) || resource === 'lock' || /NoSuchBucket/.test(err.message)) throw err;
        try {
          return await s3.download(key + FROZEN_SUFFIX, { range });
        } catch (frozenErr) {
          if (frozenErr instanceof NotFoundError) throw new NotFoundError(`${resource} ${macHex(mac)} not found at ${repo}`, { cause: err });
          throw frozenErr;
        }
      }
    };

    return {
      origin: loc.host,
      root: `/${[loc.bucket, loc.prefix.replace(/\/$/, '')].filter((s) => s !== '').join('/')}`,

      async create(config) {
        await s3.ensureBucket();
        const configKey = s3.key(CONFIG_NAME);
        const already = (): KlosetError => new KlosetError(`a repository already exists at ${repo} (its CONFIG object is present)`, ALREADY_EXISTS);
        if (await exists(configKey)) throw already();
        if (glacier) await putBuffer(configKey + FROZEN_SUFFIX, config, storageClass);
        try {
          await putBuffer(configKey, config, 'STANDARD', true);
        } catch (err) {
          if (err instanceof ServiceError && (err.serviceCode === 'PreconditionFailed' || err.httpStatus === 412)) throw already();
          throw err;
        }
      },

      async open() {
        const what = `cannot open the repository at ${repo}`;
        try {
          // A quick probe first: a wrong endpoint or bad credentials fail in a second, not after a full backoff.
          await s3.probe(what);
          return await readAll(await s3.download(s3.key(CONFIG_NAME), { what }));
        } catch (err) {
          if (err instanceof NotFoundError) {
            const bucketMissing = /NoSuchBucket/.test(err.message);
            throw new NotFoundError(
              `no repository at ${repo}${bucketMissing ? `: bucket ${JSON.stringify(loc.bucket)} does not exist` : ' (no CONFIG object)'} (hint: check the location, or run plakar create)`,
              { cause: err },
            );
          }
          throw err;
        }
      },

      async mode() {
        return glacier ? 2 : 6;
      },

      async size() {
        let total = 0;
        for await (const page of s3.listPages(loc.prefix)) for (const obj of page) total += obj.size;
        return total;
      },

      async *list(resource) {
        const listPrefix = s3.key(resourcePrefix(resource));
        for await (const page of s3.listPages(listPrefix)) {
          for (const obj of page) {
            const rel = obj.key.slice(loc.prefix.length);
            const name = rel.endsWith(FROZEN_SUFFIX) ? rel.slice(0, -FROZEN_SUFFIX.length) : rel;
            const mac = macFromName(resource, name);
            if (mac) yield mac;
            else ctx.log.debug('skipping a foreign object', { key: obj.key });
          }
        }
      },

      async put(resource, mac, content, info) {
        const key = s3.key(objectName(resource, mac));
        if (resource === 'lock') return uploadStream(s3, key, content, headersFor('STANDARD'), upload, pool);
        if (!glacier) return uploadStream(s3, key, content, headersFor(storageClass), upload, pool);
        const isPackfile = resource === 'packfile' || resource === 'ecc-packfile';
        if (isPackfile && !info.hot) {
          return uploadStream(s3, key + FROZEN_SUFFIX, content, headersFor(storageClass), upload, pool);
        }
        // Hot packfiles and states stay readable in STANDARD; their cold copy is made server-side.
        const n = await uploadStream(s3, key, content, headersFor('STANDARD'), upload, pool);
        await copyToFrozen(key);
        return n;
      },

      async get(resource, mac, range) {
        return download(resource, mac, range);
      },

      readAhead: {
        async fetch(resource, mac) {
          return download(resource, mac);
        },
      },

      async delete(resource, mac) {
        const key = s3.key(objectName(resource, mac));
        const del = (k: string): Promise<unknown> =>
          s3.call(`cannot delete ${s3.url(k)}`, (abortSignal) =>
            s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: k, ...s3.payer }), { abortSignal }),
          );
        // List reports `.frozen` copies too, so both names go (S3 deletes of missing keys succeed).
        await Promise.all(resource === 'lock' ? [del(key)] : [del(key), del(key + FROZEN_SUFFIX)]);
      },

      async ping() {
        await s3.probe(`cannot reach the repository at ${repo}`);
      },

      async close() {
        // Calls may still arrive after Close (PROTOCOL.md §9): only idle sockets are released.
        s3.releaseSockets();
      },
    };
  },
});
