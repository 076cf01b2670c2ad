// Uploads: one multipart request for small content, otherwise Google's resumable protocol in `chunk_size` chunks read
// from the stream (no temp files), with status queries to resume after a dropped connection, and an MD5 check.
// Protocol: https://developers.google.com/workspace/drive/api/guides/manage-uploads#resumable (308 Resume Incomplete,
// `Range: bytes=0-N`, `Content-Range: bytes */*` status queries, unknown total length `bytes a-b/*`).
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { ServiceError } from '../../shared/index.ts';
import type { DriveFile } from './api.ts';
import { DriveError, quoteQuery, type DriveClient } from './client.ts';

/** Content smaller than this (and than chunk_size) goes up in one multipart request. */
export const MULTIPART_CUTOFF = 5 * 1024 * 1024;

/** Fields asked back from every upload. */
const UPLOAD_FIELDS = 'id,name,mimeType,size,md5Checksum,modifiedTime,createdTime,parents';

/** Where and how to store one upload. */
export interface UploadTarget {
  /** Create a new file in this folder… */
  parentId?: string;
  /** …or replace the content of this file. */
  fileId?: string;
  name: string;
  /** MIME type of the bytes sent. */
  mediaType: string;
  /** A native Google type to convert to (import_as_native), or undefined to keep the bytes as they are. */
  convertTo?: string;
  modifiedTime?: Date;
  /** Size when known in advance (checked against what the stream gives). */
  size?: number;
  /** Names the upload in messages, e.g. `upload /docs/a.txt`. */
  what: string;
}

/** What an upload stored. */
export interface UploadResult {
  file: DriveFile;
  size: number;
  md5: string;
}

/** Reads a stream in pieces of exactly `n` bytes (less at the end) and knows whether the stream is exhausted. */
export class ChunkReader {
  private readonly it: AsyncIterator<Buffer | string>;
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private sourceEnded = false;

  constructor(source: Readable) {
    this.it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  }

  /** True once every byte has been returned. */
  get done(): boolean {
    return this.sourceEnded && this.pendingLength === 0;
  }

  private async pull(): Promise<void> {
    const r = await this.it.next();
    if (r.done) {
      this.sourceEnded = true;
      return;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    if (b.length > 0) {
      this.pending.push(b);
      this.pendingLength += b.length;
    }
  }

  /** The next `n` bytes (fewer only at the end); afterwards `done` tells whether more bytes follow. */
  async read(n: number): Promise<Buffer> {
    while (this.pendingLength < n && !this.sourceEnded) await this.pull();
    const all = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingLength);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingLength = rest.length;
    // Peek so that `done` is exact: the caller must know whether this is the final chunk before sending it.
    while (this.pendingLength === 0 && !this.sourceEnded) await this.pull();
    return out;
  }

  /**
   * Fills `target` from `start` with the next bytes (fewer only at the end) and returns how many bytes it now holds;
   * afterwards `done` tells whether more bytes follow. Uploads reuse one buffer for all their chunks this way, so a
   * large file does not leave a trail of chunk-sized garbage behind it.
   */
  async fill(target: Buffer, start: number): Promise<number> {
    let filled = start;
    while (filled < target.length) {
      if (this.pendingLength === 0) {
        if (this.sourceEnded) break;
        await this.pull();
        continue;
      }
      const head = this.pending[0] as Buffer;
      const n = head.copy(target, filled, 0, Math.min(head.length, target.length - filled));
      filled += n;
      this.pendingLength -= n;
      if (n === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(n);
    }
    while (this.pendingLength === 0 && !this.sourceEnded) await this.pull();
    return filled;
  }

  /** Stops reading the source. */
  async cancel(): Promise<void> {
    await this.it.return?.();
  }
}

function metadataOf(t: UploadTarget): Record<string, unknown> {
  return {
    name: t.name,
    ...(t.convertTo ? { mimeType: t.convertTo } : t.fileId ? {} : { mimeType: t.mediaType }),
    ...(t.parentId && !t.fileId ? { parents: [t.parentId] } : {}),
    ...(t.modifiedTime ? { modifiedTime: t.modifiedTime.toISOString() } : {}),
  };
}

/** Uploads `source` to `target`: multipart when small, resumable otherwise; verifies the MD5 Drive computed. */
export async function uploadContent(client: DriveClient, target: UploadTarget, source: Readable, chunkSize: number): Promise<UploadResult> {
  const reader = new ChunkReader(source);
  const md5 = createHash('md5');
  let result: { file: DriveFile; size: number };
  try {
    const first = await reader.read(Math.min(chunkSize, MULTIPART_CUTOFF));
    if (reader.done) {
      md5.update(first);
      checkSize(target, first.length);
      result = { file: await multipart(client, target, first, createHash('md5').update(first).digest('hex')), size: first.length };
    } else {
      result = await resumable(client, target, reader, first, chunkSize, md5);
    }
  } catch (err) {
    await reader.cancel().catch(() => undefined);
    throw err;
  }
  const local = md5.digest('hex');
  const remote = result.file.md5Checksum ?? undefined;
  if (!target.convertTo && remote !== undefined && remote !== local) {
    // A new file with damaged content is removed, so that nothing that looks restored holds wrong bytes.
    let removed = false;
    if (!target.fileId && result.file.id) {
      removed = await client.delete(result.file.id, `${target.what}: remove the damaged upload`).then(
        () => true,
        () => false,
      );
    }
    throw new ServiceError(
      'checksumMismatch',
      `${target.what}: MD5 mismatch after upload: sent ${local}, Drive stored ${remote}${removed ? ' (the damaged file was removed)' : ''}`,
    );
  }
  return { file: result.file, size: result.size, md5: local };
}

function checkSize(target: UploadTarget, got: number): void {
  if (target.size !== undefined && target.size >= 0 && got !== target.size) {
    throw new ServiceError('sizeMismatch', `${target.what}: the snapshot gave ${got} bytes for a file recorded as ${target.size} bytes`);
  }
}

/** One multipart request; a retried create first looks for the file a lost answer may have created. */
async function multipart(client: DriveClient, target: UploadTarget, data: Buffer, md5: string): Promise<DriveFile> {
  const meta = metadataOf(target);
  const startedAt = Date.now();
  return client.call(target.what, async (attempt) => {
    if (attempt > 1 && target.parentId && !target.fileId && !target.convertTo) {
      const existing = await findUploaded(client, target, md5, data.length, startedAt);
      if (existing) return existing;
    }
    const media = { mimeType: target.mediaType, body: Readable.from([data]) };
    const res = target.fileId
      ? await client.api.files.update({ fileId: target.fileId, requestBody: meta, media, fields: UPLOAD_FIELDS, ...client.driveParams }, client.mo())
      : await client.api.files.create({ requestBody: meta, media, fields: UPLOAD_FIELDS, ...client.driveParams }, client.mo());
    return res.data as DriveFile;
  });
}

/** A file with this name, size and MD5 created in the folder since the upload started (a create whose answer was lost). */
async function findUploaded(client: DriveClient, target: UploadTarget, md5: string, size: number, since: number): Promise<DriveFile | undefined> {
  const res = await client.api.files.list(
    {
      q: `${quoteQuery(target.parentId as string)} in parents and name = ${quoteQuery(target.name)} and trashed = false`,
      fields: `files(${UPLOAD_FIELDS})`,
      pageSize: 100,
      ...client.corpus(),
    },
    client.mo(),
  );
  return (res.data.files ?? []).find(
    (f) => f.md5Checksum === md5 && Number(f.size) === size && Date.parse(f.createdTime ?? '') >= since - 60_000,
  ) as DriveFile | undefined;
}

/** A resumable session (its URL carries an upload credential: never log it). */
interface Session {
  url: string;
}

async function startSession(client: DriveClient, target: UploadTarget): Promise<Session> {
  const path = target.fileId ? `upload/drive/v3/files/${encodeURIComponent(target.fileId)}` : 'upload/drive/v3/files';
  const url = new URL(path, client.apiUrl);
  url.searchParams.set('uploadType', 'resumable');
  url.searchParams.set('supportsAllDrives', 'true');
  url.searchParams.set('fields', UPLOAD_FIELDS);
  const res = await client.call(`${target.what}: start the upload session`, () =>
    client.auth.request({
      url: url.href,
      method: target.fileId ? 'PATCH' : 'POST',
      headers: {
        'Content-Type': 'application/json; charset=UTF-8',
        'X-Upload-Content-Type': target.mediaType,
        ...(target.size !== undefined && target.size >= 0 ? { 'X-Upload-Content-Length': String(target.size) } : {}),
      },
      data: JSON.stringify(metadataOf(target)),
      retry: false,
      signal: client.signal,
    }),
  );
  const location = res.headers.get('location');
  if (!location) throw new ServiceError('noSession', `${target.what}: Drive started no upload session (no Location header)`);
  return { url: location };
}

/** The bytes Drive has persisted, from a 308's `Range: bytes=0-N` header. */
function persistedFrom(headers: Headers): number {
  const m = /bytes=0-(\d+)/.exec(headers.get('range') ?? '');
  return m ? Number(m[1]) + 1 : 0;
}

type ChunkAnswer = { done: DriveFile } | { persisted: number };

async function put(client: DriveClient, session: Session, body: Buffer, contentRange: string): Promise<ChunkAnswer> {
  const res = await client.auth.request<DriveFile>({
    url: session.url,
    method: 'PUT',
    headers: { 'Content-Range': contentRange, 'Content-Type': 'application/octet-stream' },
    data: body,
    validateStatus: (s) => s === 200 || s === 201 || s === 308,
    responseType: 'json',
    retry: false,
    signal: client.signal,
  });
  if (res.status === 308) return { persisted: persistedFrom(res.headers) };
  return { done: res.data };
}

/** Thrown when Drive forgot the session: the content already sent cannot be read again from the stream. */
class SessionLostError extends ServiceError {
  override name = 'SessionLostError';
}

/**
 * Sends the content in requests of `chunkSize` bytes (a multiple of 256 KiB) from one buffer that always starts at the
 * first byte Drive has not committed. Drive may commit only a prefix of a request (a cut connection, or by choice), at
 * any byte: the uncommitted rest is moved to the front of the buffer, which is then topped up from the stream, so the
 * next request starts where Drive stopped and is again a whole chunk (as Google's own client libraries do). Memory
 * stays at one chunk per upload.
 */
async function resumable(
  client: DriveClient,
  target: UploadTarget,
  reader: ChunkReader,
  first: Buffer,
  chunkSize: number,
  md5: ReturnType<typeof createHash>,
): Promise<{ file: DriveFile; size: number }> {
  let session = await startSession(client, target);
  /** Bytes Drive has committed: the buffer holds the content from here. */
  let offset = 0;
  const buffer = Buffer.allocUnsafe(chunkSize);
  first.copy(buffer);
  let filled = await reader.fill(buffer, first.length);
  md5.update(buffer.subarray(0, filled));
  for (;;) {
    const final = reader.done;
    const chunk = buffer.subarray(0, filled);
    const total = final ? offset + filled : undefined;
    if (total !== undefined) checkSize(target, total);
    let answer: ChunkAnswer;
    try {
      answer = await sendChunk(client, session, target, chunk, offset, total);
    } catch (err) {
      // Google forgets sessions after about a week or on errors; nothing is committed yet, so start over.
      if (err instanceof SessionLostError && offset === 0) {
        client.log.debug('upload session lost before anything was stored; starting a new one', { what: target.what });
        session = await startSession(client, target);
        answer = await sendChunk(client, session, target, chunk, offset, total);
      } else {
        throw err;
      }
    }
    if ('done' in answer) {
      if (total === undefined) throw new ServiceError('uploadIncomplete', `${target.what}: Drive ended the upload after ${offset + filled} bytes, before the end of the content`);
      return { file: answer.done, size: total };
    }
    if (total !== undefined) throw new ServiceError('uploadIncomplete', `${target.what}: Drive did not confirm the end of the upload`);
    // Keep what Drive has not committed (normally nothing) and top the buffer up from the stream.
    const kept = offset + filled - answer.persisted;
    buffer.copy(buffer, 0, filled - kept, filled);
    offset = answer.persisted;
    filled = await reader.fill(buffer, kept);
    md5.update(buffer.subarray(kept, filled));
  }
}

/**
 * Sends bytes [offset, offset+chunk.length). Not the last request: sent whole (a multiple of 256 KiB) and answers how
 * far Drive committed (more than `offset`, perhaps less than the end). The last request: resent from wherever Drive
 * stopped until it answers the file. A retry first asks Drive how much it has (`bytes *\/total`), so a request cut
 * mid-way resumes from Drive's `Range`, whatever byte that is.
 */
async function sendChunk(client: DriveClient, session: Session, target: UploadTarget, chunk: Buffer, offset: number, total: number | undefined): Promise<ChunkAnswer> {
  const end = offset + chunk.length;
  const totalText = total === undefined ? '*' : String(total);
  const what = `${target.what} (bytes ${offset}-${end - 1}${total !== undefined ? ` of ${total}` : ''})`;
  try {
    return await client.call(what, async (attempt): Promise<ChunkAnswer> => {
      let persisted = offset;
      if (attempt > 1) {
        const st = await put(client, session, Buffer.alloc(0), `bytes */${totalText}`);
        if ('done' in st) return st;
        persisted = st.persisted;
        if (persisted < offset) {
          throw new SessionLostError('uploadRewound', `${what}: Drive lost bytes ${persisted}-${offset - 1} that were already sent; they cannot be read again`);
        }
        // Part of a middle request arrived before the cut: the caller continues from there with a whole chunk.
        if (total === undefined && persisted > offset) return { persisted: Math.min(persisted, end) };
      }
      for (let rounds = 0; rounds < 100; rounds++) {
        const body = chunk.subarray(persisted - offset);
        const range = body.length === 0 ? `bytes */${totalText}` : `bytes ${persisted}-${end - 1}/${totalText}`;
        const st = await put(client, session, body, range);
        if ('done' in st) return st;
        if (st.persisted <= persisted && body.length > 0) {
          throw new ServiceError('uploadStalled', `${what}: Drive accepted none of the bytes sent`);
        }
        if (st.persisted > end) throw new ServiceError('uploadRewound', `${what}: Drive reports ${st.persisted} bytes stored, more than were sent`);
        if (total === undefined) return { persisted: st.persisted };
        persisted = st.persisted;
      }
      throw new ServiceError('uploadStalled', `${what}: Drive keeps asking for the same bytes`);
    });
  } catch (err) {
    if (err instanceof DriveError && err.httpStatus === 404) {
      throw new SessionLostError(
        'sessionExpired',
        `${what}: the upload session expired${offset > 0 ? ` after ${offset} bytes were stored, which cannot be read again from the snapshot` : ''} (${err.detail})`,
        { cause: err },
      );
    }
    throw err;
  }
}
