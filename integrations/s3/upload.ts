// Streamed uploads: one PUT up to the cutoff, else a multipart upload with bounded memory, aborted on failure. Every body
// is a Buffer, so the SDK signs its SHA-256 (x-amz-content-sha256), which the service checks; Content-MD5 on request.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { describeError, formatSize, ServiceError } from '../../shared/index.ts';
import type { S3 } from './client.ts';

/** S3's limit on the number of parts of one upload. */
export const MAX_PARTS = 10_000;

const MIB = 1024 * 1024;

/** Headers of the object being written (everything PutObject and CreateMultipartUpload share). */
export type ObjectHeaders = Pick<
  PutObjectCommandInput,
  | 'ContentType'
  | 'CacheControl'
  | 'ContentEncoding'
  | 'ContentDisposition'
  | 'ContentLanguage'
  | 'Expires'
  | 'WebsiteRedirectLocation'
  | 'Metadata'
  | 'Tagging'
  | 'StorageClass'
  | 'ServerSideEncryption'
  | 'SSEKMSKeyId'
>;

/** How uploads are cut and how many parts fly at once. */
export interface UploadSettings {
  partSize: number;
  cutoff: number;
  concurrency: number;
  /** Send Content-MD5 with each PUT and part (the SigV4 payload SHA-256 is always there). */
  contentMD5: boolean;
}

/** A counting semaphore: at most `size` holders at once. */
export class Semaphore {
  private free: number;
  private readonly waiters: Array<() => void> = [];
  private readonly size: number;
  constructor(size: number) {
    this.free = size;
    this.size = size;
  }
  /** Whether nobody holds it. */
  idle(): boolean {
    return this.free === this.size;
  }
  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}

/**
 * Part buffers shared by every upload of the process: at most `slots` part-sized buffers exist at once, reused
 * from one part to the next, so memory stays at part_size × slots however many objects are in flight.
 */
export class PartPool {
  private readonly sem: Semaphore;
  private readonly idle: Buffer[] = [];
  readonly partSize: number;
  readonly slots: number;
  constructor(partSize: number, slots: number) {
    this.partSize = partSize;
    this.slots = slots;
    this.sem = new Semaphore(slots);
  }
  async take(size: number): Promise<Buffer> {
    await this.sem.acquire();
    if (size === this.partSize) return this.idle.pop() ?? Buffer.allocUnsafeSlow(size);
    return Buffer.allocUnsafeSlow(size);
  }
  give(buf: Buffer): void {
    if (buf.length === this.partSize && this.idle.length < this.slots) this.idle.push(buf);
    this.sem.release();
    // No upload in flight for a second: let the buffers go, so an idle process does not keep part_size × slots.
    if (this.sem.idle() && !this.dropTimer) {
      this.dropTimer = setTimeout(() => {
        this.dropTimer = undefined;
        if (this.sem.idle()) this.idle.length = 0;
      }, 1000);
      this.dropTimer.unref();
    }
  }
  private dropTimer: NodeJS.Timeout | undefined;
}

/** Reads a byte stream in exact-size pieces. */
class ExactReader {
  private readonly it: AsyncIterator<Buffer>;
  /** Bytes read from the stream (or put back) and not handed out yet. */
  private pending: Buffer[] = [];
  private done = false;
  constructor(stream: Readable) {
    this.it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }
  private async nextChunk(): Promise<Buffer | undefined> {
    const queued = this.pending.shift();
    if (queued) return queued;
    while (!this.done) {
      const next = await this.it.next();
      if (next.done) {
        this.done = true;
        return undefined;
      }
      const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as Uint8Array);
      if (chunk.length > 0) return chunk;
    }
    return undefined;
  }
  /** Fills `target` from the stream; returns the bytes written (less than its length only at the end of the stream). */
  async fill(target: Buffer): Promise<number> {
    let off = 0;
    while (off < target.length) {
      const chunk = await this.nextChunk();
      if (!chunk) break;
      const n = Math.min(chunk.length, target.length - off);
      chunk.copy(target, off, 0, n);
      off += n;
      if (n < chunk.length) this.pending.unshift(chunk.subarray(n));
    }
    return off;
  }
  /** Reads up to `limit + 1` bytes as a list of chunks (small objects stay small). */
  async readUpTo(limit: number): Promise<{ chunks: Buffer[]; total: number; ended: boolean }> {
    const chunks: Buffer[] = [];
    let total = 0;
    while (total <= limit) {
      const chunk = await this.nextChunk();
      if (!chunk) return { chunks, total, ended: true };
      chunks.push(chunk);
      total += chunk.length;
    }
    return { chunks, total, ended: false };
  }
  /** Whether the stream has no more bytes (reads ahead one chunk and keeps it). */
  async atEnd(): Promise<boolean> {
    const chunk = await this.nextChunk();
    if (!chunk) return true;
    this.pending.unshift(chunk);
    return false;
  }
  /** Puts chunks back in front of the stream. */
  unshift(chunks: Buffer[]): void {
    this.pending = [...chunks, ...this.pending];
  }
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/** The Content-MD5 of `body` when the settings ask for it (the SigV4-signed SHA-256 is sent either way). */
export function contentMD5(body: Buffer, settings: Pick<UploadSettings, 'contentMD5'>): string | undefined {
  return settings.contentMD5 ? createHash('md5').update(body).digest('base64') : undefined;
}

/** The part size for an object of `size` bytes (unknown: -1): grown in whole MiB so 10,000 parts suffice. */
export function partSizeFor(size: number, partSize: number): number {
  if (size < 0 || Math.ceil(size / partSize) <= MAX_PARTS) return partSize;
  return Math.ceil(size / MAX_PARTS / MIB) * MIB;
}

/** Bytes read into a small list before a part buffer is taken: small objects (locks, states) never touch the pool. */
const SMALL_HEAD = 1024 * 1024;

/**
 * Uploads `body` to `key`: a single PUT when the whole body fits in `cutoff` bytes, otherwise a multipart upload whose
 * parts (each signed with its SHA-256, with Content-MD5 too when asked, each retried on its own) use the process-wide
 * part pool.
 * A failed multipart upload is aborted. Returns the number of bytes stored.
 */
export async function uploadStream(
  s3: S3,
  key: string,
  body: Readable,
  headers: ObjectHeaders,
  settings: UploadSettings,
  pool: PartPool,
  size = -1,
): Promise<number> {
  const what = `cannot write ${s3.url(key)}`;
  const reader = new ExactReader(body);
  try {
    if (size <= settings.cutoff) {
      const head = await reader.readUpTo(size >= 0 ? size : Math.min(settings.cutoff, SMALL_HEAD));
      if (head.ended && head.total <= settings.cutoff) {
        const buf = head.chunks.length === 1 ? (head.chunks[0] as Buffer) : Buffer.concat(head.chunks, head.total);
        await putSingle(s3, key, buf, headers, settings, what);
        return buf.length;
      }
      reader.unshift(head.chunks);
    }
    return await multipart(s3, key, reader, headers, settings, pool, size, what);
  } finally {
    await reader.close().catch(() => undefined);
  }
}

/** One PUT of a whole object (retried as a whole: the bytes are in memory). */
async function putSingle(s3: S3, key: string, body: Buffer, headers: ObjectHeaders, settings: UploadSettings, what: string): Promise<void> {
  const md5 = contentMD5(body, settings);
  await s3.call(what, (abortSignal) =>
    s3.client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: key, ...s3.ssec, ...s3.payer, ...headers, Body: body, ContentLength: body.length, ContentMD5: md5 }),
      { abortSignal },
    ),
  );
}

async function multipart(
  s3: S3,
  key: string,
  reader: ExactReader,
  headers: ObjectHeaders,
  settings: UploadSettings,
  pool: PartPool,
  size: number,
  what: string,
): Promise<number> {
  const common = { Bucket: s3.bucket, Key: key, ...s3.payer };
  const partSize = partSizeFor(size, settings.partSize);
  const inFlight = new Semaphore(settings.concurrency);

  /** Reads the next part into a pool buffer (waiting for a free slot first); returns undefined at the end. */
  const nextPart = async (first: boolean): Promise<{ buf: Buffer; n: number } | undefined> => {
    await inFlight.acquire();
    const buf = await pool.take(partSize);
    let n: number;
    try {
      n = await reader.fill(buf);
    } catch (err) {
      pool.give(buf);
      inFlight.release();
      throw err;
    }
    if (n === 0 && !first) {
      pool.give(buf);
      inFlight.release();
      return undefined;
    }
    return { buf, n };
  };

  // The first part decides: a body that ends within the cutoff is one PUT after all (no multipart upload to create).
  const firstPart = (await nextPart(true)) as { buf: Buffer; n: number };
  let single = firstPart.n <= settings.cutoff && (firstPart.n < partSize || size === firstPart.n);
  if (!single && firstPart.n === partSize && firstPart.n <= settings.cutoff && size < 0) {
    try {
      single = await reader.atEnd();
    } catch (err) {
      pool.give(firstPart.buf);
      inFlight.release();
      throw err;
    }
  }
  if (single) {
    try {
      await putSingle(s3, key, firstPart.buf.subarray(0, firstPart.n), headers, settings, what);
      return firstPart.n;
    } finally {
      pool.give(firstPart.buf);
      inFlight.release();
    }
  }

  let uploadId: string | undefined;
  try {
    const created = await s3.call(what, (abortSignal) =>
      s3.client.send(new CreateMultipartUploadCommand({ ...common, ...s3.ssec, ...headers }), { abortSignal }),
    );
    uploadId = created.UploadId;
    if (!uploadId) throw new ServiceError('NoUploadId', `${what}: the service started a multipart upload without an UploadId`);
  } catch (err) {
    pool.give(firstPart.buf);
    inFlight.release();
    throw err;
  }
  const id = uploadId;
  const parts: CompletedPart[] = [];
  const running = new Set<Promise<void>>();
  let failure: unknown;
  let total = 0;
  try {
    let part: { buf: Buffer; n: number } | undefined = firstPart;
    for (let partNumber = 1; part && failure === undefined; partNumber++) {
      const { buf, n }: { buf: Buffer; n: number } = part;
      if (partNumber > MAX_PARTS) {
        pool.give(buf);
        inFlight.release();
        throw new ServiceError('TooManyParts', `${what}: the object is larger than ${MAX_PARTS} parts of ${formatSize(partSize)} (hint: raise part_size)`);
      }
      total += n;
      const body = buf.subarray(0, n);
      const number = partNumber;
      const task = (async () => {
        try {
          const md5 = contentMD5(body, settings);
          const r = await s3.call(`${what} (part ${number})`, (abortSignal) =>
            s3.client.send(new UploadPartCommand({ ...common, ...s3.ssec, UploadId: id, PartNumber: number, Body: body, ContentLength: n, ContentMD5: md5 }), {
              abortSignal,
            }),
          );
          parts.push({ PartNumber: number, ETag: r.ETag });
        } catch (err) {
          failure ??= err;
        } finally {
          pool.give(buf);
          inFlight.release();
        }
      })();
      running.add(task);
      void task.finally(() => running.delete(task));
      part = n < partSize ? undefined : await nextPart(false);
    }
    if (part) {
      // A part read after another one failed: never sent.
      pool.give(part.buf);
      inFlight.release();
    }
    await Promise.all(running);
    if (failure !== undefined) throw failure;
    parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await s3.call(what, (abortSignal) =>
      s3.client.send(new CompleteMultipartUploadCommand({ ...common, UploadId: id, MultipartUpload: { Parts: parts } }), { abortSignal }),
    );
    return total;
  } catch (err) {
    await Promise.allSettled(running);
    await s3
      .call(`cannot abort the multipart upload of ${s3.url(key)}`, (abortSignal) =>
        s3.client.send(new AbortMultipartUploadCommand({ ...common, UploadId: id }), { abortSignal }),
      )
      .catch((abortErr: unknown) => {
        s3.log.warn('a failed multipart upload could not be aborted; a lifecycle rule for incomplete uploads will clean it', {
          key,
          cause: describeError(abortErr),
        });
      });
    throw err;
  }
}
