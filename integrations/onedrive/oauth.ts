// Access tokens for Graph: refresh-token (public or confidential client), client credentials (app-only) or a given token;
// renewed ahead of expiry; a rotated refresh token is used for the rest of the run and kept in token_file when set.
import { randomBytes } from 'node:crypto';
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { AuthError, describeError, type Logger, type Pacer } from '../../shared/index.ts';
import type { DeviceCodeResponse, TokenErrorResponse, TokenResponse } from './api.ts';
import { classify, errorFromResponse, OneDriveError, plainFetch, rewriteUrl, type Endpoints } from './client.ts';
import type { AuthMode, CommonValues } from './options.ts';

/** What the Graph client asks of a credential. */
export interface TokenSource {
  /** A valid access token (renewed first when it expires within the margin). */
  token(): Promise<string>;
  /** Graph refused `token` (401): renew on the next call. */
  invalidate(token: string): void;
  /** Whether a refused token can be replaced. */
  readonly refreshable: boolean;
  /** The error to report when Graph refuses a token that cannot be replaced. */
  refused(cause: OneDriveError): AuthError;
}

/** Renew a token this long before it expires (at most a quarter of its lifetime). */
const RENEW_MARGIN_MS = 5 * 60_000;

/** Which `plakar … set` command edits the configuration of each connector kind. */
const PLAKAR_ENTRY = { importer: 'source', exporter: 'destination', storage: 'store' } as const;

/** The identity-platform URL of `path` (e.g. `oauth2/v2.0/token`) for `tenant`. */
export function loginUrl(endpoints: Endpoints, tenant: string, path: string): string {
  return rewriteUrl(`${endpoints.login}/${encodeURIComponent(tenant)}/${path}`, endpoints);
}

/** Settings of an OAuthTokens. */
export interface OAuthTokensOptions {
  mode: AuthMode;
  values: CommonValues;
  endpoints: Endpoints;
  pacer: Pacer;
  log: Logger;
  signal: AbortSignal;
  /** Registers a token for redaction. */
  addSecret(value: string): void;
  /** The connector kind, for the `plakar … set` hint. */
  kind: 'importer' | 'exporter' | 'storage';
}

/** The access tokens of one connector instance. */
export class OAuthTokens implements TokenSource {
  private readonly o: OAuthTokensOptions;
  private access: { token: string; renewAt: number } | undefined;
  private refreshToken: string | undefined;
  private fileTokenLoaded = false;
  private renewing: Promise<string> | undefined;
  private dead: string | undefined;
  private toldAboutRotation = false;
  /** How many times a token was obtained from the identity platform (tests and debug logs). */
  renewals = 0;

  constructor(o: OAuthTokensOptions) {
    this.o = o;
    this.refreshToken = o.values.refreshToken;
    if (o.mode === 'static' && o.values.accessToken) this.access = { token: o.values.accessToken, renewAt: Infinity };
  }

  get refreshable(): boolean {
    return this.o.mode !== 'static';
  }

  async token(): Promise<string> {
    if (this.o.mode === 'static') {
      if (this.dead !== undefined || !this.access) {
        throw this.refused(new OneDriveError('InvalidAuthenticationToken', 'the access token was refused', { httpStatus: 401 }));
      }
      return this.access.token;
    }
    if (this.access && Date.now() < this.access.renewAt) return this.access.token;
    this.renewing ??= this.renew().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  invalidate(token: string): void {
    if (this.access?.token === token) {
      if (this.o.mode === 'static') this.dead = token;
      else this.access = undefined;
    }
  }

  refused(cause: OneDriveError): AuthError {
    if (this.o.mode === 'static') {
      return new AuthError(
        `Graph refused the access_token (${cause.serviceCode}); access tokens last about an hour and cannot be renewed (hint: use client_id and refresh_token from \`onedrive login\`)`,
        { cause },
      );
    }
    return new AuthError(
      `Graph refused a freshly issued access token (${cause.serviceCode}) (hint: check that the app registration has the ${this.o.values.scopes.join(', ')} permissions and that an admin consented)`,
      { cause },
    );
  }

  /** Gets a new access token from the identity platform (single flight). */
  private async renew(): Promise<string> {
    const v = this.o.values;
    let reply: TokenResponse;
    if (this.o.mode === 'app') {
      reply = await this.tokenRequest('cannot sign in as the application', {
        client_id: v.clientId ?? '',
        client_secret: v.clientSecret ?? '',
        grant_type: 'client_credentials',
        scope: `${this.o.endpoints.graph}/.default`,
      });
    } else {
      await this.loadTokenFile();
      const current = this.refreshToken;
      if (!current) {
        throw new AuthError(
          `token_file ${v.tokenFile ?? ''} holds no refresh token and refresh_token is not set (hint: run \`onedrive login --token-file ${v.tokenFile ?? 'PATH'}\`)`,
        );
      }
      try {
        reply = await this.refreshWith(current);
      } catch (err) {
        // The token file may hold an older token than a freshly configured refresh_token (after a new login).
        if (!(err instanceof AuthError) || !v.refreshToken || v.refreshToken === current) throw err;
        this.o.log.info('the refresh token from token_file was refused; trying the configured refresh_token');
        reply = await this.refreshWith(v.refreshToken);
      }
      if (reply.refresh_token && reply.refresh_token !== this.refreshToken) await this.rotated(reply.refresh_token);
    }
    const token = reply.access_token;
    if (!token) throw new AuthError('the identity platform answered without an access token');
    this.o.addSecret(token);
    const lifetimeMs = Math.max(1, Number(reply.expires_in ?? 3600)) * 1000;
    this.access = { token, renewAt: Date.now() + lifetimeMs - Math.min(RENEW_MARGIN_MS, lifetimeMs / 4) };
    this.renewals++;
    this.o.log.debug('obtained an access token', { expiresInS: Math.round(lifetimeMs / 1000), renewals: this.renewals });
    return token;
  }

  private refreshWith(refreshToken: string): Promise<TokenResponse> {
    const v = this.o.values;
    const form: Record<string, string> = {
      client_id: v.clientId ?? '',
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      scope: v.scopes.join(' '),
    };
    if (v.clientSecret) form.client_secret = v.clientSecret;
    return this.tokenRequest('cannot renew the access token', form);
  }

  /** The identity platform issued a new refresh token: use it from now on and keep it where the user asked. */
  private async rotated(next: string): Promise<void> {
    this.refreshToken = next;
    this.o.addSecret(next);
    const file = this.o.values.tokenFile;
    if (file) {
      try {
        await writeTokenFile(file, { client_id: this.o.values.clientId, refresh_token: next });
        this.o.log.debug('saved the new refresh token', { file });
      } catch (err) {
        this.o.log.once('token-file', 'warn', `cannot save the new refresh token to token_file ${file}: ${describeError(err)}; the previous one stays valid until it expires`);
      }
      return;
    }
    if (this.toldAboutRotation) return;
    this.toldAboutRotation = true;
    const entry = PLAKAR_ENTRY[this.o.kind];
    this.o.log.warn(
      `the identity platform issued a new refresh token, used for the rest of this run; the configured refresh_token stops working 90 days after it was issued. To keep the newest token automatically, set token_file: plakar ${entry} set <name> token_file=$HOME/.config/plakar/onedrive-token.json (or run \`onedrive login\` again before then)`,
    );
  }

  private async loadTokenFile(): Promise<void> {
    const file = this.o.values.tokenFile;
    if (!file || this.fileTokenLoaded) return;
    this.fileTokenLoaded = true;
    const stored = await readTokenFile(file).catch((err: unknown) => {
      this.o.log.warn(`cannot read token_file ${file}: ${describeError(err)}`);
      return undefined;
    });
    if (stored) {
      this.o.addSecret(stored);
      this.refreshToken = stored;
    }
  }

  private tokenRequest(what: string, form: Record<string, string>): Promise<TokenResponse> {
    const url = loginUrl(this.o.endpoints, this.o.values.tenant, 'oauth2/v2.0/token');
    return postTokenForm(url, form, what, this.o.pacer, this.o.values.timeout, this.o.signal);
  }
}

/** POSTs a form to the token endpoint through the pacer; a refused grant becomes an AuthError with a hint. */
export async function postTokenForm(
  url: string,
  form: Record<string, string>,
  what: string,
  pacer: Pacer,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<TokenResponse> {
  return pacer.call(
    what,
    async () => {
      const res = await plainFetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() }, timeoutMs, signal);
      if (res.ok) return (await res.json()) as TokenResponse;
      const err = await errorFromResponse(res);
      if (res.status === 400 || res.status === 401) {
        const hint =
          form.grant_type === 'client_credentials'
            ? 'check client_id, client_secret and tenant'
            : 'run `onedrive login` again and store the new refresh_token, or set token_file';
        throw new AuthError(`${what}: ${err.message} (hint: ${hint})`, { cause: err });
      }
      throw err;
    },
    classify,
  );
}

/** Reads a refresh token from a token file (JSON `{refresh_token}` written by us or `onedrive login`, or the bare token). */
export async function readTokenFile(file: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  if (trimmed.startsWith('{')) {
    const parsed = JSON.parse(trimmed) as { refresh_token?: unknown };
    return typeof parsed.refresh_token === 'string' && parsed.refresh_token !== '' ? parsed.refresh_token : undefined;
  }
  return trimmed;
}

/** Writes a token file atomically with mode 0600 (a temporary file in the same folder, then rename). */
export async function writeTokenFile(file: string, value: { client_id?: string; refresh_token: string }): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const text = `${JSON.stringify({ ...value, updated_at: new Date().toISOString() }, null, 2)}\n`;
  try {
    await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Starts the device-code flow (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code). */
export async function requestDeviceCode(
  endpoints: Endpoints,
  tenant: string,
  clientId: string,
  scopes: readonly string[],
  pacer: Pacer,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<DeviceCodeResponse> {
  const url = loginUrl(endpoints, tenant, 'oauth2/v2.0/devicecode');
  return pacer.call(
    'cannot start the device sign-in',
    async () => {
      const res = await plainFetch(
        url,
        { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: clientId, scope: scopes.join(' ') }).toString() },
        timeoutMs,
        signal,
      );
      if (res.ok) return (await res.json()) as DeviceCodeResponse;
      const err = await errorFromResponse(res);
      if (res.status === 400 || res.status === 401) {
        throw new AuthError(`cannot start the device sign-in: ${err.message} (hint: check the client ID, that the app allows public client flows, and the tenant)`, { cause: err });
      }
      throw err;
    },
    classify,
  );
}

/** Polls the token endpoint until the person approves the device code, declines it, or it expires. */
export async function pollDeviceCode(
  endpoints: Endpoints,
  tenant: string,
  clientId: string,
  device: DeviceCodeResponse,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<TokenResponse> {
  const url = loginUrl(endpoints, tenant, 'oauth2/v2.0/token');
  let intervalMs = Math.max(1, device.interval ?? 5) * 1000;
  const deadline = Date.now() + device.expires_in * 1000;
  for (;;) {
    await new Promise((r) => setTimeout(r, intervalMs));
    if (signal.aborted) throw new AuthError('the sign-in was interrupted');
    let res: Response;
    try {
      res = await plainFetch(
        url,
        {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', client_id: clientId, device_code: device.device_code }).toString(),
        },
        timeoutMs,
        signal,
      );
    } catch {
      continue; // a network hiccup while a person types a code: just ask again
    }
    if (res.ok) return (await res.json()) as TokenResponse;
    const body = (await res.json().catch(() => ({ error: `HTTP ${res.status}` }))) as TokenErrorResponse;
    switch (body.error) {
      case 'authorization_pending':
        break;
      case 'slow_down':
        intervalMs += 5000;
        break;
      case 'authorization_declined':
        throw new AuthError('the sign-in was declined');
      case 'expired_token':
      case 'code_expired':
        throw new AuthError('the code expired before the sign-in finished; run `onedrive login` again');
      default:
        if (res.status >= 500 || res.status === 429) break;
        throw new AuthError(`the sign-in failed: ${body.error}: ${(body.error_description ?? '').split(/\r?\n/)[0]}`);
    }
    if (Date.now() > deadline) throw new AuthError('the code expired before the sign-in finished; run `onedrive login` again');
  }
}
