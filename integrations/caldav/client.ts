// The HTTP side of the caldav integration: keep-alive connections, Basic/Digest/Bearer/OAuth auth, retry classification, a fetch for tsdav.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import {
  AuthError,
  classifyHttpStatus,
  defaultClassifier,
  describeError,
  RetriesExhaustedError,
  ServiceError,
  type Classifier,
  type Logger,
  type Pacer,
} from '../../shared/index.ts';
import type { ConnectionOptions } from './options.ts';

/** Longest response body read into memory (a GET of one object, small DAV answers; multistatus answers are streamed). */
const MAX_BODY = 256 * 1024 * 1024;
/** Redirects followed for one request. */
const MAX_REDIRECTS = 5;
/** Seconds before expiry at which an OAuth access token is renewed. */
const TOKEN_MARGIN_S = 60;

const USER_AGENT = 'kloset-ts-caldav/0.1 (Plakar integration)';

/** One HTTP request to the DAV server. */
export interface DavRequest {
  method: string;
  url: URL | string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** WebDAV Depth header. */
  depth?: '0' | '1' | 'infinity';
  /** Follow 301/302/307/308 (default true); tsdav's discovery asks for manual redirects. */
  followRedirects?: boolean;
  /**
   * Reads the body of some answers as it arrives instead of buffering it: asked once per answer (each attempt, each
   * redirect or auth round) with its status and URL; a sink returned gets every chunk and then `end`, and the answer
   * comes back with an empty body. A sink that throws fails the request with its error (not retried). A retried
   * request gets a new sink, so what a sink hands on must bear being seen twice.
   */
  sink?: (status: number, url: URL) => BodySink | undefined;
}

/** Consumer of a streamed answer body. */
export interface BodySink {
  write(chunk: Buffer): void;
  end(): void;
}

/** A complete HTTP response (bodies are small: single objects and short answers; a sink may read the body instead). */
export interface DavResponse {
  status: number;
  statusText: string;
  headers: http.IncomingHttpHeaders;
  /** Header values as sent, one entry per header line (WWW-Authenticate may appear several times). */
  rawHeaders: string[];
  /** The body, empty when a sink read it. */
  body: Buffer;
  /** Bytes of body received (read by a sink or buffered). */
  bytes: number;
  /** The URL that answered (after redirects). */
  url: URL;
}

/**
 * An HTTP status the pacer may retry (429, 503, 5xx, 408): a ServiceError carrying the status and Retry-After. Its
 * message is only the status: the pacer names the request when retries run out.
 */
export class HttpStatusError extends ServiceError {
  override name = 'HttpStatusError';
  readonly retryAfter: string | undefined;
  constructor(status: number, statusText: string, retryAfter: string | undefined) {
    super(`http-${status}`, `${status} ${statusText}`.trim(), { httpStatus: status });
    this.retryAfter = retryAfter;
  }
}

/** Retry classification: 429/503 throttle with Retry-After, 5xx/408 and network failures transient, the rest permanent. */
export const classify: Classifier = (err) => {
  if (err instanceof HttpStatusError) return classifyHttpStatus(err.httpStatus ?? 0, err.retryAfter) ?? { kind: 'permanent' };
  return defaultClassifier(err);
};

/** `https://host[:port]` of a URL, for messages. */
export function originOf(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

const TLS_HINT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A network failure as one line naming the server, with a hint about the option most likely wrong. */
export function unreachableError(url: URL, err: unknown): ServiceError {
  const last = err instanceof RetriesExhaustedError ? err.last : err;
  const code = (last as { code?: unknown })?.code;
  const cause = describeError(last);
  const tries = err instanceof RetriesExhaustedError ? /gave up after [^:]*/.exec(err.message)?.[0] : undefined;
  let hint = 'check the host and port in location, and use_tls';
  if (typeof code === 'string' && TLS_HINT_CODES.has(code)) hint = 'the TLS certificate is not trusted; fix it, or set tls_insecure_no_verify=true for a test server';
  else if (code === 'EPROTO' || /wrong version number|packet length too long/i.test(cause)) hint = 'the server does not speak TLS on this port; set use_tls=false';
  return new ServiceError(typeof code === 'string' ? code : 'unreachable', `cannot reach the server at ${originOf(url)}: ${cause}${tries ? ` (${tries})` : ''} (hint: ${hint})`, {
    cause: err,
  });
}

/** True when `err` is a network-level failure (possibly after retries), not an HTTP answer. */
export function isNetworkFailure(err: unknown): boolean {
  const last = err instanceof RetriesExhaustedError ? err.last : err;
  return !(last instanceof ServiceError) && !(last instanceof AuthError) && last instanceof Error;
}

// --- Authentication ---

/** One parsed WWW-Authenticate challenge. */
interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses every challenge of every WWW-Authenticate line (RFC 7235 §4.1: several per line, comma-separated). */
export function parseChallenges(lines: string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const line of lines) {
    let current: Challenge | undefined;
    let i = 0;
    const token = (): string => {
      const m = /^[!#$%&'*+.^_`|~0-9A-Za-z/-]+/.exec(line.slice(i));
      i += m ? m[0].length : 1;
      return m ? m[0] : '';
    };
    while (i < line.length) {
      while (i < line.length && /[\s,]/.test(line[i] ?? '')) i++;
      if (i >= line.length) break;
      const name = token();
      while (line[i] === ' ') i++;
      if (line[i] === '=' && name !== '') {
        i++;
        while (line[i] === ' ') i++;
        let value = '';
        if (line[i] === '"') {
          i++;
          while (i < line.length && line[i] !== '"') {
            if (line[i] === '\\') i++;
            value += line[i] ?? '';
            i++;
          }
          i++;
        } else {
          value = token();
        }
        if (current) current.params[name.toLowerCase()] = value;
      } else if (name !== '') {
        current = { scheme: name.toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

interface DigestState {
  realm: string;
  nonce: string;
  opaque: string | undefined;
  qop: string | undefined;
  algorithm: string;
  nc: number;
}

/** Builds request credentials and decides whether a 401 is worth one more try. */
interface Authenticator {
  header(method: string, url: URL): Promise<string | undefined>;
  /** After a 401: true when new credential material (a Digest challenge, a fresh token) makes a retry worthwhile. */
  renew(res: DavResponse, tried: number): Promise<boolean>;
  /** `as "alice"`, for messages. */
  who: string;
  /** What to check when login fails. */
  hint: string;
}

function hash(algorithm: string, text: string): string {
  return createHash(algorithm.toUpperCase().startsWith('SHA-256') ? 'sha256' : 'md5')
    .update(text)
    .digest('hex');
}

/** Basic auth, switching to Digest (RFC 7616, MD5 or SHA-256, qop=auth) when the server challenges with it. */
class PasswordAuth implements Authenticator {
  private digest: DigestState | undefined;
  readonly who: string;
  readonly hint = 'check username and password (an app password where the provider requires one)';
  private readonly username: string;
  private readonly password: string;
  constructor(username: string, password: string) {
    this.username = username;
    this.password = password;
    this.who = `as ${JSON.stringify(username)}`;
  }

  async header(method: string, url: URL): Promise<string | undefined> {
    const d = this.digest;
    if (!d) return `Basic ${Buffer.from(`${this.username}:${this.password}`, 'utf8').toString('base64')}`;
    const uri = `${url.pathname}${url.search}`;
    const cnonce = randomBytes(8).toString('hex');
    const nc = (++d.nc).toString(16).padStart(8, '0');
    let ha1 = hash(d.algorithm, `${this.username}:${d.realm}:${this.password}`);
    if (d.algorithm.toLowerCase().endsWith('-sess')) ha1 = hash(d.algorithm, `${ha1}:${d.nonce}:${cnonce}`);
    const ha2 = hash(d.algorithm, `${method}:${uri}`);
    const qop = d.qop?.split(',').map((q) => q.trim()).includes('auth') ? 'auth' : undefined;
    const response = qop ? hash(d.algorithm, `${ha1}:${d.nonce}:${nc}:${cnonce}:${qop}:${ha2}`) : hash(d.algorithm, `${ha1}:${d.nonce}:${ha2}`);
    const q = (s: string): string => `"${s.replace(/(["\\])/g, '\\$1')}"`;
    const parts = [
      `username=${q(this.username)}`,
      `realm=${q(d.realm)}`,
      `nonce=${q(d.nonce)}`,
      `uri=${q(uri)}`,
      `algorithm=${d.algorithm}`,
      `response=${q(response)}`,
    ];
    if (qop) parts.push(`qop=${qop}`, `nc=${nc}`, `cnonce=${q(cnonce)}`);
    if (d.opaque !== undefined) parts.push(`opaque=${q(d.opaque)}`);
    return `Digest ${parts.join(', ')}`;
  }

  async renew(res: DavResponse): Promise<boolean> {
    const lines: string[] = [];
    for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
      if ((res.rawHeaders[i] ?? '').toLowerCase() === 'www-authenticate') lines.push(res.rawHeaders[i + 1] ?? '');
    }
    const digest = parseChallenges(lines).find((c) => c.scheme === 'digest' && c.params.nonce && c.params.realm !== undefined);
    if (!digest) return false;
    const algorithm = digest.params.algorithm ?? 'MD5';
    if (!/^(MD5|SHA-256)(-sess)?$/i.test(algorithm)) return false;
    const stale = (digest.params.stale ?? '').toLowerCase() === 'true';
    // A first Digest challenge, or a stale nonce, deserves a retry; a fresh challenge after a Digest attempt means a bad password.
    if (this.digest && !stale) return false;
    this.digest = {
      realm: digest.params.realm ?? '',
      nonce: digest.params.nonce ?? '',
      opaque: digest.params.opaque,
      qop: digest.params.qop,
      algorithm,
      nc: 0,
    };
    return true;
  }
}

/** A fixed bearer token (`access_token`). */
class BearerAuth implements Authenticator {
  readonly who = 'with access_token';
  readonly hint = 'access_token is expired, revoked or lacks the calendar/contacts scope; use refresh_token to renew tokens automatically';
  private readonly token: string;
  constructor(token: string) {
    this.token = token;
  }
  async header(): Promise<string> {
    return `Bearer ${this.token}`;
  }
  async renew(): Promise<boolean> {
    return false;
  }
}

/** OAuth 2.0 refresh-token grant (RFC 6749 §6): tokens obtained on first use, renewed before expiry and after a 401. */
class OAuthAuth implements Authenticator {
  readonly who = 'with the OAuth token';
  readonly hint = 'the OAuth client or refresh_token lacks the calendar/contacts scope for this account';
  private token: string | undefined;
  private expiresAt = 0;
  private pending: Promise<string> | undefined;
  private readonly options: ConnectionOptions;
  private readonly http: DavHttp;
  private readonly addSecret: (v: string) => void;
  private refreshToken: string;

  constructor(options: ConnectionOptions, http: DavHttp, addSecret: (v: string) => void) {
    this.options = options;
    this.http = http;
    this.addSecret = addSecret;
    this.refreshToken = options.refreshToken ?? '';
    if (options.accessToken) {
      // A given access token is used until it fails or its (unknown) lifetime is assumed over.
      this.token = options.accessToken;
      this.expiresAt = Date.now() + 5 * 60_000;
    }
  }

  async header(): Promise<string> {
    if (!this.token || Date.now() >= this.expiresAt - TOKEN_MARGIN_S * 1000) await this.refresh();
    return `Bearer ${this.token ?? ''}`;
  }

  async renew(_res: DavResponse, tried: number): Promise<boolean> {
    if (tried > 1) return false;
    await this.refresh();
    return true;
  }

  private refresh(): Promise<string> {
    this.pending ??= this.exchange().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async exchange(): Promise<string> {
    const tokenUrl = new URL(this.options.tokenUrl ?? '');
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: this.refreshToken, client_id: this.options.clientId ?? '' });
    if (this.options.clientSecret) form.set('client_secret', this.options.clientSecret);
    const res = await this.http.request(
      {
        method: 'POST',
        url: tokenUrl,
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form.toString(),
      },
      { noAuth: true, token: true, what: `refresh the OAuth access token at ${tokenUrl.origin}${tokenUrl.pathname}` },
    );
    let json: { access_token?: unknown; expires_in?: unknown; refresh_token?: unknown; error?: unknown; error_description?: unknown } = {};
    try {
      json = JSON.parse(res.body.toString('utf8')) as typeof json;
    } catch {
      // handled below: no access_token
    }
    if (res.status >= 300 || typeof json.access_token !== 'string' || json.access_token === '') {
      const code = typeof json.error === 'string' ? json.error : `${res.status} ${res.statusText}`.trim();
      const desc = typeof json.error_description === 'string' ? ` (${json.error_description.slice(0, 200)})` : '';
      throw new AuthError(
        `cannot refresh the OAuth access token at ${tokenUrl.origin}${tokenUrl.pathname}: ${code}${desc} (hint: check client_id, client_secret and token_url; a revoked or expired refresh_token must be replaced)`,
      );
    }
    this.addSecret(json.access_token);
    this.token = json.access_token;
    const lifetime = typeof json.expires_in === 'number' ? json.expires_in : Number(json.expires_in ?? 3600);
    this.expiresAt = Date.now() + (Number.isFinite(lifetime) && lifetime > 0 ? lifetime : 3600) * 1000;
    if (typeof json.refresh_token === 'string' && json.refresh_token !== '') {
      // Providers that rotate refresh tokens: use the new one for the rest of this run (it cannot be written back to Plakar's config).
      this.addSecret(json.refresh_token);
      this.refreshToken = json.refresh_token;
    }
    return json.access_token;
  }
}

class NoAuth implements Authenticator {
  readonly who = 'without credentials';
  readonly hint = 'the server requires a login: set username and password, or an OAuth token';
  async header(): Promise<undefined> {
    return undefined;
  }
  async renew(): Promise<boolean> {
    return false;
  }
}

// --- HTTP ---

/** Settings of a DavHttp client. */
export interface DavHttpOptions {
  options: ConnectionOptions;
  connections: number;
  timeoutMs: number;
  /** Runs every DAV request (its connection cap bounds parallel requests). */
  pacer: Pacer;
  /** Runs OAuth token requests, which happen inside DAV requests and so must not wait for their connection slots. */
  tokenPacer: Pacer;
  log: Logger;
  signal: AbortSignal;
  addSecret: (value: string) => void;
}

/** Options of one `request` call. */
export interface RequestOptions {
  /** Skip the Authorization header (the OAuth token endpoint). */
  noAuth?: boolean;
  /** Names the operation in messages (default `<METHOD> <url>`). */
  what?: string;
  /** Use the token pacer (OAuth token endpoint). */
  token?: boolean;
}

/** HTTP/1.1 client for one DAV account: keep-alive, auth, redirects, and every call through the pacer. */
export class DavHttp {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  private readonly auth: Authenticator;
  private readonly timeoutMs: number;
  private readonly pacer: Pacer;
  private readonly tokenPacer: Pacer;
  private readonly signal: AbortSignal;
  readonly log: Logger;

  constructor(o: DavHttpOptions) {
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: o.connections });
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: o.connections, rejectUnauthorized: !o.options.tlsInsecureNoVerify });
    this.timeoutMs = o.timeoutMs;
    this.pacer = o.pacer;
    this.tokenPacer = o.tokenPacer;
    this.signal = o.signal;
    this.log = o.log;
    const opts = o.options;
    if (opts.refreshToken) this.auth = new OAuthAuth(opts, this, o.addSecret);
    else if (opts.accessToken) this.auth = new BearerAuth(opts.accessToken);
    else if (opts.username !== undefined) this.auth = new PasswordAuth(opts.username, opts.password ?? '');
    else this.auth = new NoAuth();
  }

  /** Who we log in as, for messages (`as "alice"`). */
  get who(): string {
    return this.auth.who;
  }

  /**
   * Sends one request through the pacer (throttling, 5xx and network failures retried) and returns any other answer,
   * including 4xx, for the caller to judge. A 401 that new credentials cannot fix throws AuthError.
   */
  request(req: DavRequest, o: RequestOptions = {}): Promise<DavResponse> {
    const url = new URL(req.url);
    const what = o.what ?? `${req.method} ${url.href}`;
    return (o.token ? this.tokenPacer : this.pacer).call(what, () => this.attempt(req, url, what, o.noAuth === true));
  }

  private async attempt(req: DavRequest, start: URL, what: string, noAuth: boolean): Promise<DavResponse> {
    let url = start;
    let authTries = 0;
    let redirects = 0;
    for (;;) {
      const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...lowerKeys(req.headers ?? {}) };
      if (req.depth !== undefined) headers.depth = req.depth;
      const sameOrigin = url.origin === start.origin;
      if (!noAuth && sameOrigin) {
        const h = await this.auth.header(req.method, url);
        if (h !== undefined) headers.authorization = h;
      }
      const started = Date.now();
      const res = await this.send(req.method, url, headers, req.body, req.sink);
      if (this.log.enabled('debug')) {
        this.log.debug('http', { method: req.method, path: url.pathname, status: res.status, ms: Date.now() - started, bytes: res.bytes });
      }
      if (res.status === 401 && !noAuth) {
        authTries++;
        if (authTries <= 2 && sameOrigin && (await this.auth.renew(res, authTries))) continue;
        throw new AuthError(`cannot log in to ${originOf(url)} ${this.auth.who}: 401 Unauthorized (hint: ${this.auth.hint})`);
      }
      if ([301, 302, 303, 307, 308].includes(res.status) && req.followRedirects !== false) {
        const location = res.headers.location;
        if (location && redirects < MAX_REDIRECTS) {
          redirects++;
          url = new URL(location, url);
          this.log.debug('following a redirect', { what, to: url.href, status: res.status });
          continue;
        }
      }
      if (res.status === 429 || res.status === 408 || res.status >= 500) {
        const retryAfter = res.headers['retry-after'];
        throw new HttpStatusError(res.status, res.statusText, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
      }
      return res;
    }
  }

  private send(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: string | Buffer | undefined,
    sinkFor: DavRequest['sink'],
  ): Promise<DavResponse> {
    const isHttps = url.protocol === 'https:';
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
    if (payload !== undefined) headers['content-length'] = String(payload.length);
    const signal = AbortSignal.any([this.signal, AbortSignal.timeout(this.timeoutMs)]);
    return new Promise<DavResponse>((resolve, reject) => {
      const req = (isHttps ? https : http).request(url, { method, headers, agent: isHttps ? this.httpsAgent : this.httpAgent, signal }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('error', reject);
        let sink: BodySink | undefined;
        try {
          sink = sinkFor?.(res.statusCode ?? 0, url);
        } catch (err) {
          res.destroy(err as Error);
          return;
        }
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (sink) {
            try {
              sink.write(c);
            } catch (err) {
              res.destroy(err as Error);
            }
            return;
          }
          if (size > MAX_BODY) {
            res.destroy(new Error(`the response is larger than ${MAX_BODY / 1024 / 1024} MiB`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          try {
            sink?.end();
          } catch (err) {
            reject(err as Error);
            return;
          }
          resolve({
            status: res.statusCode ?? 0,
            statusText: res.statusMessage ?? '',
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks),
            bytes: size,
            url,
          });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** A WHATWG `fetch` over this client (auth, retries, TLS settings), for tsdav's request builders. */
  readonly fetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = typeof input === 'string' || input instanceof URL ? String(input) : input.url;
    const headers: Record<string, string> = {};
    new Headers(init.headers ?? {}).forEach((v, k) => {
      headers[k] = v;
    });
    const body = typeof init.body === 'string' ? init.body : init.body == null ? undefined : Buffer.from(await new Response(init.body).arrayBuffer());
    const res = await this.request({ method: init.method ?? 'GET', url, headers, body, followRedirects: init.redirect !== 'manual' });
    const out = new Headers();
    for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) out.append(res.rawHeaders[i] ?? '', res.rawHeaders[i + 1] ?? '');
    const nullBody = [101, 204, 205, 304].includes(res.status);
    return new Response(nullBody ? null : res.body, { status: res.status, statusText: res.statusText, headers: out });
  };

  /** Closes idle keep-alive connections. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}
