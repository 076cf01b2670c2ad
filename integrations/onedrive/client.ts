// The Graph client: production middleware chain, one retry layer (the SDK pacer), error mapping, drive and item helpers.
import {
  AuthenticationHandler,
  AuthenticationHandlerOptions,
  Client,
  GraphError,
  HTTPMessageHandler,
  RedirectHandler,
  RedirectHandlerOptions,
  ResponseType,
  RetryHandler,
  RetryHandlerOptions,
  TelemetryHandler,
  type Context,
  type GraphRequest,
  type Middleware,
  type MiddlewareOptions,
} from '@microsoft/microsoft-graph-client';
import {
  ConfigError,
  describeError,
  isTransientNetworkError,
  KlosetError,
  NotFoundError,
  parseRetryAfter,
  QuotaError,
  RetriesExhaustedError,
  ServiceError,
  type Classification,
  type Logger,
  type Pacer,
} from '../../shared/index.ts';
import type { CollectionPage, Drive, DriveItem, GraphErrorBody, Site } from './api.ts';
import type { TokenSource } from './oauth.ts';
import { REGIONS, type CommonValues } from './options.ts';

/** Items asked for per page of `children` (Graph's maximum page size). */
export const PAGE_SIZE = 1000;

/** An error answered by Graph, the identity platform or a pre-authenticated URL (or a network failure on the way). */
export class OneDriveError extends ServiceError {
  override name = 'OneDriveError';
  /** Milliseconds the service asked us to wait (Retry-After), when it said. */
  readonly retryAfterMs: number | undefined;
  constructor(code: string, message: string, options: { httpStatus?: number; retryAfterMs?: number; cause?: unknown } = {}) {
    super(code, message, { httpStatus: options.httpStatus, cause: options.cause });
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The same error with `what` (the action and its subject) in front of the message. */
  within(what: string): OneDriveError {
    return new OneDriveError(this.serviceCode, `${what}: ${this.message}`, {
      httpStatus: this.httpStatus,
      retryAfterMs: this.retryAfterMs,
      cause: this,
    });
  }
}

/** Service codes that mean "slow down" whatever the HTTP status (https://learn.microsoft.com/graph/throttling). */
const THROTTLE_CODES = new Set(['activityLimitReached', 'tooManyRequests', 'TooManyRequests', 'throttledRequest']);
/** Service codes that mean the drive is full. */
const QUOTA_CODES = new Set(['quotaLimitReached', 'insufficientStorage', 'QuotaLimitReached']);

/** Graph's classifier: throttling (429, 503, 509, activityLimitReached) with Retry-After; 5xx and network transient; quota fatal. */
export function classify(err: unknown): Classification {
  if (err instanceof OneDriveError) {
    const s = err.httpStatus;
    if (err.serviceCode === 'network' || err.serviceCode === 'timeout') return { kind: 'transient' };
    if (err.serviceCode === 'aborted') return { kind: 'permanent' };
    if (QUOTA_CODES.has(err.serviceCode) || s === 507) return { kind: 'fatal' };
    if (THROTTLE_CODES.has(err.serviceCode) || s === 429 || s === 503 || s === 509) {
      return { kind: 'throttle', retryAfterMs: err.retryAfterMs };
    }
    // A 401 reaches the classifier only after the token was invalidated: the next attempt uses a fresh one.
    if (s === 401) return { kind: 'transient' };
    if (s !== undefined && (s >= 500 || s === 408)) return { kind: 'transient' };
    return { kind: 'permanent' };
  }
  if (isTransientNetworkError(err)) return { kind: 'transient' };
  return { kind: 'permanent' };
}

/** Where requests go: the cloud's Graph and login hosts, and an optional base URL that replaces both (tests, proxies). */
export interface Endpoints {
  graph: string;
  login: string;
  rewrite: string | undefined;
}

/** The endpoints of the configured region and `endpoint` override. */
export function endpointsOf(o: Pick<CommonValues, 'region' | 'endpoint'>): Endpoints {
  const r = REGIONS[o.region];
  return { graph: r.graph, login: r.login, rewrite: o.endpoint?.replace(/\/+$/, '') };
}

/** `url` with Microsoft's host replaced by the override, when one is set (path and query are kept). */
export function rewriteUrl(url: string, endpoints: Endpoints): string {
  if (!endpoints.rewrite) return url;
  if (!url.startsWith(endpoints.graph) && !url.startsWith(endpoints.login)) return url;
  const u = new URL(url);
  return `${endpoints.rewrite}${u.pathname}${u.search}`;
}

/** Turns a fetch failure into a OneDriveError the classifier understands (network, timeout or our own abort). */
export function networkError(err: unknown, signal?: AbortSignal): OneDriveError {
  const e = err as { name?: string; cause?: { code?: string; message?: string } };
  if (signal?.aborted && e?.name !== 'TimeoutError') return new OneDriveError('aborted', 'the request was cancelled', { cause: err });
  if (e?.name === 'TimeoutError') return new OneDriveError('timeout', 'the request timed out', { cause: err });
  const detail = e?.cause?.code ?? e?.cause?.message ?? describeError(err);
  return new OneDriveError('network', `network error (${detail})`, { cause: err });
}

/** Reads an error reply (Graph `{error:{code,message}}` or an OAuth error) into a OneDriveError; never quotes raw bodies. */
export async function errorFromResponse(res: Response): Promise<OneDriveError> {
  const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
  let code = `HTTP ${res.status}`;
  let message = res.statusText || 'request failed';
  try {
    const text = await res.text();
    const body = JSON.parse(text) as { error?: GraphErrorBody['error'] | string; error_description?: string };
    const e = body.error;
    if (e && typeof e === 'object') {
      code = e.code || code;
      message = e.message || message;
    } else if (typeof e === 'string') {
      code = e;
      message = (body.error_description ?? message).split(/\r?\n/)[0] ?? message;
    }
  } catch {
    // not JSON (an HTML error page or nothing): keep the status line
  }
  return new OneDriveError(code, `${code}: ${message} (HTTP ${res.status})`, { httpStatus: res.status, retryAfterMs });
}

/**
 * Runs `fn` with a signal that aborts after `timeoutMs` or when `signal` aborts, and releases both when `fn` settles.
 * (AbortSignal.timeout and AbortSignal.any keep every request, body included, reachable until the timer fires or
 * the long-lived shutdown signal is collected: thousands of requests then pin hundreds of megabytes.)
 */
export async function withDeadline<T>(signal: AbortSignal, timeoutMs: number, fn: (s: AbortSignal) => Promise<T>): Promise<T> {
  const c = new AbortController();
  const timer = setTimeout(() => c.abort(new DOMException('the request timed out', 'TimeoutError')), timeoutMs);
  const onAbort = (): void => c.abort(signal.reason);
  if (signal.aborted) c.abort(signal.reason);
  else signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await fn(c.signal);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * A request without the Graph client (pre-authenticated upload URLs, the identity platform), for small replies:
 * `timeoutMs` bounds the whole exchange, body included; failures become OneDriveErrors.
 */
export async function plainFetch(url: string, init: RequestInit, timeoutMs: number, signal: AbortSignal): Promise<Response> {
  try {
    return await withDeadline(signal, timeoutMs, async (s) => {
      const res = await fetch(url, { ...init, signal: s });
      const body = res.status === 204 || res.status === 304 ? null : await res.arrayBuffer();
      return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
    });
  } catch (err) {
    throw networkError(err, signal);
  }
}

/** A Graph client error as a OneDriveError. */
function fromGraphError(err: unknown, signal: AbortSignal | undefined): unknown {
  if (err instanceof KlosetError) return err;
  if (err instanceof GraphError) {
    if (err.code === NETWORK_ERROR_NAME) {
      const [kind, ...rest] = (err.message || '').split(': ');
      return new OneDriveError(kind === 'timeout' || kind === 'aborted' ? kind : 'network', rest.join(': ') || err.message, { cause: err });
    }
    const status = err.statusCode > 0 ? err.statusCode : undefined;
    const code = err.code || (status ? `HTTP ${status}` : 'error');
    const retryAfterMs = parseRetryAfter(err.headers?.get?.('retry-after'));
    const text = err.message && err.message !== code ? `${code}: ${err.message}` : code;
    return new OneDriveError(code, status ? `${text} (HTTP ${status})` : text, { httpStatus: status, retryAfterMs, cause: err });
  }
  if (isTransientNetworkError(err)) return networkError(err, signal);
  return err;
}

const NETWORK_ERROR_NAME = 'OneDriveNetworkError';

/**
 * The last middleware before HTTPMessageHandler: maps Microsoft's hosts to the `endpoint` override when one is set
 * (TEST-SERVERS.md §4: the production chain and baseUrl stay untouched, so nextLinks keep working), and gives network
 * failures a recognisable name (the Graph client keeps only the name and message of what fetch threw).
 *
 * JSON answers (listing pages, items, errors) are read here, within the request: the Graph client would otherwise read
 * them after the middleware chain and report a body cut short ("TypeError: terminated") as a GraphError carrying the
 * answer's status (200), which no classifier can tell from a real answer. Read here, a cut body is a network error
 * and is retried like any dropped connection. Other bodies (file bytes served directly) are left streaming.
 */
class TransportMiddleware implements Middleware {
  private next: Middleware | undefined;
  private readonly endpoints: Endpoints;
  constructor(endpoints: Endpoints) {
    this.endpoints = endpoints;
  }
  setNext(next: Middleware): void {
    this.next = next;
  }
  async execute(context: Context): Promise<void> {
    if (this.endpoints.rewrite) {
      const url = typeof context.request === 'string' ? context.request : context.request.url;
      const to = rewriteUrl(url, this.endpoints);
      if (to !== url) context.request = to;
    }
    try {
      await (this.next as Middleware).execute(context);
      const res = context.response;
      if (res?.body && /\bjson\b/i.test(res.headers.get('content-type') ?? '')) context.response = await buffered(res);
    } catch (err) {
      const signal = context.options?.signal ?? undefined;
      const e = networkError(err, signal ?? undefined);
      const wrapped = new Error(`${e.serviceCode}: ${e.message}`);
      wrapped.name = NETWORK_ERROR_NAME;
      throw wrapped;
    }
  }
}

/** `res` with its whole body read (a body cut short throws, like a dropped connection). */
async function buffered(res: Response): Promise<Response> {
  const body = await res.arrayBuffer();
  const copy = new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  Object.defineProperty(copy, 'url', { value: res.url });
  return copy;
}

/** HTTP methods used with Graph. */
export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Options of one Graph request. */
export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** Return the raw Response (any status) instead of parsed JSON. */
  raw?: boolean;
  /** Do not follow redirects (to read a download Location). */
  noRedirect?: boolean;
}

/** What a GraphClient needs. */
export interface GraphClientOptions {
  tokens: TokenSource;
  endpoints: Endpoints;
  pacer: Pacer;
  timeoutMs: number;
  signal: AbortSignal;
  log: Logger;
}

/** A Graph client bound to one drive once `useDrive` ran. */
export class GraphClient {
  readonly tokens: TokenSource;
  readonly endpoints: Endpoints;
  readonly pacer: Pacer;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  readonly log: Logger;
  private readonly client: Client;
  private driveInfo: Drive | undefined;
  private readonly folders = new Map<string, Promise<DriveItem>>();

  constructor(o: GraphClientOptions) {
    this.tokens = o.tokens;
    this.endpoints = o.endpoints;
    this.pacer = o.pacer;
    this.timeoutMs = o.timeoutMs;
    this.signal = o.signal;
    this.log = o.log;
    // The default chain (MiddlewareFactory.getDefaultMiddlewareChain) with retries off: the pacer is the one retry layer.
    const auth = new AuthenticationHandler({ getAccessToken: () => this.tokens.token() });
    const retry = new RetryHandler(new RetryHandlerOptions(0, 0));
    const redirect = new RedirectHandler(new RedirectHandlerOptions());
    const telemetry = new TelemetryHandler();
    const transport = new TransportMiddleware(o.endpoints);
    const http = new HTTPMessageHandler();
    auth.setNext(retry);
    retry.setNext(redirect);
    redirect.setNext(telemetry);
    telemetry.setNext(transport);
    transport.setNext(http);
    this.client = Client.initWithMiddleware({ middleware: auth, baseUrl: `${o.endpoints.graph}/`, defaultVersion: 'v1.0' });
  }

  /** The drive chosen by `useDrive`. */
  get drive(): Drive {
    if (!this.driveInfo) throw new Error('internal: no drive selected');
    return this.driveInfo;
  }

  /** `/drives/{id}`. */
  get drivePath(): string {
    return `/drives/${encodeURIComponent(this.drive.id)}`;
  }

  /**
   * One Graph request through the pacer: a fresh token per attempt, 401 answered by one token refresh, errors mapped
   * to OneDriveError (with `what` in front), AuthError, or QuotaError.
   */
  async request<T>(what: string, method: Method, path: string, o: RequestOptions = {}): Promise<T> {
    let refreshedAfter401 = false;
    try {
      return await this.pacer.call(
        what,
        async () => {
          const token = await this.tokens.token();
          let req = this.client.api(path);
          if (o.query) req = req.query(o.query);
          if (o.headers) req = req.headers(o.headers);
          const middleware: MiddlewareOptions[] = [new AuthenticationHandlerOptions({ getAccessToken: () => Promise.resolve(token) })];
          if (o.noRedirect) middleware.push(new RedirectHandlerOptions(0));
          req = req.middlewareOptions(middleware);
          if (o.raw) req = req.responseType(ResponseType.RAW);
          try {
            return await withDeadline(this.signal, this.timeoutMs, (deadline) => send<T>(req.option('signal', deadline), method, o));
          } catch (err) {
            const e = fromGraphError(err, this.signal);
            if (e instanceof OneDriveError && e.httpStatus === 401) {
              if (this.tokens.refreshable && !refreshedAfter401) {
                refreshedAfter401 = true;
                this.tokens.invalidate(token);
                throw e;
              }
              throw this.tokens.refused(e);
            }
            throw e;
          }
        },
        classify,
      );
    } catch (err) {
      throw contextualise(err, what);
    }
  }

  /** Every item of a paged collection, following `@odata.nextLink`. */
  async *pages<T>(what: string, path: string, query?: Record<string, string>): AsyncGenerator<CollectionPage<T>> {
    let next: string | undefined = path;
    let q = query;
    while (next) {
      const page: CollectionPage<T> = await this.request<CollectionPage<T>>(what, 'GET', next, q ? { query: q } : {});
      yield page;
      next = page['@odata.nextLink'];
      q = undefined;
    }
  }

  /** Picks the drive: drive_id, else the site's default library, else the signed-in user's drive; checks drive_type. */
  async useDrive(o: Pick<CommonValues, 'driveId' | 'site' | 'driveType'>): Promise<Drive> {
    let drive: Drive;
    if (o.driveId) {
      drive = await this.request<Drive>(`cannot open drive ${o.driveId}`, 'GET', `/drives/${encodeURIComponent(o.driveId)}`).catch((err: unknown) => {
        throw notFoundAs(err, () => new ConfigError('drive_id', `no drive ${o.driveId} is reachable with these credentials`));
      });
    } else if (o.site) {
      const siteId = await this.siteId(o.site);
      drive = await this.request<Drive>(`cannot open the document library of site ${o.site}`, 'GET', `/sites/${siteId}/drive`);
    } else {
      drive = await this.request<Drive>('cannot open the signed-in user’s drive', 'GET', '/me/drive');
    }
    if (o.driveType && drive.driveType && drive.driveType !== o.driveType) {
      throw new ConfigError('drive_type', `expected a ${o.driveType} drive, but drive ${drive.id} is ${drive.driveType}`);
    }
    this.driveInfo = drive;
    return drive;
  }

  private async siteId(site: string): Promise<string> {
    if (!/^https?:\/\//i.test(site)) return encodeURIComponent(site);
    let u: URL;
    try {
      u = new URL(site);
    } catch {
      throw new ConfigError('site', `expected a SharePoint site URL or ID, got ${JSON.stringify(site)}`);
    }
    const rel = u.pathname.replace(/\/+$/, '');
    const path = rel ? `/sites/${u.hostname}:${encodePath(rel)}` : `/sites/${u.hostname}`;
    const found = await this.request<Site>(`cannot find SharePoint site ${site}`, 'GET', path).catch((err: unknown) => {
      throw notFoundAs(err, () => new ConfigError('site', `no SharePoint site at ${site}`));
    });
    return encodeURIComponent(found.id);
  }

  /** The Graph path of the item at `path` (absolute, in the drive): `/drives/{id}/root` or `/drives/{id}/root:/a/b:`. */
  itemPath(path: string): string {
    return path === '/' ? `${this.drivePath}/root` : `${this.drivePath}/root:${encodePath(path)}:`;
  }

  /** The Graph path of child `name` of folder `parentId`. */
  childPath(parentId: string, name: string): string {
    return `${this.drivePath}/items/${encodeURIComponent(parentId)}:/${encodeURIComponent(name)}:`;
  }

  /** The item at `path`, or undefined when there is none. */
  async itemAt(path: string, what = `cannot look up ${path}`): Promise<DriveItem | undefined> {
    try {
      return await this.request<DriveItem>(what, 'GET', this.itemPath(path));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Every child of folder `id`, page by page. */
  async *children(id: string, what: string): AsyncGenerator<DriveItem[]> {
    for await (const page of this.pages<DriveItem>(what, `${this.drivePath}/items/${encodeURIComponent(id)}/children`, {
      $top: String(PAGE_SIZE),
    })) {
      yield page.value;
    }
  }

  /**
   * The folder at `path`, created with its missing parents (like mkdir -p). Concurrent calls share one request per
   * folder; an existing file in the way is an error.
   */
  ensureFolder(path: string): Promise<DriveItem> {
    const known = this.folders.get(path);
    if (known) return known;
    const made = (async (): Promise<DriveItem> => {
      const existing = await this.itemAt(path, `cannot look up folder ${path}`);
      if (existing) {
        if (!existing.folder && !existing.root && !existing.package) throw new OneDriveError('notAFolder', `cannot use ${path} as a folder: a file has that name`);
        return existing;
      }
      const parent = await this.ensureFolder(dirOf(path));
      return this.createFolder(parent.id, baseOf(path), path);
    })();
    this.folders.set(path, made);
    made.catch(() => this.folders.delete(path));
    return made;
  }

  /** Remembers a folder created or found elsewhere. */
  knowFolder(path: string, item: DriveItem): void {
    if (!this.folders.has(path)) this.folders.set(path, Promise.resolve(item));
  }

  /** Forgets folders under `path` (after a delete). */
  forgetFolders(path: string): void {
    for (const k of this.folders.keys()) if (k === path || k.startsWith(`${path}/`)) this.folders.delete(k);
  }

  /** Creates folder `name` in `parentId`; when it already exists (409) returns the existing folder. */
  async createFolder(parentId: string, name: string, pathForMessages: string): Promise<DriveItem> {
    try {
      return await this.request<DriveItem>(`cannot create folder ${pathForMessages}`, 'POST', `${this.drivePath}/items/${encodeURIComponent(parentId)}/children`, {
        body: { name, folder: {}, '@microsoft.graph.conflictBehavior': 'fail' },
      });
    } catch (err) {
      if (!(err instanceof OneDriveError) || err.httpStatus !== 409) throw err;
      const existing = await this.request<DriveItem>(`cannot look up folder ${pathForMessages}`, 'GET', this.childPath(parentId, name));
      if (!existing.folder && !existing.package) throw new OneDriveError('nameAlreadyExists', `cannot create folder ${pathForMessages}: a file has that name`, { httpStatus: 409 });
      return existing;
    }
  }

  /** The pre-authenticated download URL of an item (`GET …/content` answers 302 with it). */
  async downloadUrl(itemApiPath: string, what: string): Promise<string> {
    const res = await this.request<Response>(what, 'GET', `${itemApiPath}/content`, { raw: true, noRedirect: true });
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel().catch(() => undefined);
      const location = res.headers.get('location');
      if (!location) throw new OneDriveError('noLocation', `${what}: the content redirect has no Location`, { httpStatus: res.status });
      return location;
    }
    if (res.ok) {
      // Some libraries serve the bytes directly; fall back to the item's downloadUrl property.
      await res.body?.cancel().catch(() => undefined);
      const item = await this.request<DriveItem>(what, 'GET', itemApiPath);
      const url = item['@microsoft.graph.downloadUrl'];
      if (!url) throw new OneDriveError('noDownloadUrl', `${what}: the service gave no download URL`);
      return url;
    }
    const err = await errorFromResponse(res);
    throw contextualise(err, what);
  }
}

/** Sends one prepared Graph request. */
async function send<T>(req: GraphRequest, method: Method, o: RequestOptions): Promise<T> {
  if (o.raw) {
    // The Graph client hands back raw responses whatever their status: errors must still reach the pacer.
    const res = (await (method === 'GET' ? req.get() : method === 'DELETE' ? req.delete() : req.post(o.body ?? {}))) as Response;
    if (res.status >= 400) throw await errorFromResponse(res);
    return res as T;
  }
  switch (method) {
    case 'GET':
      return (await req.get()) as T;
    case 'POST':
      return (await req.post(o.body ?? {})) as T;
    case 'PUT':
      return (await req.put(o.body)) as T;
    case 'PATCH':
      return (await req.patch(o.body)) as T;
    case 'DELETE':
      return (await req.delete()) as T;
  }
}

/** Adds `what` to a OneDriveError (RetriesExhaustedError already has it), turning quota errors into QuotaError. */
function contextualise(err: unknown, what: string): unknown {
  if (err instanceof RetriesExhaustedError) return err;
  if (err instanceof OneDriveError) {
    if (QUOTA_CODES.has(err.serviceCode) || err.httpStatus === 507) {
      return new QuotaError(`${what}: the drive is full (${err.serviceCode}); free some space or raise the quota`, { cause: err });
    }
    return err.within(what);
  }
  return err;
}

/** True for a Graph "not found" (404 / itemNotFound). */
export function isNotFound(err: unknown): boolean {
  if (err instanceof NotFoundError) return true;
  let cur: unknown = err;
  for (let i = 0; cur && i < 4; i++) {
    if (cur instanceof ServiceError && (cur.httpStatus === 404 || cur.serviceCode === 'itemNotFound')) return true;
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
}

/** `err` replaced by `make()` when it is a not-found error. */
function notFoundAs(err: unknown, make: () => Error): unknown {
  return isNotFound(err) ? make() : err;
}

/** Percent-encodes each segment of an absolute path for Graph path addressing (`/a b/c` → `/a%20b/c`). */
export function encodePath(path: string): string {
  return path
    .split('/')
    .map((s) => encodeURIComponent(s))
    .join('/');
}

/** Parent of a clean absolute path. */
export function dirOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** Last element of a clean absolute path. */
export function baseOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Joins a clean absolute folder path and a name. */
export function joinOne(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

