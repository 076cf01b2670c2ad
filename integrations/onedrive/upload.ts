// Uploads: one PUT for small files; upload sessions in fragments (multiples of 320 KiB) that resume from
// nextExpectedRanges after a lost reply or a 416, and restart in a new session when the old one expired.
// https://learn.microsoft.com/graph/api/driveitem-createuploadsession
import { createWriteStream, type WriteStream } from 'node:fs';
import { open as openFile, rm, type FileHandle } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describeError } from '../../shared/index.ts';
import type { ConflictBehavior, DriveItem, UploadableProperties, UploadSession } from './api.ts';
import { classify, errorFromResponse, networkError, OneDriveError, plainFetch, type GraphClient } from './client.ts';
import { FRAGMENT_QUANTUM } from './options.ts';
import { QuickXorHash } from './quickxorhash.ts';

/** Where an upload goes and what it sets. */
export interface UploadTarget {
  /** Graph path of the item: `/drives/{d}/items/{parent}:/{name}:` (or an existing item). */
  itemApiPath: string;
  conflict: ConflictBehavior;
  /** Client modification time to keep (fileSystemInfo.lastModifiedDateTime). */
  mtime?: Date;
  /** `cannot upload <subject>`. */
  what: string;
}

/** Bytes of an upload, read in order; sources that can be read again let an expired session start over. */
export interface UploadSource {
  readonly size: number;
  /** `length` bytes at `offset` (fewer only at the end of the data). */
  read(offset: number, length: number): Promise<Buffer>;
  /** Whether a read may go back before the last fragment (needed to restart an expired session). */
  readonly restartable: boolean;
  /** QuickXorHash of every byte read so far in order (complete once the last byte was read). */
  quickXorHash(): string;
  /** Checks there is nothing past `size` (called before the last fragment is sent). */
  finish?(): Promise<void>;
}

/** Session restarts allowed after expiry before the upload is reported as failed. */
const MAX_SESSION_RESTARTS = 3;

/**
 * Uploads a small file in one PUT, checks what OneDrive stored against the QuickXorHash of `body` (given, or computed
 * here), then sets its modification time.
 */
export async function simpleUpload(g: GraphClient, t: UploadTarget, body: Buffer, quickXorHash?: string): Promise<DriveItem> {
  let item = await g.request<DriveItem>(t.what, 'PUT', `${t.itemApiPath}/content`, {
    body,
    query: { '@microsoft.graph.conflictBehavior': t.conflict },
    headers: { 'Content-Type': 'application/octet-stream' },
  });
  await verifyStored(g, t, item, body.length, () => quickXorHash ?? new QuickXorHash().update(body).digestBase64());
  if (t.mtime) item = await setMtime(g, item, t.mtime, t.what);
  return item;
}

/**
 * Compares the size and QuickXorHash OneDrive reports for a stored item with what was sent; on a mismatch removes
 * the damaged copy (so that no wrong content sits under the right name) and fails with the reason.
 */
async function verifyStored(g: GraphClient, t: UploadTarget, item: DriveItem, size: number, quickXorHash: () => string): Promise<void> {
  const bad: string[] = [];
  if (item.size !== undefined && item.size !== size) bad.push(`${item.size} bytes instead of ${size}`);
  const remote = item.file?.hashes?.quickXorHash;
  if (remote && remote !== quickXorHash()) bad.push('a quickXorHash that differs from the content sent');
  if (bad.length === 0) return;
  let removed = false;
  try {
    await g.request(`${t.what}: cannot remove the damaged copy`, 'DELETE', `${g.drivePath}/items/${encodeURIComponent(item.id)}`);
    removed = true;
  } catch (err) {
    g.log.warn(`${t.what}: cannot remove the damaged copy: ${describeError(err)}`);
  }
  throw new OneDriveError(
    'hashMismatch',
    `${t.what}: OneDrive stored ${bad.join(' and ')} (damaged on the way)${removed ? '; the damaged copy was removed' : ''}`,
  );
}

/** Sets fileSystemInfo.lastModifiedDateTime unless the item already has it (to the second). */
export async function setMtime(g: GraphClient, item: DriveItem, mtime: Date, what: string): Promise<DriveItem> {
  const want = Math.floor(mtime.getTime() / 1000);
  const have = item.fileSystemInfo?.lastModifiedDateTime ? Math.floor(Date.parse(item.fileSystemInfo.lastModifiedDateTime) / 1000) : NaN;
  if (want === have) return item;
  return g.request<DriveItem>(what, 'PATCH', `${g.drivePath}/items/${encodeURIComponent(item.id)}`, {
    body: { fileSystemInfo: { lastModifiedDateTime: isoSeconds(mtime) } },
  });
}

/** A time in the form Graph accepts, to the second. */
export function isoSeconds(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Uploads through an upload session in `chunkSize` fragments; returns the committed item. */
export async function sessionUpload(g: GraphClient, t: UploadTarget, src: UploadSource, chunkSize: number): Promise<DriveItem> {
  if (chunkSize % FRAGMENT_QUANTUM !== 0) throw new Error(`internal: fragment size ${chunkSize} is not a multiple of 320 KiB`);
  for (let restarts = 0; ; restarts++) {
    const props: UploadableProperties = { '@microsoft.graph.conflictBehavior': t.conflict };
    if (t.mtime) props.fileSystemInfo = { lastModifiedDateTime: isoSeconds(t.mtime) };
    const session = await g.request<UploadSession>(t.what, 'POST', `${t.itemApiPath}/createUploadSession`, { body: { item: props } });
    const url = session.uploadUrl;
    if (!url) throw new OneDriveError('noUploadUrl', `${t.what}: the upload session has no uploadUrl`);
    try {
      let item = await sendFragments(g, t, url, src, chunkSize);
      if (t.mtime) item = await setMtime(g, item, t.mtime, t.what);
      return item;
    } catch (err) {
      const gone = err instanceof OneDriveError && err.serviceCode === 'uploadSessionGone';
      if (gone && src.restartable && restarts < MAX_SESSION_RESTARTS) {
        g.log.info('the upload session expired; starting a new one', { what: t.what });
        continue;
      }
      if (!gone) await cancelSession(g, url);
      if (gone) {
        throw new OneDriveError(
          'uploadSessionGone',
          src.restartable
            ? `${t.what}: the upload session expired ${restarts + 1} times`
            : `${t.what}: the upload session expired part-way and the content cannot be read again; restore this file again`,
          { cause: err },
        );
      }
      throw err;
    }
  }
}

async function sendFragments(g: GraphClient, t: UploadTarget, url: string, src: UploadSource, chunkSize: number): Promise<DriveItem> {
  let offset = 0;
  for (;;) {
    const length = Math.min(chunkSize, src.size - offset);
    const body = await src.read(offset, length);
    if (body.length !== length) {
      throw new OneDriveError('sizeMismatch', `${t.what}: the content ended after ${offset + body.length} of ${src.size} bytes`);
    }
    if (offset + length === src.size) await src.finish?.();
    const r = await putFragment(g, t, url, offset, body, src.size);
    if (r.item) {
      const item = r.item;
      await verifyStored(g, t, item, src.size, () => src.quickXorHash());
      return item;
    }
    if (r.next <= offset || r.next > offset + length) {
      // The service lost or skipped data; follow what it expects (the source refuses a rewind it cannot do).
      g.log.debug('the upload session expects another offset', { what: t.what, sent: offset, next: r.next });
    }
    offset = r.next;
  }
}

interface FragmentResult {
  item?: DriveItem;
  next: number;
}

/** PUTs one fragment (no Authorization header: the URL is pre-authenticated); a 416 or a retry asks the session where to go on. */
async function putFragment(g: GraphClient, t: UploadTarget, url: string, offset: number, body: Buffer, total: number): Promise<FragmentResult> {
  const range = `bytes ${offset}-${offset + body.length - 1}/${total}`;
  return g.pacer.call(
    `${t.what} (fragment at byte ${offset})`,
    async (attempt) => {
      if (attempt > 1) {
        // The previous attempt may have reached the service even though its reply did not reach us.
        const status = await sessionStatus(g, url);
        if (status.next !== offset) return { next: status.next };
      }
      const res = await putBytes(url, { 'content-length': String(body.length), 'content-range': range }, body, g.timeoutMs, g.signal);
      if (res.status === 200 || res.status === 201) return { item: JSON.parse(res.text) as DriveItem, next: total };
      if (res.status === 202) {
        const s = JSON.parse(res.text) as UploadSession;
        return { next: nextOffset(s) ?? offset + body.length };
      }
      if (res.status === 404) {
        throw new OneDriveError('uploadSessionGone', 'the upload session expired or was removed (HTTP 404)', { httpStatus: 404 });
      }
      if (res.status === 416) return { next: (await sessionStatus(g, url)).next };
      throw await errorFromResponse(new Response(res.text, { status: res.status, headers: res.headers }));
    },
    classify,
  );
}

const httpAgent = new HttpAgent({ keepAlive: true });
const httpsAgent = new HttpsAgent({ keepAlive: true });

/**
 * PUTs a fragment with node:http(s) rather than fetch: fetch copies a Buffer body (WHATWG "extract a body"), which for
 * 10 MiB fragments is 10 MiB of garbage per request; here the reused fragment buffer goes to the socket as it is.
 */
function putBytes(url: string, headers: Record<string, string>, body: Buffer, timeoutMs: number, signal: AbortSignal): Promise<{ status: number; headers: Record<string, string>; text: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const secure = u.protocol === 'https:';
    const req = (secure ? httpsRequest : httpRequest)(u, { method: 'PUT', headers, agent: secure ? httpsAgent : httpAgent, signal });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('the request timed out'), { name: 'TimeoutError' })), timeoutMs);
    const fail = (err: unknown): void => {
      clearTimeout(timer);
      reject(networkError(err, signal));
    };
    req.on('error', fail);
    req.on('response', (res: IncomingMessage) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('error', fail);
      res.on('end', () => {
        clearTimeout(timer);
        const h: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h[k] = v;
        resolve({ status: res.statusCode ?? 0, headers: h, text: Buffer.concat(parts).toString('utf8') });
      });
    });
    req.end(body);
  });
}

/** Where the session wants the next byte (GET on the upload URL). */
async function sessionStatus(g: GraphClient, url: string): Promise<{ next: number }> {
  const res = await plainFetch(url, { method: 'GET' }, g.timeoutMs, g.signal);
  if (res.status === 404) {
    await res.body?.cancel().catch(() => undefined);
    throw new OneDriveError('uploadSessionGone', 'the upload session expired or was removed (HTTP 404)', { httpStatus: 404 });
  }
  if (!res.ok) throw await errorFromResponse(res);
  const next = nextOffset((await res.json()) as UploadSession);
  if (next === undefined) throw new OneDriveError('badUploadSession', 'the upload session reports no missing range');
  return { next };
}

/** The first missing byte of nextExpectedRanges (`"12345-"` or `"12345-67890"`). */
export function nextOffset(s: UploadSession): number | undefined {
  const first = s.nextExpectedRanges?.[0];
  if (!first) return undefined;
  const n = Number(first.split('-')[0]);
  return Number.isSafeInteger(n) ? n : undefined;
}

async function cancelSession(g: GraphClient, url: string): Promise<void> {
  try {
    const res = await plainFetch(url, { method: 'DELETE' }, g.timeoutMs, g.signal);
    await res.body?.cancel().catch(() => undefined);
  } catch (err) {
    g.log.debug('could not cancel an upload session', { cause: describeError(err) });
  }
}

/** An upload source over bytes already in memory. */
export class BufferSource implements UploadSource {
  readonly restartable = true;
  private readonly data: Buffer;
  private readonly hash: string;
  constructor(data: Buffer, quickXorHash?: string) {
    this.data = data;
    this.hash = quickXorHash ?? new QuickXorHash().update(data).digestBase64();
  }
  get size(): number {
    return this.data.length;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return Promise.resolve(this.data.subarray(offset, offset + length));
  }
  quickXorHash(): string {
    return this.hash;
  }
}

/** An upload source over a file (a spilled Put), hashed while it was written. */
export class FileSource implements UploadSource {
  readonly restartable = true;
  readonly size: number;
  private readonly fh: FileHandle;
  private readonly hash: string;
  private constructor(fh: FileHandle, size: number, hash: string) {
    this.fh = fh;
    this.size = size;
    this.hash = hash;
  }
  /** Opens `path` (the caller removes it afterwards). */
  static async open(path: string, size: number, quickXorHash: string): Promise<FileSource> {
    return new FileSource(await openFile(path, 'r'), size, quickXorHash);
  }
  private buf: Buffer = Buffer.alloc(0);
  /** A view of `length` bytes at `offset`, valid until the next read (one reused buffer per upload). */
  async read(offset: number, length: number): Promise<Buffer> {
    if (this.buf.length < length) this.buf = Buffer.allocUnsafe(length);
    const buf = this.buf;
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  }
  quickXorHash(): string {
    return this.hash;
  }
  async close(): Promise<void> {
    await this.fh.close();
  }
}

/**
 * An upload source over a one-pass stream (a file being restored). It copies the stream into one reusable fragment
 * buffer, so an upload holds a single fragment in memory however large the file; the current fragment can be sent
 * again, but an expired session cannot start over. Bytes past `size` are an error.
 */
export class StreamSource implements UploadSource {
  readonly restartable = false;
  readonly size: number;
  private readonly iterator: AsyncIterator<Buffer>;
  private readonly hash = new QuickXorHash();
  private buf: Buffer = Buffer.alloc(0);
  /** Stream offset of buf[0] and the valid bytes from there. */
  private start = 0;
  private length = 0;
  /** Bytes read from the stream that did not fit the buffer yet (they follow the buffered ones). */
  private carry: Buffer | undefined;
  private ended = false;
  private pulled = 0;

  constructor(stream: Readable, size: number) {
    this.size = size;
    this.iterator = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** A view of `length` bytes at `offset`, valid until the next read. */
  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < this.start) throw new OneDriveError('cannotRewind', `the upload needs bytes from ${offset} again, which were already sent and dropped`);
    const drop = offset - this.start;
    if (drop > this.length) throw new OneDriveError('cannotSkip', `the upload session asked to skip ${drop - this.length} bytes that were never sent`);
    if (drop > 0) {
      this.buf.copyWithin(0, drop, this.length);
      this.length -= drop;
      this.start = offset;
    }
    if (this.buf.length < length) {
      const bigger = Buffer.allocUnsafe(length);
      this.buf.copy(bigger, 0, 0, this.length);
      this.buf = bigger;
    }
    while (this.length < length) {
      const chunk = await this.next();
      if (!chunk) break;
      const n = Math.min(chunk.length, length - this.length);
      chunk.copy(this.buf, this.length, 0, n);
      this.length += n;
      if (n < chunk.length) this.carry = chunk.subarray(n);
    }
    if (this.pulled > this.size) throw new OneDriveError('sizeMismatch', `the content is longer than the ${this.size} bytes announced`);
    return this.buf.subarray(0, Math.min(length, this.length));
  }

  private async next(): Promise<Buffer | undefined> {
    if (this.carry) {
      const c = this.carry;
      this.carry = undefined;
      return c;
    }
    while (!this.ended) {
      const r = await this.iterator.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      if (chunk.length === 0) continue;
      this.hash.update(chunk);
      this.pulled += chunk.length;
      return chunk;
    }
    return undefined;
  }

  async finish(): Promise<void> {
    if (this.carry) throw new OneDriveError('sizeMismatch', `the content is longer than the ${this.size} bytes announced`);
    while (!this.ended) {
      await this.next();
      if (this.pulled > this.size) throw new OneDriveError('sizeMismatch', `the content is longer than the ${this.size} bytes announced`);
    }
  }

  quickXorHash(): string {
    return this.hash.digestBase64();
  }
}

/** Bytes collected before an upload: in memory, or spilled to a file (which the caller removes). */
export interface Collected {
  size: number;
  quickXorHash: string;
  memory?: Buffer;
  file?: string;
}

/**
 * Reads content whose size must be known before it is sent (a storage Put, a restored file of unknown size): kept in
 * memory up to `memoryLimit` bytes, then everything goes to one file in the private spill folder (so at most one
 * object per concurrent call is on disk). Hashes as it goes.
 */
export async function collect(content: Readable, memoryLimit: number, spillDirectory: () => Promise<string>): Promise<Collected> {
  const hash = new QuickXorHash();
  const parts: Buffer[] = [];
  let size = 0;
  let file: string | undefined;
  let out: WriteStream | undefined;
  try {
    for await (const chunk of content as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
      if (!out && size > memoryLimit) {
        file = join(await spillDirectory(), `put-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
        out = createWriteStream(file, { mode: 0o600 });
        for (const p of parts) await write(out, p);
        parts.length = 0;
      }
      if (out) await write(out, chunk);
      else parts.push(chunk);
    }
    if (out) await new Promise<void>((resolve, reject) => (out as WriteStream).end((err?: Error | null) => (err ? reject(err) : resolve())));
  } catch (err) {
    out?.destroy();
    if (file) await rm(file, { force: true });
    throw err;
  }
  return file ? { size, quickXorHash: hash.digestBase64(), file } : { size, quickXorHash: hash.digestBase64(), memory: Buffer.concat(parts, size) };
}

function write(out: WriteStream, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (out.write(chunk, (err) => (err ? reject(err) : undefined))) resolve();
    else out.once('drain', resolve);
  });
}
