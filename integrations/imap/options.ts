// Options of the imap integration (keys compatible with the official imap v1.1.0) and the location grammar.
import { ConfigError, maxRetriesOption, opt, readAheadOptions, type ConfigProblem } from '../../shared/index.ts';

/** Options every imap connector reads: the account, TLS, authentication, timeouts and the connection pool. */
export const connectionOptions = [
  opt.string('username', {
    help: 'Account name used to log in.\nA user name in the location (`imap://user@host`) takes priority, as in the official integration.',
    examples: ['alice@example.com'],
  }),
  opt.string('password', {
    help: 'Password (or app password) of the account.\nA password in the location (`imap://user:pass@host`) takes priority. Not used with `auth=xoauth2` or `oauthbearer`.',
    secret: true,
  }),
  opt.enum('auth', ['login', 'plain', 'xoauth2', 'oauthbearer'] as const, {
    help: 'How to authenticate.\n`login` sends the IMAP LOGIN command (the official integration\'s only method); `plain` uses AUTHENTICATE PLAIN; `xoauth2` (Gmail, Microsoft 365) and `oauthbearer` (RFC 7628) send `access_token`.',
    default: 'login',
  }),
  opt.string('access_token', {
    help: 'OAuth 2.0 access token for `auth=xoauth2` or `auth=oauthbearer`.\nThe integration does not refresh it: obtain a fresh token before each run.',
    secret: true,
  }),
  opt.enum('tls', ['starttls', 'tls', 'no-tls'] as const, {
    help: 'Transport security.\n`starttls` (the default for `imap://`) upgrades the plain connection and fails if the server cannot; `tls` is implicit TLS (the default for `imaps://`, port 993); `no-tls` sends everything, password included, in clear.',
  }),
  opt.bool('tls_no_verify', {
    help: 'Accept any server certificate (self-signed, expired, wrong name). For tests only.',
    default: false,
  }),
  opt.string('tls_ca_file', {
    help: 'PEM file with extra certificate authorities to trust (a private CA or a self-signed server).',
    advanced: true,
  }),
  opt.duration('io_timeout', {
    help: 'Idle deadline of every connection: a server silent for this long is dropped and the work resumes on a new connection.',
    default: 120_000,
    min: 1000,
  }),
  opt.int('concurrency', {
    help: 'Connections to the server (the pool that fetches and appends messages).\nMost providers cap simultaneous connections per account (Gmail 15, Microsoft 365 about 20, Dovecot 10 per address by default).',
    default: 4,
    min: 1,
    max: 32,
  }),
  maxRetriesOption,
] as const;

/** Importer options. */
export const importerOptions = [
  ...connectionOptions,
  opt.list('include', {
    help: 'Back up only these mailboxes (comma-separated patterns; `/` separates levels whatever the server uses, `*` matches anything, `%` anything within one level). A pattern also selects everything below the mailbox.',
    default: [],
    examples: ['INBOX,Archive/2024', 'Projects/%'],
  }),
  opt.list('exclude', {
    help: 'Skip these mailboxes and everything below them (same patterns as `include`; exclude wins).',
    default: [],
    examples: ['Junk,Trash'],
  }),
  opt.enum('gmail', ['labels', 'folders'] as const, {
    help: 'What to do when the server is Gmail (it advertises X-GM-EXT-1).\n`labels` backs up each message once, from All Mail (plus Spam and Trash), with its Gmail labels kept as metadata; `folders` backs up every label folder as a mailbox, so a message with N labels is stored N times.',
    default: 'labels',
  }),
  opt.size('prefetch_size', {
    help: 'Memory for message bodies fetched ahead of Plakar\'s reads.\nMessages up to 256 KiB are fetched many at a time, one UID FETCH for the next ones in the order Plakar reads them, instead of one round trip each; larger messages are always streamed in 1 MiB pieces. `0` fetches every message on its own.',
    default: 8 * 1024 * 1024,
    min: 0,
    max: 256 * 1024 * 1024,
    advanced: true,
  }),
] as const;

/** Exporter options. */
export const exporterOptions = [
  ...connectionOptions,
  opt.bool('skip_existing', {
    help: 'Do not append a message that the destination mailbox already holds (same Message-ID, INTERNALDATE and size), so a restore can be run again safely.',
    default: true,
  }),
  opt.bool('restore_deleted', {
    help: 'Restore the \\Deleted flag. Off by default: a message marked \\Deleted would be erased by the next EXPUNGE of any mail client.',
    default: false,
  }),
] as const;

/** Storage options. */
export const storageOptions = [
  ...connectionOptions,
  opt.string('root', {
    help: 'Parent mailbox of the repository; resources live in `<root>/packfile`, `<root>/state`, `<root>/lock`… (server delimiter).',
    default: 'Plakar',
  }),
  opt.size('max_message_size', {
    help: 'Largest message the storage appends, headers and base64 included. Larger blobs are split across several messages.\nKeep it under the provider\'s limit (Gmail and Microsoft 365 about 25 MB).',
    default: 16 * 1024 * 1024,
    min: 64 * 1024,
    max: 1024 * 1024 * 1024,
  }),
  ...readAheadOptions,
] as const;

/** What the location says. */
export interface ImapLocation {
  host: string;
  /** Explicit port, or undefined (then 993 with tls, 143 otherwise). */
  port: number | undefined;
  user: string | undefined;
  password: string | undefined;
  /** Decoded mailbox segments of the path (`/Archive/2024` → `['Archive', '2024']`; `%2F` keeps a `/` inside one). */
  segments: string[];
}

/** The location help shared by every connector. */
export const LOCATION_HELP = 'imap://[user[:pass]@]host[:port][/Mailbox[/Sub…]] (imaps:// for implicit TLS)';

/** Parses `imap://[user[:pass]@]host[:port][/Mailbox[/Sub…]]`; throws ConfigError naming `location`. */
export function parseLocation(location: string, proto: string): ImapLocation {
  const bad = (why: string): never => {
    throw new ConfigError('location', `expected ${LOCATION_HELP}; ${why}`);
  };
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location)?.[1]?.toLowerCase();
  if (!scheme || (scheme !== proto && scheme !== 'imap' && scheme !== 'imaps')) bad(`got a location that does not start with ${proto}://`);
  let url: URL;
  try {
    // The WHATWG parser treats unknown schemes opaquely; parse as http to get host, port and userinfo.
    url = new URL(`http://${location.slice((scheme as string).length + 3)}`);
  } catch {
    return bad('it is not a valid URL');
  }
  if (!url.hostname) bad('the host is missing');
  if (url.search || url.hash) bad('it has a query or fragment');
  const segments: string[] = [];
  for (const seg of url.pathname.split('/')) {
    if (seg === '') continue;
    try {
      segments.push(decodeURIComponent(seg));
    } catch {
      bad(`the mailbox segment ${JSON.stringify(seg)} has an invalid percent-escape`);
    }
  }
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : undefined,
    user: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    segments,
  };
}

/** Collects config problems and throws them together. */
export class Problems {
  readonly list: ConfigProblem[] = [];
  add(key: string, message: string): void {
    this.list.push({ key, message });
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw new ConfigError(this.list);
  }
}
