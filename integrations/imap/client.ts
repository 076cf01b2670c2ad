// IMAP connections: settings from options, imapflow clients, error classification and the connection pool.
import { readFileSync } from 'node:fs';
import { ImapFlow, type ListResponse, type MailboxObject } from 'imapflow';
import {
  AuthError,
  ConfigError,
  describeError,
  FatalError,
  isTransientNetworkError,
  KlosetError,
  Pacer,
  QuotaError,
  ServiceError,
  type Classification,
  type ConnectorContext,
  type Logger,
} from '../../shared/index.ts';
import { parseLocation, Problems, type ImapLocation } from './options.ts';

/** Everything needed to open a connection. */
export interface ImapSettings {
  host: string;
  port: number;
  tls: 'starttls' | 'tls' | 'no-tls';
  tlsNoVerify: boolean;
  ca: string | undefined;
  auth: 'login' | 'plain' | 'xoauth2' | 'oauthbearer';
  user: string;
  password: string | undefined;
  accessToken: string | undefined;
  ioTimeoutMs: number;
  concurrency: number;
  maxRetries: number;
  /** Mailbox segments from the location path. */
  segments: string[];
  /** `user@host:port`: the account, for Origin and messages. */
  account: string;
}

/** The connection options every connector shares (camelCase, as parsed by the SDK). */
export interface ConnectionValues {
  location: string;
  username: string | undefined;
  password: string | undefined;
  auth: 'login' | 'plain' | 'xoauth2' | 'oauthbearer';
  accessToken: string | undefined;
  tls: 'starttls' | 'tls' | 'no-tls' | undefined;
  tlsNoVerify: boolean;
  tlsCaFile: string | undefined;
  ioTimeout: number;
  concurrency: number;
  maxRetries: number;
}

/** Resolves options and location into settings; every problem is reported at once, each naming its key. */
export function resolveSettings(ctx: ConnectorContext<ConnectionValues>): ImapSettings {
  const o = ctx.options;
  const loc: ImapLocation = parseLocation(o.location, ctx.proto);
  const problems = new Problems();
  const tls = o.tls ?? (ctx.proto === 'imaps' || /^imaps:/i.test(o.location) ? 'tls' : 'starttls');
  const user = loc.user ?? o.username;
  const password = loc.password ?? o.password;
  if (loc.password) ctx.addSecret(loc.password);
  if (!user) problems.add('username', 'is required (or put it in the location: imap://user@host)');
  if (o.auth === 'xoauth2' || o.auth === 'oauthbearer') {
    if (!o.accessToken) problems.add('access_token', `is required with auth=${o.auth}`);
  } else if (password === undefined || password === '') {
    problems.add('password', `is required with auth=${o.auth} (or use auth=xoauth2 with access_token)`);
  }
  let ca: string | undefined;
  if (o.tlsCaFile) {
    try {
      ca = readFileSync(o.tlsCaFile, 'utf8');
    } catch (err) {
      problems.add('tls_ca_file', `cannot read ${JSON.stringify(o.tlsCaFile)}: ${describeError(err)}`);
    }
  }
  problems.throwIfAny();
  const port = loc.port ?? (tls === 'tls' ? 993 : 143);
  const host = loc.host.toLowerCase();
  const hostPort = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return {
    host,
    port,
    tls,
    tlsNoVerify: o.tlsNoVerify,
    ca,
    auth: o.auth,
    user: user as string,
    password,
    accessToken: o.accessToken,
    ioTimeoutMs: o.ioTimeout,
    concurrency: o.concurrency,
    maxRetries: o.maxRetries,
    segments: loc.segments,
    account: `${user}@${hostPort}`,
  };
}

// ---------------------------------------------------------------------------------------------
// Errors and classification
// ---------------------------------------------------------------------------------------------

/** The fields imapflow puts on its errors. */
interface ImapflowErrorFields {
  code?: string;
  responseStatus?: string;
  responseText?: string;
  serverResponseCode?: string;
  authenticationFailed?: boolean;
  tlsFailed?: boolean;
  throttleReset?: number;
  reason?: string;
  response?: unknown;
  mailboxMissing?: boolean;
}

/** An IMAP failure with a readable message; carries what the classifier needs. */
export class ImapError extends Error {
  /** imapflow's or Node's code (`NoConnection`, `ECONNRESET`…). */
  readonly code: string | undefined;
  /** `NO` or `BAD` for a tagged failure. */
  readonly status: string | undefined;
  /** The response code in brackets (`TRYCREATE`, `THROTTLED`…). */
  readonly serverCode: string | undefined;
  readonly throttleMs: number | undefined;
  readonly mailboxMissing: boolean;
  constructor(message: string, fields: ImapflowErrorFields, cause: unknown) {
    super(message, { cause });
    this.name = 'ImapError';
    this.code = fields.code;
    this.status = fields.responseStatus;
    this.serverCode = fields.serverResponseCode?.toUpperCase();
    this.throttleMs = fields.throttleReset;
    this.mailboxMissing = fields.mailboxMissing === true;
  }
}

const NETWORK_TEXT: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed while writing',
  ETIMEDOUT: 'connection timed out',
  ETIMEOUT: 'no answer within io_timeout',
  CONNECT_TIMEOUT: 'connection timed out',
  GREETING_TIMEOUT: 'no greeting from the server',
  UPGRADE_TIMEOUT: 'STARTTLS upgrade timed out',
  NoConnection: 'connection lost',
  EConnectionClosed: 'connection closed',
  ClosedAfterConnectText: 'the server closed the connection (does it expect implicit TLS? try tls=tls)',
  ClosedAfterConnectTLS: 'the server closed the TLS connection (does it expect STARTTLS? try tls=starttls)',
};

/** Connection-level codes: the session is gone, a new one may succeed. */
const CONNECTION_CODES = new Set([
  'NoConnection',
  'EConnectionClosed',
  'ETIMEOUT',
  'CONNECT_TIMEOUT',
  'GREETING_TIMEOUT',
  'UPGRADE_TIMEOUT',
  'ClosedAfterConnectText',
  'ClosedAfterConnectTLS',
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'StateLogout',
]);

const THROTTLE_TEXT = /too many (?:simultaneous |concurrent )?(?:connections|commands|requests)|connection limit|bandwidth limit|command limit|exceeded command|rate limit|try again later|throttl/i;

/** Dovecot appends `(0.001 + 0.000 secs).` and a timestamp to replies; they only add noise to messages. */
function tidyServerText(text: string): string {
  return text
    .replace(/\s*\(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)\.?/g, '')
    .replace(/\s*\[[^\]]*:\d{4}-\d{2}-\d{2} [\d:]+\]/g, '')
    .trim();
}

/** One-line text for an imapflow or socket error: the server's reply (`NO [CODE] text`) or the network cause. */
export function imapErrorText(err: unknown): string {
  if (err instanceof ImapError || err instanceof KlosetError) return err.message;
  const e = (err ?? {}) as ImapflowErrorFields & { message?: string };
  if (e.responseStatus || e.serverResponseCode || e.responseText) {
    const code = e.serverResponseCode ? ` [${e.serverResponseCode}]` : '';
    const text = e.responseText ? ` ${tidyServerText(e.responseText)}` : '';
    return `${e.responseStatus ?? 'NO'}${code}${text}`.trim();
  }
  if (e.code && NETWORK_TEXT[e.code]) return `${NETWORK_TEXT[e.code]} (${e.code})`;
  if (e.reason) return `the server closed the connection: ${tidyServerText(e.reason)}`;
  const text = describeError(err);
  return e.code && !text.includes(e.code) ? `${text} (${e.code})` : text;
}

/**
 * Turns anything imapflow throws into an SDK error (credentials refused → AuthError, quota → QuotaError)
 * or an ImapError with a readable message, which the pacer classifies.
 */
export function normalizeError(err: unknown, settings: ImapSettings): Error {
  if (err instanceof KlosetError || err instanceof ImapError) return err;
  const e = (err ?? {}) as ImapflowErrorFields;
  // imapflow fills serverResponseCode for some commands only (not FETCH): read the bracketed code from the reply.
  if (e.responseStatus && !e.serverResponseCode) {
    const code = responseCodeOf(e.response);
    if (code) (e as { serverResponseCode?: string }).serverResponseCode = code;
  }
  const code = e.serverResponseCode?.toUpperCase();
  if (e.authenticationFailed && code !== 'UNAVAILABLE' && code !== 'THROTTLED' && code !== 'LIMIT' && !THROTTLE_TEXT.test(e.responseText ?? '')) {
    const hint = settings.auth === 'xoauth2' || settings.auth === 'oauthbearer' ? 'check access_token (it may have expired)' : 'check username and password; Gmail needs an app password or auth=xoauth2';
    return new AuthError(`cannot log in as ${JSON.stringify(settings.user)} at ${settings.account.replace(/^.*@/, '')}: ${imapErrorText(err)} (${hint})`, { cause: err });
  }
  if (code === 'OVERQUOTA') return new QuotaError(`the mailbox of ${settings.account} is full: ${imapErrorText(err)}`, { cause: err });
  const tlsProblem = e.tlsFailed || /CERT|SSL|TLS_|^ERR_TLS/.test(e.code ?? '') || /certificate|self[- ]signed/i.test(describeError(err));
  if (tlsProblem && !e.responseStatus && !CONNECTION_CODES.has(e.code ?? '')) {
    return new ImapError(`TLS failed: ${imapErrorText(err)} (for a private CA set tls_ca_file; tls_no_verify=true disables the check)`, { ...e, code: 'TLS' }, err);
  }
  return new ImapError(imapErrorText(err), e, err);
}

/** The response code (`THROTTLED` in `NO [THROTTLED] …`) of a parsed or compiled reply. */
function responseCodeOf(response: unknown): string | undefined {
  if (typeof response === 'string') return /^\S+ (?:NO|BAD|OK) \[([A-Za-z0-9-]+)/.exec(response)?.[1]?.toUpperCase();
  const section = (response as { attributes?: Array<{ section?: Array<{ value?: unknown }> }> } | undefined)?.attributes?.[0]?.section?.[0]?.value;
  return typeof section === 'string' ? section.trim().toUpperCase() : undefined;
}

/** True when the error means the connection is unusable (drop it and reconnect). */
export function isConnectionError(err: unknown): boolean {
  const e = err as ImapError;
  if (e instanceof ImapError) return (e.code !== undefined && CONNECTION_CODES.has(e.code)) || isTransientNetworkError(e.cause);
  return isTransientNetworkError(err);
}

/**
 * The IMAP classifier: throttling replies (`[THROTTLED]`, `[UNAVAILABLE]`, `[LIMIT]`, "too many connections")
 * back off; dropped connections are transient; refused credentials are fatal; any other NO/BAD is permanent.
 */
export function classify(err: unknown): Classification {
  if (err instanceof AuthError || err instanceof QuotaError) return { kind: 'fatal' };
  const e = err instanceof ImapError ? err : normalizeErrorLoose(err);
  if (e.code === 'ETHROTTLE') return { kind: 'throttle', retryAfterMs: e.throttleMs };
  if (e.serverCode === 'THROTTLED' || e.serverCode === 'UNAVAILABLE' || e.serverCode === 'LIMIT') return { kind: 'throttle' };
  if (THROTTLE_TEXT.test(e.message)) return { kind: 'throttle' };
  if (e.serverCode === 'AUTHENTICATIONFAILED' || e.serverCode === 'AUTHORIZATIONFAILED') return { kind: 'fatal' };
  if (e.serverCode === 'INUSE' || e.serverCode === 'SERVERBUG') return { kind: 'transient' };
  if (e.code === 'TLS') return { kind: 'permanent' };
  if (isConnectionError(e)) return { kind: 'transient' };
  return { kind: 'permanent' };
}

function normalizeErrorLoose(err: unknown): ImapError {
  return new ImapError(imapErrorText(err), (err ?? {}) as ImapflowErrorFields, err);
}

/** The classifier used while connecting in Init: an unknown host or a refused port fails at once. */
export function classifyInit(err: unknown): Classification {
  const e = err instanceof ImapError ? err : normalizeErrorLoose(err);
  if (['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ClosedAfterConnectText', 'ClosedAfterConnectTLS'].includes(e.code ?? '')) {
    return { kind: 'permanent' };
  }
  return classify(err);
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

/** Opens and authenticates one connection; throws an SDK error or an ImapError. */
export async function openClient(settings: ImapSettings, log: Logger): Promise<ImapFlow> {
  const client = new ImapFlow({
    host: settings.host,
    port: settings.port,
    secure: settings.tls === 'tls',
    doSTARTTLS: settings.tls === 'starttls' ? true : settings.tls === 'no-tls' ? false : undefined,
    tls: { rejectUnauthorized: !settings.tlsNoVerify, ...(settings.ca ? { ca: settings.ca } : {}) },
    auth:
      settings.auth === 'xoauth2' || settings.auth === 'oauthbearer'
        ? { user: settings.user, accessToken: settings.accessToken }
        : { user: settings.user, pass: settings.password ?? '', loginMethod: settings.auth === 'plain' ? 'AUTH=PLAIN' : 'LOGIN' },
    logger: false,
    disableAutoIdle: true,
    clientInfo: { name: 'plakar-imap (kloset-ts)' },
    connectionTimeout: Math.min(30_000, settings.ioTimeoutMs),
    greetingTimeout: Math.min(30_000, settings.ioTimeoutMs),
    socketTimeout: settings.ioTimeoutMs,
  });
  client.on('error', (err: unknown) => log.debug('connection error', { cause: imapErrorText(err) }));
  if (settings.auth === 'xoauth2' || settings.auth === 'oauthbearer') {
    // imapflow prefers OAUTHBEARER whenever both are offered; hide the mechanism that was not asked for.
    const hidden = settings.auth === 'xoauth2' ? ['AUTH=OAUTHBEARER'] : ['AUTH=XOAUTH2', 'AUTH=XOAUTH'];
    const target = client as unknown as { authenticate: () => Promise<boolean> };
    const original = target.authenticate.bind(client);
    target.authenticate = async () => {
      for (const cap of hidden) client.capabilities.delete(cap);
      return original();
    };
  }
  try {
    await client.connect();
  } catch (err) {
    client.close();
    throw normalizeError(err, settings);
  }
  return client;
}

/** One pooled connection and the mailbox it has open. */
export class Session {
  readonly client: ImapFlow;
  private opened: { path: string; readOnly: boolean } | undefined;
  constructor(client: ImapFlow) {
    this.client = client;
  }
  /** The path of the open mailbox, if any. */
  get selected(): string | undefined {
    return this.client.mailbox ? this.opened?.path : undefined;
  }
  /** Opens `path` (EXAMINE when read-only) unless it is already open in a compatible mode. */
  async select(path: string, readOnly: boolean): Promise<MailboxObject> {
    const current = this.client.mailbox;
    if (current && this.opened?.path === path && (readOnly || !this.opened.readOnly)) return current;
    this.opened = undefined;
    const mailbox = await this.client.mailboxOpen(path, { readOnly });
    this.opened = { path, readOnly };
    return mailbox;
  }
  get usable(): boolean {
    return this.client.usable;
  }
  close(): void {
    try {
      this.client.close();
    } catch {
      // already closed
    }
  }
  async logout(): Promise<void> {
    try {
      await Promise.race([this.client.logout(), new Promise((r) => setTimeout(r, 2000))]);
    } catch {
      // the server may already be gone
    }
    this.close();
  }
}

/** A bounded pool of authenticated connections, reconnecting lazily; every call goes through the pacer. */
export class Pool {
  private readonly idle: Session[] = [];
  private readonly waiters: Array<() => void> = [];
  private total = 0;
  readonly settings: ImapSettings;
  readonly size: number;
  readonly pacer: Pacer;
  private readonly log: Logger;

  constructor(settings: ImapSettings, size: number, pacer: Pacer, log: Logger) {
    this.settings = settings;
    this.size = Math.max(1, size);
    this.pacer = pacer;
    this.log = log;
  }

  /** Adds an already opened connection (the one Init used to check the credentials). */
  adopt(client: ImapFlow): void {
    this.total++;
    this.idle.push(new Session(client));
    this.wake();
  }

  private wake(): void {
    this.waiters.shift()?.();
  }

  private async acquire(prefer: string | undefined): Promise<Session> {
    for (;;) {
      for (let i = this.idle.length - 1; i >= 0; i--) {
        const s = this.idle[i] as Session;
        if (!s.usable) {
          this.idle.splice(i, 1);
          this.total--;
          s.close();
        }
      }
      if (this.idle.length > 0) {
        let index = prefer === undefined ? -1 : this.idle.findIndex((s) => s.selected === prefer);
        if (index < 0) index = this.idle.length - 1;
        return this.idle.splice(index, 1)[0] as Session;
      }
      if (this.total < this.size) {
        this.total++;
        try {
          const client = await openClient(this.settings, this.log);
          this.log.debug('connected', { account: this.settings.account, connections: this.total });
          return new Session(client);
        } catch (err) {
          this.total--;
          this.wake();
          throw err;
        }
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private release(session: Session, broken: boolean): void {
    if (broken || !session.usable) {
      this.total--;
      session.close();
    } else {
      this.idle.push(session);
    }
    this.wake();
  }

  /** Runs `fn` on one connection (preferring one that has `prefer` open); a connection error drops it. */
  async use<T>(prefer: string | undefined, fn: (s: Session) => Promise<T>): Promise<T> {
    const session = await this.acquireOrStop(prefer);
    try {
      const value = await fn(session);
      this.release(session, false);
      return value;
    } catch (err) {
      const e = normalizeError(err, this.settings);
      this.release(session, isConnectionError(e) || !session.usable);
      throw e;
    }
  }

  /** `acquire` for `use`: a login refused after Init (password changed, token expired) must stop the whole run. */
  private async acquireOrStop(prefer: string | undefined): Promise<Session> {
    try {
      return await this.acquire(prefer);
    } catch (err) {
      if (err instanceof AuthError || err instanceof QuotaError) throw new FatalError(err.message, { cause: err, code: err.code });
      throw err;
    }
  }

  /** `use` under the pacer: connection drops and throttling are retried on a fresh or the same connection. */
  run<T>(what: string, prefer: string | undefined, fn: (s: Session) => Promise<T>): Promise<T> {
    return this.pacer.call(what, () => this.use(prefer, fn), classify);
  }

  /**
   * Logs the idle connections out. The pool stays usable: the host may still call after Close (PROTOCOL.md §9),
   * and a later call simply connects again.
   */
  async close(): Promise<void> {
    const sessions = this.idle.splice(0);
    this.total -= sessions.length;
    await Promise.all(sessions.map((s) => s.logout()));
    this.wake();
  }
}

/** A pacer for an IMAP pool: `max_retries` attempts, IMAP classification. */
export function imapPacer(ctx: ConnectorContext<unknown>, settings: ImapSettings): Pacer {
  return ctx.pacer({ maxAttempts: settings.maxRetries, classify, minSleepMs: 250 });
}

/**
 * Connects once in Init so that a wrong password or an unreachable server fails there, with a message
 * naming the account and the cause; returns the client for the pool.
 */
export async function connectForInit(ctx: ConnectorContext<unknown>, settings: ImapSettings): Promise<ImapFlow> {
  const pacer = ctx.pacer({ maxAttempts: Math.min(3, settings.maxRetries), classify: classifyInit, minSleepMs: 500 });
  try {
    return await pacer.call(`connect to ${settings.account}`, () => openClient(settings, ctx.log), classifyInit);
  } catch (err) {
    if (err instanceof AuthError || err instanceof QuotaError || err instanceof ConfigError) throw err;
    const where = settings.account.replace(/^.*@/, '');
    const text = err instanceof KlosetError ? err.message.replace(/^connect to [^:]+:\s*/, '') : imapErrorText(err);
    const tlsHint = settings.tls === 'starttls' && /STARTTLS/i.test(text) ? ' (the server does not offer STARTTLS: use tls=tls or, on a trusted network, tls=no-tls)' : '';
    throw new ServiceError(
      err instanceof ImapError ? (err.serverCode ?? err.code ?? 'connect') : 'connect',
      `cannot connect to ${where}: ${text}${tlsHint}`,
      { cause: err },
    );
  }
}

/** Every mailbox of the account (LIST "" "*"), with the server's delimiter. */
export async function listMailboxes(pool: Pool): Promise<ListResponse[]> {
  return pool.run('LIST', undefined, (s) => s.client.list());
}
