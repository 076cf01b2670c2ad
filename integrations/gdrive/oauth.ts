// Google sign-in: credentials from options, access tokens renewed ahead of expiry (user OAuth, service account JWT,
// static token), and the `login` command (OAuth loopback flow with PKCE) that prints the plakar configuration lines.
// References: https://developers.google.com/identity/protocols/oauth2/native-app (loopback redirect, PKCE) and
// https://developers.google.com/identity/protocols/oauth2/service-account#httprest (JWT bearer grant).
import { spawn } from 'node:child_process';
import { createHash, createPrivateKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AuthError,
  ConfigError,
  describeError,
  isTransientNetworkError,
  parseRetryAfter,
  type Classifier,
  type ConfigProblem,
  type Logger,
  type Pacer,
} from '../../shared/index.ts';
import { DEFAULT_API_URL, DEFAULT_AUTH_URL, DEFAULT_TOKEN_URL, SCOPE_DRIVE, SCOPE_DRIVE_READONLY, type ServiceAccountKey, type TokenResponse } from './api.ts';

/** How the integration signs in. */
export type Credentials =
  | { kind: 'user'; clientId: string; clientSecret: string; refreshToken: string }
  | { kind: 'service'; email: string; privateKey: KeyObject; keyId?: string; subject?: string }
  | { kind: 'static'; accessToken: string };

/** The auth-related option values. */
export interface AuthValues {
  clientId?: string;
  clientSecret?: string;
  refreshToken?: string;
  serviceAccountKey?: string;
  impersonate?: string;
  accessToken?: string;
}

/**
 * Picks the one sign-in method the options describe; throws a ConfigError naming every problem (missing or
 * conflicting keys, an unreadable service account key). Secrets read from a key file are registered for redaction.
 */
export async function credentialsFrom(o: AuthValues, addSecret: (v: string) => void): Promise<Credentials> {
  const problems: ConfigProblem[] = [];
  const user = o.clientId !== undefined || o.clientSecret !== undefined || o.refreshToken !== undefined;
  const service = o.serviceAccountKey !== undefined;
  const fixed = o.accessToken !== undefined;
  const modes = [user && 'client_id/client_secret/refresh_token', service && 'service_account_key', fixed && 'access_token'].filter(Boolean);
  if (modes.length === 0) {
    throw new ConfigError(
      'refresh_token',
      'no Google credentials: set client_id, client_secret and refresh_token (run `gdrive login` to get them), or service_account_key, or access_token',
    );
  }
  if (modes.length > 1) {
    throw new ConfigError(service ? 'service_account_key' : 'access_token', `cannot be combined with ${modes.filter((m) => m !== (service ? 'service_account_key' : 'access_token')).join(' and ')}: choose one way to sign in`);
  }
  if (o.impersonate !== undefined && !service) problems.push({ key: 'impersonate', message: 'only applies with service_account_key' });
  if (user) {
    if (!o.clientId) problems.push({ key: 'client_id', message: 'is required with client_secret and refresh_token (user sign-in)' });
    if (!o.clientSecret) problems.push({ key: 'client_secret', message: 'is required with client_id and refresh_token (user sign-in)' });
    if (!o.refreshToken) problems.push({ key: 'refresh_token', message: 'is required with client_id and client_secret (user sign-in; run `gdrive login` to get one)' });
    if (problems.length > 0) throw new ConfigError(problems);
    return { kind: 'user', clientId: o.clientId as string, clientSecret: o.clientSecret as string, refreshToken: o.refreshToken as string };
  }
  if (fixed) {
    if (problems.length > 0) throw new ConfigError(problems);
    return { kind: 'static', accessToken: o.accessToken as string };
  }
  const raw = (o.serviceAccountKey as string).trim();
  let text = raw;
  if (!raw.startsWith('{')) {
    try {
      text = await readFile(raw, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // The value is secret, so the message does not repeat it (the redactor would hide it anyway).
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (code ?? 'unreadable');
      problems.push({ key: 'service_account_key', message: `cannot read it as a key file path (${why}); give the path of the JSON key file, or the JSON itself` });
      throw new ConfigError(problems);
    }
  }
  let key: ServiceAccountKey;
  try {
    key = JSON.parse(text) as ServiceAccountKey;
  } catch {
    problems.push({ key: 'service_account_key', message: 'expected a service account JSON key (inline JSON or a path to the key file), but it is not valid JSON' });
    throw new ConfigError(problems);
  }
  if (key.type !== 'service_account' || !key.client_email || !key.private_key) {
    problems.push({ key: 'service_account_key', message: 'expected a service account JSON key with type "service_account", client_email and private_key' });
    throw new ConfigError(problems);
  }
  addSecret(key.private_key);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key.private_key);
  } catch {
    problems.push({ key: 'service_account_key', message: 'its private_key cannot be read (expected a PEM RSA private key)' });
    throw new ConfigError(problems);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { kind: 'service', email: key.client_email, privateKey, keyId: key.private_key_id, subject: o.impersonate };
}

/** Signs the RS256 JWT of Google's service-account grant. */
export function serviceAccountAssertion(c: Extract<Credentials, { kind: 'service' }>, tokenUrl: string, scope: string, now = Date.now()): string {
  const iat = Math.floor(now / 1000);
  const header = { alg: 'RS256', typ: 'JWT', ...(c.keyId ? { kid: c.keyId } : {}) };
  const claims = { iss: c.email, scope, aud: tokenUrl, iat, exp: iat + 3600, ...(c.subject ? { sub: c.subject } : {}) };
  const data = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${data}.${sign('RSA-SHA256', Buffer.from(data), c.privateKey).toString('base64url')}`;
}

function b64url(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}

/** A token endpoint answer that is not a token: HTTP status plus Google's `error` code. */
export class TokenEndpointError extends Error {
  override name = 'TokenEndpointError';
  readonly status: number;
  readonly error: string;
  readonly retryAfterMs: number | undefined;
  constructor(status: number, error: string, description: string, retryAfterMs?: number) {
    super(`${error}${description ? ` (${description})` : ''}`);
    this.status = status;
    this.error = error;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Classification of token endpoint failures: 5xx and network retried, 429 throttled, the rest final. */
export const classifyTokenError: Classifier = (err) => {
  if (err instanceof TokenEndpointError) {
    if (err.status === 429) return { kind: 'throttle', retryAfterMs: err.retryAfterMs };
    if (err.status >= 500 || err.status === 408) return { kind: 'transient' };
    return { kind: 'permanent' };
  }
  return isTransientNetworkError(err) ? { kind: 'transient' } : { kind: 'permanent' };
};

/** POSTs a form to the token endpoint; resolves with the token or throws TokenEndpointError. */
export async function postTokenForm(url: string, form: Record<string, string>, signal?: AbortSignal, timeoutMs = 60_000): Promise<TokenResponse> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams(form).toString(),
    signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let body: TokenResponse = {};
  try {
    body = JSON.parse(text) as TokenResponse;
  } catch {
    // Not JSON (a proxy's HTML page): keep the status only.
  }
  if (!res.ok || !body.access_token) {
    throw new TokenEndpointError(res.status, body.error ?? `HTTP ${res.status}`, body.error_description ?? '', parseRetryAfter(res.headers.get('retry-after')));
  }
  return body;
}

interface CurrentToken {
  token: string;
  expiresAt: number;
  refreshAt: number;
}

/** Settings of a TokenManager. */
export interface TokenManagerOptions {
  tokenUrl: string;
  scope: string;
  pacer: Pacer;
  log: Logger;
  addSecret: (v: string) => void;
  signal?: AbortSignal;
  /** Longest a token request may take (ms). */
  timeoutMs?: number;
}

/**
 * Holds the current access token and renews it ahead of expiry on a timer, independently of requests, so a run of
 * hours never waits on (or fails at) a refresh; a 401 invalidates the token that was refused.
 */
export class TokenManager {
  private currentToken: CurrentToken | undefined;
  private inflight: Promise<CurrentToken> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private staticRefused = false;
  private closed = false;
  /** Successful refreshes (tests). */
  refreshes = 0;
  readonly credentials: Credentials;
  private readonly o: TokenManagerOptions;

  constructor(credentials: Credentials, options: TokenManagerOptions) {
    this.credentials = credentials;
    this.o = options;
    if (credentials.kind === 'static') {
      options.addSecret(credentials.accessToken);
      this.currentToken = { token: credentials.accessToken, expiresAt: Infinity, refreshAt: Infinity };
    }
  }

  /** Whether the token cannot be renewed (the `access_token` option). */
  get isStatic(): boolean {
    return this.credentials.kind === 'static';
  }

  /** A valid access token, renewing it first when it is about to expire. */
  async token(): Promise<string> {
    if (this.staticRefused) throw this.refusedStaticError();
    const now = Date.now();
    const cur = this.currentToken;
    if (cur && now < cur.refreshAt) return cur.token;
    if (cur && now < cur.expiresAt - 10_000) {
      // Inside the renewal window: try to renew, but the current token still works if that fails.
      try {
        return (await this.refresh()).token;
      } catch (err) {
        this.o.log.debug('early token renewal failed; using the current token', { cause: describeError(err) });
        return cur.token;
      }
    }
    return (await this.refresh()).token;
  }

  /** The token requests are sent with right now (undefined before the first renewal). */
  get current(): string | undefined {
    return this.currentToken?.token;
  }

  /** Forgets `token` after the API refused it (401), so the next call renews (unless it was renewed meanwhile). */
  invalidate(token: string | undefined): void {
    if (this.credentials.kind === 'static') {
      this.staticRefused = true;
      return;
    }
    if (token === undefined || this.currentToken?.token === token) this.currentToken = undefined;
  }

  /** The error for a refused static access token. */
  refusedStaticError(): AuthError {
    return new AuthError(
      'Google Drive refused the access_token (access tokens last about one hour and cannot be renewed; hint: use client_id, client_secret and refresh_token, or service_account_key)',
    );
  }

  /** Stops the renewal timer. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private refresh(): Promise<CurrentToken> {
    this.inflight ??= this.fetchToken().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async fetchToken(): Promise<CurrentToken> {
    const c = this.credentials;
    if (c.kind === 'static') throw this.refusedStaticError();
    const form: Record<string, string> =
      c.kind === 'user'
        ? { grant_type: 'refresh_token', client_id: c.clientId, client_secret: c.clientSecret, refresh_token: c.refreshToken }
        : { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: '' };
    let body: TokenResponse;
    try {
      body = await this.o.pacer.call(
        'sign in to Google (token endpoint)',
        async () => {
          if (c.kind === 'service') form.assertion = serviceAccountAssertion(c, this.o.tokenUrl, this.o.scope);
          return postTokenForm(this.o.tokenUrl, form, this.o.signal, this.o.timeoutMs);
        },
        classifyTokenError,
      );
    } catch (err) {
      throw this.signInError(err);
    }
    const token = body.access_token as string;
    this.o.addSecret(token);
    const lifetime = Math.max(1, Number(body.expires_in ?? 3600)) * 1000;
    const now = Date.now();
    const next: CurrentToken = { token, expiresAt: now + lifetime, refreshAt: now + lifetime - Math.min(300_000, lifetime / 4) };
    this.currentToken = next;
    this.refreshes++;
    this.schedule(next);
    this.o.log.debug('obtained an access token', { expiresInS: Math.round(lifetime / 1000) });
    return next;
  }

  /** Renews in the background at `refreshAt`, so requests never wait for (or fail at) a refresh. */
  private schedule(t: CurrentToken): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.closed) return;
    const delay = Math.max(1000, t.refreshAt - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.o.signal?.aborted || this.currentToken !== t) return;
      this.refresh().catch((err: unknown) => {
        // A renewal cut short by the end of the run is no news.
        if (this.closed || this.o.signal?.aborted) return;
        this.o.log.warn('background renewal of the access token failed; retrying on the next request', { cause: describeError(err) });
      });
    }, delay);
    this.timer.unref();
  }

  private signInError(err: unknown): unknown {
    if (!(err instanceof TokenEndpointError)) return err;
    const c = this.credentials;
    if (err.error === 'invalid_client' || err.error === 'unauthorized_client') {
      if (c.kind === 'service' && c.subject) {
        return new AuthError(
          `cannot sign in to Google Drive: Google refused to let ${c.email} act as ${c.subject}: ${err.message} (hint: allow the service account's client id and the scope ${this.o.scope} under domain-wide delegation in the Workspace admin console)`,
          { cause: err },
        );
      }
      return new AuthError(`cannot sign in to Google Drive: Google refused ${c.kind === 'service' ? 'the service account' : 'client_id/client_secret'}: ${err.message}`, {
        cause: err,
      });
    }
    if (err.error === 'invalid_grant') {
      if (c.kind === 'user') {
        return new AuthError(
          `cannot sign in to Google Drive: Google refused the refresh_token: ${err.message} (hint: run "gdrive login" again and update refresh_token; refresh tokens of OAuth apps in "Testing" status expire after 7 days)`,
          { cause: err },
        );
      }
      return new AuthError(`cannot sign in to Google Drive: Google refused the service account's signed request: ${err.message} (hint: check that the key is still valid and the clock of this computer is right)`, {
        cause: err,
      });
    }
    return new AuthError(`cannot sign in to Google Drive: the token endpoint answered ${err.status}: ${err.message}`, { cause: err });
  }
}

// ---------------------------------------------------------------- the login command

interface LoginArgs {
  clientId?: string;
  clientSecret?: string;
  scope: string;
  name: string;
  port: number;
  browser: boolean;
  authUrl: string;
  tokenUrl: string;
  apiUrl: string;
  timeoutMs: number;
}

const LOGIN_USAGE = `usage: gdrive login --client-id ID --client-secret SECRET [--readonly] [--name NAME] [--port N] [--no-browser]

Signs in to Google with your own OAuth client ("Desktop app" type, from the Google Cloud console) through a
local redirect on 127.0.0.1, then prints the plakar commands that configure a source, a destination and a
store with the refresh token. Keep the printed values secret: they give access to your Drive.

  --client-id ID         OAuth client id (or GDRIVE_CLIENT_ID)
  --client-secret SECRET OAuth client secret (or GDRIVE_CLIENT_SECRET)
  --readonly             ask for read-only access (enough for backups, not for restores or a store)
  --name NAME            name of the plakar entries to print (default: gdrive)
  --port N               local port for the redirect (default: any free port)
  --no-browser           do not try to open a browser; only print the address
  --timeout DURATION     how long to wait for the sign-in, in seconds (default 300)`;

function parseLoginArgs(args: string[]): LoginArgs | string {
  const out: LoginArgs = {
    clientId: process.env.GDRIVE_CLIENT_ID,
    clientSecret: process.env.GDRIVE_CLIENT_SECRET,
    scope: SCOPE_DRIVE,
    name: 'gdrive',
    port: 0,
    browser: true,
    authUrl: DEFAULT_AUTH_URL,
    tokenUrl: DEFAULT_TOKEN_URL,
    apiUrl: DEFAULT_API_URL,
    timeoutMs: 300_000,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    try {
      switch (flag) {
        case '--client-id':
          out.clientId = value();
          break;
        case '--client-secret':
          out.clientSecret = value();
          break;
        case '--readonly':
          out.scope = SCOPE_DRIVE_READONLY;
          break;
        case '--name':
          out.name = value();
          break;
        case '--port':
          out.port = Number(value());
          break;
        case '--no-browser':
          out.browser = false;
          break;
        case '--timeout':
          out.timeoutMs = Number(value()) * 1000;
          break;
        case '--auth-url':
          out.authUrl = value();
          break;
        case '--token-url':
          out.tokenUrl = value();
          break;
        case '--api-url':
          out.apiUrl = value();
          break;
        case '-h':
        case '--help':
          return LOGIN_USAGE;
        default:
          return `unknown argument ${JSON.stringify(a)}\n\n${LOGIN_USAGE}`;
      }
    } catch (err) {
      return `${describeError(err)}\n\n${LOGIN_USAGE}`;
    }
  }
  if (!out.clientId || !out.clientSecret) return `--client-id and --client-secret are required\n\n${LOGIN_USAGE}`;
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) return `--port: expected a port number\n\n${LOGIN_USAGE}`;
  if (!(out.timeoutMs > 0)) return `--timeout: expected a number of seconds\n\n${LOGIN_USAGE}`;
  return out;
}

function shellQuote(v: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

function openBrowser(url: string): void {
  const cmd = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'cmd' : 'xdg-open';
  const args = process.platform === 'win32' ? ['/c', 'start', '', url] : [url];
  try {
    const child = spawn(cmd, args, { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // No browser here: the address is printed anyway.
  }
}

/** Waits for Google's redirect to the loopback server; resolves with the authorization code. */
function waitForCode(state: string, port: number, timeoutMs: number, onListening: (redirectUri: string) => void): Promise<{ code: string; redirectUri: string }> {
  return new Promise((resolve, reject) => {
    let redirectUri = '';
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', redirectUri);
      if (url.pathname !== '/') {
        res.statusCode = 404;
        res.end();
        return;
      }
      const error = url.searchParams.get('error');
      const code = url.searchParams.get('code');
      const ok = !error && code && url.searchParams.get('state') === state;
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.end(
        ok
          ? '<!doctype html><title>Signed in</title><p>Signed in to Google Drive. You can close this window and go back to the terminal.</p>'
          : `<!doctype html><title>Sign-in failed</title><p>Sign-in failed: ${error ? error.replace(/[<>&"]/g, '') : 'unexpected answer'}.</p>`,
      );
      clearTimeout(timer);
      server.close();
      if (ok) resolve({ code: code as string, redirectUri });
      else reject(new Error(error ? `Google answered ${error}` : 'the redirect carried no code or a wrong state'));
    });
    const timer = setTimeout(() => {
      server.close();
      reject(new Error(`no answer from the browser within ${Math.round(timeoutMs / 1000)}s`));
    }, timeoutMs);
    server.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    server.listen(port, '127.0.0.1', () => {
      redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      onListening(redirectUri);
    });
  });
}

/** `gdrive login`: the OAuth loopback flow; prints the plakar lines with the refresh token on fd 1. */
export async function runLogin(args: string[]): Promise<number> {
  const parsed = parseLoginArgs(args);
  if (typeof parsed === 'string') {
    process.stderr.write(`${parsed}\n`);
    return parsed === LOGIN_USAGE ? 0 : 2;
  }
  const a = parsed;
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(16).toString('base64url');
  let code: { code: string; redirectUri: string };
  try {
    code = await waitForCode(state, a.port, a.timeoutMs, (redirectUri) => {
      const url = new URL(a.authUrl);
      url.search = new URLSearchParams({
        client_id: a.clientId as string,
        redirect_uri: redirectUri,
        response_type: 'code',
        scope: a.scope,
        access_type: 'offline',
        prompt: 'consent',
        state,
        code_challenge: challenge,
        code_challenge_method: 'S256',
      }).toString();
      process.stderr.write(`Open this address in a browser on this computer and allow access to Google Drive:\n\n  ${url.href}\n\nWaiting for the answer on ${redirectUri} …\n`);
      if (a.browser) openBrowser(url.href);
    });
  } catch (err) {
    process.stderr.write(`gdrive login: sign-in failed: ${describeError(err)}\n`);
    return 1;
  }
  let token: TokenResponse;
  try {
    token = await postTokenForm(a.tokenUrl, {
      grant_type: 'authorization_code',
      code: code.code,
      redirect_uri: code.redirectUri,
      client_id: a.clientId as string,
      client_secret: a.clientSecret as string,
      code_verifier: verifier,
    });
  } catch (err) {
    process.stderr.write(`gdrive login: Google refused the sign-in: ${describeError(err)}\n`);
    return 1;
  }
  if (!token.refresh_token) {
    process.stderr.write('gdrive login: Google returned no refresh token (hint: remove the app\'s access at https://myaccount.google.com/permissions and run login again)\n');
    return 1;
  }
  let account = '';
  try {
    const res = await fetch(new URL('drive/v3/about?fields=user(emailAddress)', a.apiUrl), { headers: { Authorization: `Bearer ${token.access_token}` } });
    account = ((await res.json()) as { user?: { emailAddress?: string } }).user?.emailAddress ?? '';
  } catch {
    // The account name is a courtesy; the token works regardless.
  }
  const creds = `client_id=${shellQuote(a.clientId as string)} client_secret=${shellQuote(a.clientSecret as string)} refresh_token=${shellQuote(token.refresh_token)}`;
  const readonly = a.scope === SCOPE_DRIVE_READONLY;
  const lines = [
    `# Google Drive access${account ? ` for ${account}` : ''}${readonly ? ' (read-only)' : ''}. Keep these lines secret: the refresh token gives access to the Drive.`,
    `plakar source add ${shellQuote(a.name)} gdrive:// ${creds}`,
    ...(readonly
      ? []
      : [
          `plakar destination add ${shellQuote(`${a.name}-restore`)} gdrive:///Restored ${creds}`,
          `plakar store add ${shellQuote(`${a.name}-store`)} gdrive:///plakar ${creds}`,
        ]),
  ];
  // fd 1 directly: this command runs in a terminal, never under Plakar.
  writeSync(1, `${lines.join('\n')}\n`);
  return 0;
}
