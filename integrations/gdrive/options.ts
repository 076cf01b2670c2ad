// Options of the gdrive integration (one declaration each: parsing, validation, schema, docs) and the location grammar.
import { ConfigError, maxRetriesOption, opt, readAheadOptions } from '../../shared/index.ts';
import { DEFAULT_API_URL, DEFAULT_EXPORT_FORMATS, DEFAULT_TOKEN_URL, EXPORT_FORMATS } from './api.ts';
import { nameOf, segmentOf } from './map.ts';

/** Resumable uploads must send chunks in multiples of 256 KiB (Google's upload protocol). */
export const CHUNK_GRANULARITY = 256 * 1024;

/** Where to find the tree: the shared drive, the start folder and the view. */
export const locationOptions = [
  opt.string('drive', {
    help: 'Shared drive to use, by name or id, instead of My Drive.\nThe location path is then relative to the shared drive\'s root. A name must match exactly one shared drive the account can see.',
    examples: ['Team Backups', '0AbCdEfGhIjKlMnOpQr'],
  }),
  opt.string('root_folder_id', {
    help: 'Id of the folder that the location path starts from, instead of the root of My Drive or of the shared drive.\nThe id is the last part of the folder\'s URL in the Drive web interface.',
    pattern: /^[A-Za-z0-9_-]{10,}$/,
    expected: 'a Drive folder id (letters, digits, - and _)',
    advanced: true,
  }),
] as const;

/** The three ways to authenticate. */
export const authOptions = [
  opt.string('client_id', {
    help: 'OAuth client id of your Google Cloud project (user sign-in, with client_secret and refresh_token).\nCreate a "Desktop app" OAuth client in the Google Cloud console; `gdrive login` then prints the refresh_token.',
  }),
  opt.string('client_secret', {
    help: 'OAuth client secret that goes with client_id.',
    secret: true,
  }),
  opt.string('refresh_token', {
    help: 'Long-lived OAuth refresh token printed by `gdrive login`; access tokens are obtained and renewed from it automatically.',
    secret: true,
  }),
  opt.string('service_account_key', {
    help: 'Service account JSON key, inline or as a path to the key file (instead of user sign-in).\nWith `impersonate`, the service account acts as that user through domain-wide delegation (Google Workspace). `plakar … show` prints this value: prefer a file path.',
    secret: true,
  }),
  opt.string('impersonate', {
    help: 'Email of the Workspace user the service account acts as (domain-wide delegation must allow the Drive scope).',
    pattern: /^[^@\s]+@[^@\s]+$/,
    expected: 'an email address',
  }),
  opt.string('access_token', {
    help: 'A short-lived OAuth access token used as is (about one hour); for quick tests only, since it cannot be renewed.',
    secret: true,
    advanced: true,
  }),
] as const;

/** Endpoints (tests point the real client at an emulator; nothing is monkey-patched). */
export const endpointOptions = [
  opt.url('api_url', {
    help: 'Root URL of the Google Drive API (for tests against an emulator, or a proxy).',
    default: DEFAULT_API_URL,
    schemes: ['https', 'http'],
    advanced: true,
  }),
  opt.url('token_url', {
    help: 'OAuth 2.0 token endpoint used to obtain access tokens (for tests against an emulator, or a proxy).',
    default: DEFAULT_TOKEN_URL,
    schemes: ['https', 'http'],
    advanced: true,
  }),
] as const;

/** `chunk_size` for uploads. */
export const chunkSizeOption = opt.size('chunk_size', {
  help: 'Size of each resumable upload request; a multiple of 256 KiB.\nFiles and objects smaller than this (and than 5 MiB) are sent in one request. Each upload in flight holds one chunk in memory.',
  default: 8 * 1024 * 1024,
  min: CHUNK_GRANULARITY,
  max: 1024 * 1024 * 1024,
  multipleOf: CHUNK_GRANULARITY,
});

/** `timeout`: how long one request may take before it is retried. */
export const timeoutOption = opt.duration('timeout', {
  help: 'Longest a single request may take (a listing page, an upload chunk), and longest a download may stall, before it is retried.',
  default: 5 * 60_000,
  min: 1000,
  advanced: true,
});

const common = [...authOptions, ...locationOptions, ...endpointOptions, timeoutOption, maxRetriesOption] as const;

/** Importer options. */
export const importerOptions = [
  ...common,
  opt.bool('shared_with_me', {
    help: 'Back up the "Shared with me" view (items other people shared with the account) instead of My Drive.',
    default: false,
  }),
  opt.list('export_formats', {
    help: `Formats Google Docs, Sheets, Slides and Drawings are exported to, by extension, in order of preference.\nEach document uses the first format its type offers. Known: ${Object.keys(EXPORT_FORMATS).join(', ')}. Documents are recorded with size -1, and their Drive id and native type as the extended attributes user.gdrive.id and user.gdrive.mime.`,
    default: [...DEFAULT_EXPORT_FORMATS],
    examples: ['docx,xlsx,pptx,svg', 'odt,ods,odp,svg', 'pdf'],
    validate: (v) => {
      const bad = v.filter((e) => !EXPORT_FORMATS[e.toLowerCase().replace(/^\./, '')]);
      if (bad.length > 0) return `expected extensions among ${Object.keys(EXPORT_FORMATS).join(', ')}, got ${bad.join(', ')}`;
      return v.length === 0 ? 'expected at least one extension' : undefined;
    },
  }),
  opt.bool('skip_gdocs', {
    help: 'Skip Google Docs, Sheets, Slides and Drawings entirely (no export).',
    default: false,
  }),
  opt.enum('shortcuts', ['skip', 'follow', 'link'] as const, {
    help: 'What to do with Drive shortcuts: `follow` backs up the target in place of the shortcut, `skip` ignores them, `link` records a symbolic link to the target.\nA `link` target is the relative path of the target when it is part of the backup, or `gdrive:<id>` otherwise; restoring it to Drive recreates the shortcut.',
    default: 'follow',
  }),
] as const;

/** Exporter options. */
export const exporterOptions = [
  ...common,
  chunkSizeOption,
  opt.int('concurrency', {
    help: 'Files uploaded at the same time (default: 4; the host\'s -concurrency does not change it).',
    default: 4,
    min: 1,
    max: 64,
  }),
  opt.bool('import_as_native', {
    help: 'Convert Office and OpenDocument files that were exported from Google documents back into native Docs, Sheets and Slides.\nOnly files carrying the user.gdrive.mime attribute from a gdrive backup are converted; their extension is removed.',
    default: false,
  }),
  opt.enum('on_conflict', ['overwrite', 'skip', 'rename'] as const, {
    help: 'What to do when the destination folder already holds an item of the same name: `overwrite` replaces its content, `skip` keeps it, `rename` stores the restored file as "name (1).ext".',
    default: 'overwrite',
  }),
] as const;

/** Storage options. */
export const storageOptions = [...common, chunkSizeOption, ...readAheadOptions] as const;

/** A parsed location: the folder path below the start folder, as raw Drive names. */
export interface DriveLocation {
  /** Raw folder names from the start folder, e.g. ['Backups', 'plakar']. */
  segments: string[];
  /** Snapshot-style path (`/Backups/plakar`, `/` for the start folder). */
  path: string;
}

/** Parses `gdrive://[/path]`; path segments use snapshot encoding (`%2F` for a `/` inside a name). */
export function parseLocation(location: string, proto: string): DriveLocation {
  const prefix = `${proto}://`;
  if (!location.startsWith(prefix)) {
    throw new ConfigError('location', `expected ${proto}://[/path] (e.g. ${proto}:///Backups), got ${JSON.stringify(location)}`);
  }
  const rest = location.slice(prefix.length).split(/[?#]/)[0] ?? '';
  const raw = rest.split('/').filter((s) => s !== '');
  if (raw.some((s) => s === '.' || s === '..')) {
    throw new ConfigError('location', `expected a path without "." or ".." segments, got ${JSON.stringify(location)}`);
  }
  // Names are typed as they are; `%2F` stands for a `/` inside a name, `%25` for a `%` that would read as an escape.
  const segments = raw.map(nameOf);
  return { segments, path: `/${segments.map(segmentOf).join('/')}` };
}

/** Extensions of `export_formats`, normalised (lower case, no dot). */
export function exportExtensions(formats: readonly string[]): string[] {
  return formats.map((e) => e.toLowerCase().replace(/^\./, ''));
}
