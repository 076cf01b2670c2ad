// Options of the caldav integration (CalDAV and CardDAV), the location grammar and the cross-option auth rules.
import { concurrencyOption, ConfigError, maxRetriesOption, opt, type ConfigProblem } from '../../shared/index.ts';

/** Calendar component types a calendar object resource can hold, in the order the docs list them. */
export const COMPONENTS = ['VEVENT', 'VTODO', 'VJOURNAL'] as const;

/** Options both connectors read. */
export const commonOptions = [
  opt.string('username', {
    help: 'User name for Basic or Digest authentication (the account name or e-mail address).\nDigest is used automatically when the server asks for it.',
    examples: ['alice', 'alice@fastmail.com'],
  }),
  opt.string('password', {
    help: 'Password or app-specific password for `username` (iCloud, Fastmail and Nextcloud with 2FA need an app password).',
    secret: true,
  }),
  opt.string('access_token', {
    help: 'An OAuth 2.0 access token sent as `Authorization: Bearer`.\nShort-lived; prefer `refresh_token` with `client_id` and `token_url` so the integration renews tokens itself.',
    secret: true,
  }),
  opt.string('refresh_token', {
    help: 'An OAuth 2.0 refresh token; with `client_id` (and `client_secret`) and `token_url`, access tokens are obtained and renewed automatically.',
    secret: true,
  }),
  opt.string('client_id', { help: 'OAuth 2.0 client id that issued `refresh_token`.' }),
  opt.string('client_secret', { help: 'OAuth 2.0 client secret of `client_id` (omit for public clients).', secret: true }),
  opt.url('token_url', {
    help: 'OAuth 2.0 token endpoint used with `refresh_token`.',
    schemes: ['https', 'http'],
    examples: ['https://oauth2.googleapis.com/token'],
  }),
  opt.bool('use_tls', { help: 'Talk HTTPS to the server; set to false for plain HTTP on a trusted network.', default: true }),
  opt.bool('tls_insecure_no_verify', {
    help: 'Accept any TLS certificate, including self-signed ones (test servers only: it allows interception).',
    default: false,
  }),
  opt.list('components', {
    help: 'Calendar component types to back up and restore: any of VEVENT, VTODO, VJOURNAL (caldav only; default all).\nCalendars that support none of them are skipped.',
    default: [...COMPONENTS],
    validate: (list) => {
      const bad = list.filter((c) => !(COMPONENTS as readonly string[]).includes(c.toUpperCase()));
      if (bad.length > 0) return `expected a list of ${COMPONENTS.join(', ')}, got ${JSON.stringify(bad.join(','))}`;
      if (list.length === 0) return `expected at least one of ${COMPONENTS.join(', ')}`;
      return undefined;
    },
  }),
  concurrencyOption(4, 'Parallel HTTP requests to the server.'),
  opt.int('batch_size', {
    help: 'Objects fetched per calendar-multiget / addressbook-multiget request.',
    default: 100,
    min: 1,
    max: 1000,
    advanced: true,
  }),
  opt.duration('timeout', {
    help: 'Time limit for one HTTP request (a retry gets a fresh limit).\nSome servers take minutes to list a collection of thousands of objects the first time.',
    default: 300_000,
    min: 1000,
    advanced: true,
  }),
  maxRetriesOption,
] as const;

/** Importer options: the common ones plus which collections to back up. */
export const importerOptions = [
  ...commonOptions,
  opt.list('include', {
    help: 'Only these collections: comma-separated glob patterns (`*`, `?`) matched, without regard to case, against the collection name (last path segment) or its display name.',
    default: [],
    examples: ['work,personal', 'Family*'],
  }),
  opt.list('exclude', {
    help: 'Skip these collections: comma-separated glob patterns matched like `include`; exclude wins over include.',
    default: [],
    examples: ['*birthdays*', 'contact_birthdays'],
  }),
] as const;

/** Exporter options: the common ones plus the conflict policy. */
export const exporterOptions = [
  ...commonOptions,
  opt.enum('on_conflict', ['skip', 'overwrite'] as const, {
    help: 'What a restore does when an object with the same name or UID already exists with different content: `skip` keeps the server copy and reports the item; `overwrite` replaces it (conditional PUT with If-Match on the current ETag).\nObjects already present with the same content are never rewritten and never reported.',
    default: 'skip',
  }),
] as const;

/** The location help and pattern shared by both connectors. */
export const LOCATION = {
  help: 'caldav://host[:port]/path (calendars) or carddav://host[:port]/path (address books); the path may be the server root, a principal, a calendar or address book home, or one collection',
  examples: ['caldav://nextcloud.example.com/remote.php/dav', 'carddav://carddav.fastmail.com/dav/addressbooks/user/alice@fastmail.com/Default'],
  pattern: '^(?:caldav|carddav)://[^/?#]+(?:/[^?#]*)?$',
} as const;

/** What the options parse into, as far as the client cares. */
export interface ConnectionOptions {
  location: string;
  username?: string;
  password?: string;
  accessToken?: string;
  refreshToken?: string;
  clientId?: string;
  clientSecret?: string;
  tokenUrl?: string;
  useTls: boolean;
  tlsInsecureNoVerify: boolean;
}

/** Which protocol a location speaks: `caldav` (calendars) or `carddav` (address books). */
export type DavKind = 'caldav' | 'carddav';

/** The kind of DAV data a protocol name serves. */
export function kindOf(proto: string): DavKind {
  return proto === 'carddav' ? 'carddav' : 'caldav';
}

/** The HTTP(S) URL of a `caldav://` / `carddav://` location; the path always ends with `/`. */
export function serverUrl(location: string, proto: string, useTls: boolean): URL {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(location.trim());
  const expected = `expected ${proto}://host[:port]/path`;
  if (!m || (m[1] ?? '').toLowerCase() !== proto) {
    throw new ConfigError('location', `${expected}, got ${JSON.stringify(location)}`);
  }
  let url: URL;
  try {
    url = new URL(`${useTls ? 'https' : 'http'}://${m[2] ?? ''}`);
  } catch {
    throw new ConfigError('location', `${expected}, got ${JSON.stringify(location)}`);
  }
  if (!url.hostname) throw new ConfigError('location', `${expected} (the host is missing), got ${JSON.stringify(location)}`);
  if (url.username || url.password) {
    throw new ConfigError('location', `${expected} without credentials; put them in username and password`);
  }
  if (url.search || url.hash) throw new ConfigError('location', `${expected} without ?query or #fragment`);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/** Checks the rules that tie several auth options together; throws one ConfigError listing every problem. */
export function checkAuthOptions(o: ConnectionOptions): void {
  const problems: ConfigProblem[] = [];
  const bearer = o.accessToken !== undefined || o.refreshToken !== undefined;
  if (o.password !== undefined && o.username === undefined) {
    problems.push({ key: 'username', message: 'is required with password' });
  }
  if (bearer && o.password !== undefined) {
    problems.push({ key: 'password', message: 'cannot be combined with access_token or refresh_token; use one way to log in' });
  }
  if (o.refreshToken !== undefined) {
    if (o.clientId === undefined) problems.push({ key: 'client_id', message: 'is required with refresh_token' });
    if (o.tokenUrl === undefined) {
      problems.push({ key: 'token_url', message: 'is required with refresh_token (Google: https://oauth2.googleapis.com/token)' });
    }
  } else {
    if (o.clientSecret !== undefined) problems.push({ key: 'client_secret', message: 'is only used with refresh_token' });
    if (o.tokenUrl !== undefined) problems.push({ key: 'token_url', message: 'is only used with refresh_token' });
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
