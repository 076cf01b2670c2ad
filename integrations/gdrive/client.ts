// The Drive client: googleapis pointed at `api_url` with its own retries off, every call through the SDK pacer with the
// Drive classifier, Google error bodies turned into SDK errors, and the listing/download/folder helpers all connectors use.
// Error reasons: https://developers.google.com/workspace/drive/api/guides/handle-errors
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { OAuth2Client } from 'google-auth-library';
import type { drive_v3 } from 'googleapis/build/src/apis/drive/v3.js';
import {
  AuthError,
  ConfigError,
  isTransientNetworkError,
  KlosetError,
  NotFoundError,
  parseRetryAfter,
  QuotaError,
  RetriesExhaustedError,
  ServiceError,
  type ByteRange,
  type Classifier,
  type ConnectorContext,
  type Logger,
  type Pacer,
} from '../../shared/index.ts';
import { FILE_FIELDS, FOLDER_MIME, SCOPE_DRIVE, SCOPE_DRIVE_READONLY, type DriveFile, type GoogleErrorBody } from './api.ts';
import { credentialsFrom, TokenManager, type AuthValues } from './oauth.ts';

/** Reasons that mean "slow down": retried with backoff, honouring Retry-After. */
const THROTTLE_REASONS = new Set(['rateLimitExceeded', 'userRateLimitExceeded', 'sharingRateLimitExceeded']);

/** Reasons that retrying cannot fix: the run stops with a clear message. */
const QUOTA_HINTS: Readonly<Record<string, string>> = {
  storageQuotaExceeded: 'the Drive is full; free space or buy more storage',
  uploadLimitExceeded: 'Google allows about 750 GB of uploads per account and day; wait 24 hours and run again',
  dailyLimitExceeded: 'the Google Cloud project reached its daily API quota; wait or raise the quota in the Cloud console',
  quotaExceeded: 'a Drive quota was exceeded',
  teamDriveFileLimitExceeded: 'the shared drive holds the maximum number of items (400,000)',
  downloadQuotaExceeded: 'this file was downloaded too often recently; Google lifts the limit after about 24 hours',
};

/** A Drive API error: HTTP status, Google's reason code and message. */
export class DriveError extends ServiceError {
  override name = 'DriveError';
  /** Google's reason (`notFound`, `userRateLimitExceeded`…), or `http<status>` when the body had none. */
  readonly reason: string;
  readonly retryAfterMs: number | undefined;
  /** The message without the context added by `withContext` (`404 notFound: File not found: …`). */
  readonly detail: string;
  constructor(status: number, reason: string, message: string, options: { retryAfterMs?: number; cause?: unknown; detail?: string } = {}) {
    super(reason, message, { httpStatus: status, cause: options.cause });
    this.reason = reason;
    this.retryAfterMs = options.retryAfterMs;
    this.detail = options.detail ?? message;
  }
  /** The same error with `context` in front of its message. */
  withContext(context: string): DriveError {
    return new DriveError(this.httpStatus ?? 0, this.reason, `${context}: ${this.message}`, { retryAfterMs: this.retryAfterMs, cause: this.cause, detail: this.detail });
  }
}

/** The Drive classifier: throttling reasons and 429/503 throttle, other 5xx and network errors are transient. */
export const classify: Classifier = (err) => {
  if (err instanceof DriveError) {
    const s = err.httpStatus ?? 0;
    if (s === 401) return { kind: 'transient' };
    if (THROTTLE_REASONS.has(err.reason) || s === 429 || s === 503) return { kind: 'throttle', retryAfterMs: err.retryAfterMs };
    if (s >= 500 || s === 408) return { kind: 'transient' };
    return { kind: 'permanent' };
  }
  return isTransientNetworkError(err) ? { kind: 'transient' } : { kind: 'permanent' };
};

/** Removes query strings from URLs in a message (resumable session URLs carry an upload credential). */
export function sanitize(text: string): string {
  return text.replace(/(https?:\/\/[^\s'"?]+)\?[^\s'"]*/g, '$1?…');
}

function headerOf(headers: unknown, name: string): string | undefined {
  if (!headers) return undefined;
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const v = (headers as Record<string, unknown>)[name] ?? (headers as Record<string, unknown>)[name.toLowerCase()];
  return v === undefined || v === null ? undefined : String(v);
}

async function bodyText(data: unknown): Promise<string> {
  if (data === undefined || data === null) return '';
  if (typeof data === 'string') return data;
  if (data instanceof Readable || (typeof data === 'object' && typeof (data as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function')) {
    const parts: Buffer[] = [];
    let n = 0;
    try {
      for await (const c of data as AsyncIterable<Buffer | string>) {
        const b = Buffer.isBuffer(c) ? c : Buffer.from(String(c));
        parts.push(b);
        n += b.length;
        if (n > 65536) break;
      }
    } catch {
      // A broken error body: the status alone will do.
    }
    return Buffer.concat(parts).toString('utf8');
  }
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  try {
    return JSON.stringify(data);
  } catch {
    return '';
  }
}

/**
 * Turns anything a googleapis/gaxios call threw into an SDK error: Google error bodies become DriveError (or QuotaError
 * for quotas), network failures keep their code with URLs sanitized, SDK errors pass through.
 */
export async function normalizeError(err: unknown): Promise<unknown> {
  if (err instanceof KlosetError) return err;
  const e = err as { response?: { status?: number; data?: unknown; headers?: unknown }; status?: unknown; code?: unknown; message?: string };
  const status = typeof e?.response?.status === 'number' ? e.response.status : typeof e?.status === 'number' ? e.status : undefined;
  if (typeof status === 'number') {
    // gaxios keeps no body for `responseType: 'stream'` errors, but puts it in the message.
    let text = await bodyText(e.response?.data);
    if (text === '' && typeof e.message === 'string' && e.message.trimStart().startsWith('{')) text = e.message;
    let body: GoogleErrorBody = {};
    try {
      body = JSON.parse(text) as GoogleErrorBody;
    } catch {
      // HTML or empty body.
    }
    const first = body.error?.errors?.[0];
    const reason = first?.reason ?? (body.error?.status ? body.error.status : `http${status}`);
    const message = sanitize((body.error?.message ?? first?.message ?? text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200)) || `HTTP ${status}`);
    const hint = QUOTA_HINTS[reason];
    if (hint && reason !== 'downloadQuotaExceeded') return new QuotaError(`${status} ${reason}: ${message} (${hint})`, { cause: err });
    return new DriveError(status, reason, `${status} ${reason}: ${message}${hint ? ` (${hint})` : ''}`, {
      retryAfterMs: parseRetryAfter(headerOf(e.response?.headers, 'retry-after')),
      cause: err,
    });
  }
  if (err instanceof Error) {
    const clean = new Error(sanitize(err.message), { cause: err }) as Error & { code?: unknown };
    clean.code = (err as { code?: unknown }).code;
    clean.name = err.name;
    return clean;
  }
  return err;
}

/**
 * Drive answers with JSON objects; anything else (an HTML page, truncated or foreign JSON, an empty body) means that
 * `api_url` does not lead to the Drive API, and is refused here instead of failing later on a missing field.
 */
export function driveAnswer<T extends object>(data: unknown, what: string, needs?: string): T {
  const ok = typeof data === 'object' && data !== null && !Array.isArray(data);
  if (ok && (needs === undefined || typeof (data as Record<string, unknown>)[needs] === 'string')) return data as T;
  const shape = typeof data === 'string' ? (data.trim() === '' ? 'an empty body' : 'text that is not JSON') : ok ? `an object without ${needs}` : `${Array.isArray(data) ? 'an array' : String(data)}`;
  throw new ServiceError('badAnswer', `${what}: the answer is not a Google Drive API answer (${shape}); check api_url`);
}

/** googleapis authentication that takes its bearer token from the TokenManager on every request. */
class ManagedAuth extends OAuth2Client {
  private readonly tokens: TokenManager;
  constructor(tokens: TokenManager) {
    super();
    this.tokens = tokens;
  }
  protected override async getRequestMetadataAsync(): Promise<{ headers: Headers }> {
    return { headers: new Headers({ authorization: `Bearer ${await this.tokens.token()}` }) };
  }
}

/** The options every connector passes to `connectDrive`. */
export interface DriveConnectOptions extends AuthValues {
  drive?: string;
  rootFolderId?: string;
  apiUrl: string;
  tokenUrl: string;
  /** Longest one request may take, and longest a download may stall (ms). */
  timeout: number;
  sharedWithMe?: boolean;
}

/** A Drive folder the connector starts from. */
export interface StartFolder {
  id: string;
  /** Shared drive id when the folder is in a shared drive. */
  driveId?: string;
  /** Human description for messages: `My Drive`, `shared drive "Team"`, `folder 1AbC…`. */
  label: string;
}

/** Escapes a value for a single-quoted string in a `q` query. */
export function quoteQuery(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A signed-in Drive client with the pacer and the start folder resolved. */
export class DriveClient {
  readonly api: drive_v3.Drive;
  readonly auth: OAuth2Client;
  readonly tokens: TokenManager;
  readonly pacer: Pacer;
  readonly log: Logger;
  readonly apiUrl: string;
  /** Longest one request may take, and longest a download may stall (ms). */
  readonly timeoutMs: number;
  /** The signed-in account's email. */
  email = '';
  /** Where the location path starts. */
  start!: StartFolder;
  private readonly maxResumes: number;
  /** The abort signal of the current attempt (its timeout), seen by `mo()` in whatever the attempt calls. */
  private readonly attempt = new AsyncLocalStorage<AbortSignal>();

  private constructor(api: drive_v3.Drive, auth: OAuth2Client, tokens: TokenManager, pacer: Pacer, log: Logger, apiUrl: string, maxResumes: number, timeoutMs: number) {
    this.timeoutMs = timeoutMs;
    this.api = api;
    this.auth = auth;
    this.tokens = tokens;
    this.pacer = pacer;
    this.log = log;
    this.apiUrl = apiUrl;
    this.maxResumes = maxResumes;
  }

  /** Signs in (checking the credentials with about.get) and resolves the shared drive and start folder. */
  static async connect(ctx: ConnectorContext<unknown>, o: DriveConnectOptions, readonly: boolean): Promise<DriveClient> {
    if (o.drive !== undefined && o.rootFolderId !== undefined) throw new ConfigError('root_folder_id', 'cannot be combined with drive: give one starting point');
    if (o.sharedWithMe && (o.drive !== undefined || o.rootFolderId !== undefined)) {
      throw new ConfigError('shared_with_me', `cannot be combined with ${o.drive !== undefined ? 'drive' : 'root_folder_id'}`);
    }
    const creds = await credentialsFrom(o, (v) => ctx.addSecret(v));
    const { drive_v3: api } = await import('googleapis/build/src/apis/drive/v3.js');
    const pacer = ctx.pacer({ classify, log: ctx.log, signal: ctx.signal });
    const tokens = new TokenManager(creds, {
      tokenUrl: o.tokenUrl,
      scope: readonly ? SCOPE_DRIVE_READONLY : SCOPE_DRIVE,
      pacer: ctx.pacer({ log: ctx.log, signal: ctx.signal }),
      log: ctx.log,
      addSecret: (v) => ctx.addSecret(v),
      signal: ctx.signal,
      timeoutMs: o.timeout,
    });
    const auth = new ManagedAuth(tokens);
    const drive = new api.Drive({ auth, rootUrl: o.apiUrl, retry: false } as unknown as ConstructorParameters<typeof api.Drive>[0]);
    const maxRetries = (ctx.options as { maxRetries?: number }).maxRetries ?? 10;
    const client = new DriveClient(drive, auth, tokens, pacer, ctx.log, o.apiUrl, maxRetries, o.timeout);
    const about = await client.call('sign in to Google Drive', () => drive.about.get({ fields: 'user(emailAddress)' }, client.mo()));
    client.email = driveAnswer<drive_v3.Schema$About>(about.data, 'sign in to Google Drive').user?.emailAddress ?? 'unknown';
    client.start = await client.resolveStart(o);
    return client;
  }

  /**
   * Method options for googleapis calls: the root URL per call (media uploads ignore the per-API one), no gaxios retries,
   * and the signal that enforces `timeout` on the current attempt (streamed answers get an idle timer, see `streamed`).
   * gaxios's own `timeout` is not used: it keeps an AbortSignal.timeout alive for the whole duration after each request,
   * which held tens of MB across thousands of requests.
   */
  mo(extra: Record<string, unknown> = {}): { rootUrl: string } & Record<string, unknown> {
    const signal = this.attempt.getStore();
    return { rootUrl: this.apiUrl, retry: false, ...(signal ? { signal } : {}), ...extra };
  }

  /** The abort signal of the current attempt, for requests made outside googleapis (`auth.request`). */
  get signal(): AbortSignal | undefined {
    return this.attempt.getStore();
  }

  /**
   * Starts a streamed request with an idle timer: aborted when the answer or any piece of the body takes longer than
   * `timeout` (a whole-request timeout would cut long downloads).
   */
  async streamed(
    what: string,
    start: (signal: AbortSignal) => Promise<{ data: unknown; status?: number }>,
  ): Promise<{ body: Readable; status: number; alive: () => void; done: () => void }> {
    return this.call(what, async () => {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), this.timeoutMs);
      try {
        const res = await start(ac.signal);
        return { body: res.data as Readable, status: res.status ?? 200, alive: () => timer.refresh(), done: () => clearTimeout(timer) };
      } catch (err) {
        clearTimeout(timer);
        throw err;
      }
    });
  }

  /** Parameters that make every call work in shared drives as well as My Drive. */
  get driveParams(): { supportsAllDrives: true } {
    return { supportsAllDrives: true };
  }

  /** files.list parameters for the start folder's corpus. */
  corpus(): Record<string, unknown> {
    return this.start?.driveId
      ? { corpora: 'drive', driveId: this.start.driveId, includeItemsFromAllDrives: true, supportsAllDrives: true }
      : { corpora: 'user', supportsAllDrives: true };
  }

  /**
   * Runs one API call through the pacer: throttling and 5xx retried, a 401 renews the token and retries (a second
   * refusal after renewal is an AuthError), errors normalized and prefixed with `what`.
   */
  async call<T>(what: string, fn: (attempt: number) => Promise<T>): Promise<T> {
    let refused = 0;
    try {
      return await this.pacer.call(
        what,
        async (attempt) => {
          // The token this attempt most likely sends (gaxios redacts it from errors): a 401 forgets exactly that one.
          const sent = this.tokens.current;
          const ac = new AbortController();
          const timer = setTimeout(() => ac.abort(), this.timeoutMs);
          try {
            return await this.attempt.run(ac.signal, () => fn(attempt));
          } catch (err) {
            const e = await normalizeError(err);
            if (e instanceof DriveError && e.httpStatus === 401) {
              this.tokens.invalidate(sent);
              if (this.tokens.isStatic) throw this.tokens.refusedStaticError();
              if (++refused > 2) throw new AuthError(`Google Drive refused fresh access tokens (${e.message})`, { cause: e });
              this.log.debug('access token refused; renewing it', { what });
            }
            throw e;
          } finally {
            clearTimeout(timer);
          }
        },
        classify,
      );
    } catch (err) {
      if (err instanceof DriveError && !(err instanceof RetriesExhaustedError)) throw err.withContext(what);
      if (err instanceof QuotaError) throw new QuotaError(`${what}: ${err.message}`, { cause: err });
      if (err instanceof KlosetError) throw err;
      throw new ServiceError('network', `${what}: ${sanitize(err instanceof Error ? err.message : String(err))}`, { cause: err });
    }
  }

  private async resolveStart(o: DriveConnectOptions): Promise<StartFolder> {
    if (o.drive !== undefined) {
      const d = await this.findSharedDrive(o.drive);
      return { id: d.id, driveId: d.id, label: `shared drive "${d.name}"` };
    }
    if (o.rootFolderId !== undefined) {
      let f: DriveFile;
      try {
        f = await this.get(o.rootFolderId, 'id,name,mimeType,driveId', 'look up root_folder_id');
      } catch (err) {
        if (err instanceof DriveError && err.httpStatus === 404) {
          throw new ConfigError('root_folder_id', `no folder with id ${o.rootFolderId} is visible to ${this.email}`);
        }
        throw err;
      }
      if (f.mimeType !== FOLDER_MIME) throw new ConfigError('root_folder_id', `${o.rootFolderId} is not a folder (it is ${f.mimeType ?? 'unknown'})`);
      return { id: f.id as string, driveId: f.driveId ?? undefined, label: `folder "${f.name ?? ''}" (${f.id})` };
    }
    const root = await this.get('root', 'id', 'look up My Drive');
    return { id: root.id as string, label: 'My Drive' };
  }

  private async findSharedDrive(nameOrId: string): Promise<{ id: string; name: string }> {
    if (/^0A[A-Za-z0-9_-]{10,}$/.test(nameOrId)) {
      try {
        const d = await this.call(`look up shared drive ${nameOrId}`, () => this.api.drives.get({ driveId: nameOrId, fields: 'id,name' }, this.mo()));
        const data = driveAnswer<drive_v3.Schema$Drive>(d.data, `look up shared drive ${nameOrId}`, 'id');
        return { id: data.id as string, name: data.name ?? nameOrId };
      } catch (err) {
        if (!(err instanceof DriveError && err.httpStatus === 404)) throw err;
      }
    }
    const found: Array<{ id: string; name: string }> = [];
    let pageToken: string | undefined;
    do {
      const res = await this.call('list shared drives', () =>
        this.api.drives.list({ pageSize: 100, pageToken, fields: 'nextPageToken,drives(id,name)' }, this.mo()),
      );
      const page = driveAnswer<drive_v3.Schema$DriveList>(res.data, 'list shared drives');
      for (const d of Array.isArray(page.drives) ? page.drives : []) if (d?.name === nameOrId && typeof d.id === 'string') found.push({ id: d.id, name: d.name });
      pageToken = typeof page.nextPageToken === 'string' ? page.nextPageToken : undefined;
    } while (pageToken);
    if (found.length === 0) throw new ConfigError('drive', `no shared drive named ${JSON.stringify(nameOrId)} is visible to ${this.email}`);
    if (found.length > 1) {
      throw new ConfigError('drive', `${found.length} shared drives are named ${JSON.stringify(nameOrId)}; give the id of one: ${found.map((d) => d.id).join(', ')}`);
    }
    return found[0] as { id: string; name: string };
  }

  /** files.get of metadata. */
  async get(id: string, fields: string, what: string): Promise<DriveFile> {
    const res = await this.call(what, () => this.api.files.get({ fileId: id, fields, ...this.driveParams }, this.mo()));
    return driveAnswer<DriveFile>(res.data, what, 'id');
  }

  /** Pages through files.list for `q`; yields each page as it arrives (pageSize 1000, only `fields` per file). */
  async *listPages(q: string, what: string, options: { fields?: string; orderBy?: string; corpus?: Record<string, unknown> } = {}): AsyncGenerator<DriveFile[]> {
    let pageToken: string | undefined;
    do {
      const res = await this.call(what, () =>
        this.api.files.list(
          {
            q,
            pageSize: 1000,
            pageToken,
            spaces: 'drive',
            fields: `nextPageToken,files(${options.fields ?? FILE_FIELDS})`,
            ...(options.orderBy ? { orderBy: options.orderBy } : {}),
            ...(options.corpus ?? this.corpus()),
          },
          this.mo(),
        ),
      );
      const page = driveAnswer<drive_v3.Schema$FileList>(res.data, what);
      if (page.files !== undefined && !Array.isArray(page.files)) {
        throw new ServiceError('badAnswer', `${what}: the answer is not a Google Drive API answer (files is not a list); check api_url`);
      }
      // Items without an id cannot be anything of Drive's: they are left out rather than failing later.
      yield ((page.files ?? []) as DriveFile[]).filter((f) => typeof f?.id === 'string');
      pageToken = typeof page.nextPageToken === 'string' ? page.nextPageToken : undefined;
    } while (pageToken);
  }

  /** Every untrashed child of a folder named `name` (all children when undefined), oldest first. */
  async children(parentId: string, what: string, options: { name?: string; foldersOnly?: boolean; fields?: string } = {}): Promise<DriveFile[]> {
    const terms = [`${quoteQuery(parentId)} in parents`, 'trashed = false'];
    if (options.name !== undefined) terms.push(`name = ${quoteQuery(options.name)}`);
    if (options.foldersOnly) terms.push(`mimeType = ${quoteQuery(FOLDER_MIME)}`);
    const out: DriveFile[] = [];
    for await (const page of this.listPages(terms.join(' and '), what, { fields: options.fields, orderBy: 'createdTime' })) out.push(...page);
    return out;
  }

  /** Creates a folder. */
  async createFolder(parentId: string, name: string, what: string, modifiedTime?: Date): Promise<DriveFile> {
    const res = await this.call(what, () =>
      this.api.files.create(
        {
          requestBody: { name, mimeType: FOLDER_MIME, parents: [parentId], ...(modifiedTime ? { modifiedTime: modifiedTime.toISOString() } : {}) },
          fields: 'id,name,mimeType,createdTime',
          ...this.driveParams,
        },
        this.mo(),
      ),
    );
    return driveAnswer<DriveFile>(res.data, what, 'id');
  }

  /**
   * Follows folder names from `baseId`; the oldest folder wins where names repeat. Missing folders are created when
   * `create` is set, otherwise the result is undefined.
   */
  async resolveFolder(baseId: string, segments: readonly string[], create: boolean, label: string): Promise<{ id: string; created: boolean } | undefined> {
    let id = baseId;
    let created = false;
    let path = '';
    for (const name of segments) {
      path += `/${name}`;
      const found = created ? [] : await this.children(id, `look up folder ${JSON.stringify(path)} in ${label}`, { name, foldersOnly: true, fields: 'id,createdTime' });
      if (found[0]?.id) {
        id = found[0].id;
        continue;
      }
      if (!create) return undefined;
      id = (await this.createFolder(id, name, `create folder ${JSON.stringify(path)} in ${label}`)).id as string;
      created = true;
    }
    return { id, created };
  }

  /** Updates metadata. */
  async update(id: string, requestBody: Record<string, unknown>, what: string): Promise<DriveFile> {
    const res = await this.call(what, () => this.api.files.update({ fileId: id, requestBody, fields: 'id,name,mimeType,modifiedTime', ...this.driveParams }, this.mo()));
    return driveAnswer<DriveFile>(res.data, what, 'id');
  }

  /** Deletes permanently (not to the trash: trashed files still count against the quota). */
  async delete(id: string, what: string): Promise<void> {
    await this.call(what, () => this.api.files.delete({ fileId: id, ...this.driveParams }, this.mo()));
  }

  /**
   * Streams a file's content (or `range` of it) with ranged media downloads; a dropped connection resumes from the
   * last byte received. Without a range, the MD5 is verified at the end (a mismatch fails the stream). A size of -1
   * means unknown (read to the end).
   */
  download(file: { id: string; size: number; md5?: string }, what: string, range?: ByteRange): Readable {
    const known = file.size >= 0;
    const start = range?.offset ?? 0;
    const end = range ? (known ? Math.min(range.offset + range.length, file.size) : range.offset + range.length) : known ? file.size : Infinity;
    const verify = range === undefined && file.md5 !== undefined;
    if (start >= end) return Readable.from([]);
    const client = this;
    async function* generate(): AsyncGenerator<Buffer> {
      const hash = verify ? createHash('md5') : undefined;
      let pos = start;
      let resumes = 0;
      let finished = false;
      while (!finished && pos < end) {
        const headers: Record<string, string> = pos > 0 || (range !== undefined && end < (known ? file.size : Infinity)) ? { Range: `bytes=${pos}-${Number.isFinite(end) ? end - 1 : ''}` } : {};
        const { body, status, alive, done } = await client.streamed(what, (signal) =>
          client.api.files.get({ fileId: file.id, alt: 'media', ...client.driveParams }, client.mo({ responseType: 'stream', headers, signal })),
        );
        // An answer that ignored the Range would hand on bytes from the wrong place.
        if (headers.Range !== undefined && status !== 206) {
          done();
          body.destroy();
          throw new ServiceError('rangeIgnored', `${what}: asked for bytes ${pos}-${Number.isFinite(end) ? end - 1 : ''}, got HTTP ${status} instead of 206 Partial Content`);
        }
        try {
          for await (const chunk of body) {
            alive();
            const buf = chunk as Buffer;
            const piece = pos + buf.length > end ? buf.subarray(0, Math.max(0, end - pos)) : buf;
            if (piece.length > 0) {
              hash?.update(piece);
              pos += piece.length;
              yield piece;
            }
            // Read on to the end of the answer (Drive sends exactly the range): a response left unfinished keeps its
            // connection out of the pool, and thousands of small Gets then pile up sockets. Only an answer longer
            // than asked for is cut short.
            if (piece.length < buf.length) break;
          }
          if (pos < end && Number.isFinite(end)) throw Object.assign(new Error('premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
          finished = true;
        } catch (err) {
          if (!isTransientNetworkError(err) || ++resumes > client.maxResumes) {
            throw new ServiceError('download', `${what}: the download broke off at byte ${pos}: ${sanitize(err instanceof Error ? err.message : String(err))}`, { cause: err });
          }
          client.log.debug('download interrupted; resuming', { what, at: pos });
        } finally {
          done();
          body.destroy();
        }
      }
      if (hash) {
        const got = hash.digest('hex');
        if (got !== file.md5) throw new ServiceError('checksumMismatch', `${what}: MD5 mismatch: Drive says ${file.md5}, the downloaded bytes give ${got}`);
      }
    }
    return Readable.from(generate(), { objectMode: false });
  }

  /**
   * Streams the export of a native document to `mime` (Google exports at most 10 MB through this call). Exports cannot
   * be resumed: a connection dropped before the first byte starts over, later it fails the stream.
   */
  async exportDoc(id: string, mime: string, what: string): Promise<Readable> {
    const client = this;
    const start = (): Promise<{ body: Readable; status: number; alive: () => void; done: () => void }> =>
      client.streamed(what, (signal) => client.api.files.export({ fileId: id, mimeType: mime }, client.mo({ responseType: 'stream', signal })));
    let current = await start();
    async function* generate(): AsyncGenerator<Buffer> {
      for (let attempt = 0; ; attempt++) {
        let sent = false;
        try {
          for await (const chunk of current.body) {
            current.alive();
            sent = true;
            yield chunk as Buffer;
          }
          return;
        } catch (err) {
          if (sent || !isTransientNetworkError(err) || attempt >= client.maxResumes) {
            throw new ServiceError('export', `${what}: the export broke off: ${sanitize(err instanceof Error ? err.message : String(err))}`, { cause: err });
          }
        } finally {
          current.done();
          current.body.destroy();
        }
        current = await start();
      }
    }
    return Readable.from(generate(), { objectMode: false });
  }

  /** Releases timers. */
  close(): void {
    this.tokens.close();
  }
}

/** The NotFoundError for a missing path below the start folder. */
export function folderNotFound(client: DriveClient, path: string): NotFoundError {
  return new NotFoundError(`folder ${JSON.stringify(path)} not found in ${client.start.label} of ${client.email}`);
}
