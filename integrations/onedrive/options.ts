// OneDrive option declarations (shared + per connector kind), the location grammar and the credential rules.
import {
  cleanPath,
  ConfigError,
  maxRetriesOption,
  opt,
  readAheadOptions,
  type ConfigProblem,
} from '../../shared/index.ts';

/** Upload fragments must be multiples of 320 KiB (https://learn.microsoft.com/graph/api/driveitem-createuploadsession). */
export const FRAGMENT_QUANTUM = 320 * 1024;

/** Graph refuses fragments of 60 MiB or more. */
export const MAX_FRAGMENT = 60 * 1024 * 1024 - FRAGMENT_QUANTUM;

/** The national clouds: Graph host and identity-platform host of each. */
export const REGIONS = {
  global: { graph: 'https://graph.microsoft.com', login: 'https://login.microsoftonline.com' },
  us: { graph: 'https://graph.microsoft.us', login: 'https://login.microsoftonline.us' },
  dod: { graph: 'https://dod-graph.microsoft.us', login: 'https://login.microsoftonline.us' },
  cn: { graph: 'https://microsoftgraph.chinacloudapi.cn', login: 'https://login.chinacloudapi.cn' },
} as const;

/** Scopes asked for by default: read/write every file the user can reach, SharePoint sites, and a refresh token. */
export const DEFAULT_SCOPES = ['Files.ReadWrite.All', 'Sites.Read.All', 'offline_access'] as const;

/** Options every OneDrive connector reads: which drive, which credentials, how to reach Graph. */
export const commonOptions = [
  opt.string('client_id', {
    help: 'Application (client) ID of your app registration in Microsoft Entra ID.\nRequired with refresh_token (public client: personal and work or school accounts) and with client_secret (app-only). See docs/onedrive.md for the registration steps.',
    examples: ['00000000-1111-2222-3333-444444444444'],
  }),
  opt.string('refresh_token', {
    help: 'Refresh token of the signed-in user, printed by `onedrive login` (the device-code sign-in).\nAccess tokens are obtained and renewed from it for runs of any length. Microsoft replaces the refresh token on every use; set token_file to keep the newest one.',
    secret: true,
  }),
  opt.string('token_file', {
    help: 'File holding the current refresh token, read at start and rewritten (atomically, mode 0600) whenever the identity platform issues a new one.\nWithout it, a stored refresh_token stops working 90 days after it was issued; with it, every run extends the sign-in.',
    examples: ['/home/me/.config/plakar/onedrive-token.json'],
  }),
  opt.string('client_secret', {
    help: 'Client secret of a confidential app: with client_id, tenant and drive_id or site it signs in as the application itself (client credentials, no user); with refresh_token it is sent along when refreshing.',
    secret: true,
  }),
  opt.string('tenant', {
    help: 'Directory (tenant) ID or domain of the identity platform: `common` for personal and work accounts, `consumers` for personal only, `organizations`, or your tenant (required for app-only sign-in).',
    default: 'common',
    pattern: /^[A-Za-z0-9.-]+$/,
    expected: 'a tenant ID, a domain, common, organizations or consumers',
  }),
  opt.string('access_token', {
    help: 'A ready access token for Microsoft Graph (it lasts about an hour and cannot be renewed); for short runs and tests only.',
    secret: true,
  }),
  opt.string('drive_id', {
    help: 'ID of the drive to use (default: the signed-in user’s OneDrive; required for app-only sign-in unless site is set).\n`onedrive login` prints it.',
  }),
  opt.enum('drive_type', ['personal', 'business', 'documentLibrary'], {
    help: 'Expected kind of drive: `personal` (OneDrive), `business` (OneDrive for work or school) or `documentLibrary` (SharePoint); the connector refuses a drive of another kind.',
  }),
  opt.string('site', {
    help: 'SharePoint site (its URL, such as https://contoso.sharepoint.com/sites/Team, or its site ID) whose default document library is the drive.',
    examples: ['https://contoso.sharepoint.com/sites/Team'],
  }),
  opt.list('scopes', {
    help: 'Delegated permissions requested when refreshing tokens (space or comma separated in `onedrive login`).',
    default: [...DEFAULT_SCOPES],
    advanced: true,
  }),
  opt.enum('region', ['global', 'us', 'dod', 'cn'], {
    help: 'Microsoft cloud: `global`, `us` (US Government L4), `dod` (US Government L5) or `cn` (operated by 21Vianet).',
    default: 'global',
    advanced: true,
  }),
  opt.url('endpoint', {
    help: 'Send every Graph and identity-platform request to this base URL instead of Microsoft’s hosts (a test emulator or a recording proxy); leave unset in production.',
    schemes: ['http', 'https'],
    advanced: true,
  }),
  opt.duration('timeout', {
    help: 'Longest a single request may take, and longest a download may stall, before it is retried.',
    default: 5 * 60_000,
    min: 1000,
    advanced: true,
  }),
  maxRetriesOption,
] as const;

/** Folder listings at once when `concurrency` is not set (backups and repository Lists). */
export const DEFAULT_LIST_CONCURRENCY = 8;

/** `concurrency`: without it the exporter follows the host's `-concurrency`. */
const concurrency = opt.int('concurrency', {
  help: 'Requests running at once: uploads during a restore (default: Plakar’s -concurrency) and folder listings during a backup or a repository List (default 8).',
  min: 1,
  max: 64,
});

const chunkSize = opt.size('chunk_size', {
  help: 'Size of each upload-session fragment: a multiple of 320 KiB below 60 MiB. Each upload holds one fragment in memory.',
  default: 10 * 1024 * 1024,
  min: FRAGMENT_QUANTUM,
  max: MAX_FRAGMENT,
  multipleOf: FRAGMENT_QUANTUM,
});

const uploadCutoff = opt.size('upload_cutoff', {
  help: 'Files up to this size are sent in one PUT; larger ones through an upload session.',
  default: 4 * 1024 * 1024,
  min: 0,
  max: 250 * 1000 * 1000,
  advanced: true,
});

/** Importer options. */
export const importerOptions = [
  ...commonOptions,
  concurrency,
  opt.bool('include_onenote', {
    help: 'Back up the files inside OneNote notebooks; by default each notebook is skipped with a note in the snapshot’s error list.',
    default: false,
  }),
  opt.enum('listing', ['auto', 'delta', 'children'], {
    help: 'How the tree is listed: `delta` (a few paged calls for the whole tree), `children` (one call per folder) or `auto` (delta, falling back to children where the drive does not offer delta for the folder).',
    default: 'auto',
    advanced: true,
  }),
] as const;

/** Exporter options. */
export const exporterOptions = [
  ...commonOptions,
  concurrency,
  chunkSize,
  uploadCutoff,
  opt.enum('on_conflict', ['overwrite', 'skip', 'rename'], {
    help: 'When a restored file already exists: `overwrite` it, `skip` it (keeping the existing file), or `rename` the restored copy (OneDrive appends a number).',
    default: 'overwrite',
  }),
] as const;

/** Storage options. */
export const storageOptions = [
  ...commonOptions,
  chunkSize,
  uploadCutoff,
  opt.size('memory_buffer', {
    help: 'Bytes of one Put kept in memory; beyond this the Put spills to a private temporary file (Graph needs the size before an upload starts).',
    default: 16 * 1024 * 1024,
    min: 0,
    max: 1024 * 1024 * 1024,
  }),
  opt.string('temp_dir', {
    help: 'Directory under which spilled Puts get a private folder (default: the system temporary directory).',
  }),
  concurrency,
  ...readAheadOptions,
] as const;

/** The options every connector's code relies on (the intersection of the three lists). */
export interface CommonValues {
  location: string;
  clientId?: string;
  refreshToken?: string;
  tokenFile?: string;
  clientSecret?: string;
  tenant: string;
  accessToken?: string;
  driveId?: string;
  driveType?: 'personal' | 'business' | 'documentLibrary';
  site?: string;
  scopes: string[];
  region: keyof typeof REGIONS;
  endpoint?: string;
  timeout: number;
  maxRetries: number;
}

/** The folder of a `onedrive://[/path]` location, as a clean absolute path in the drive (`/` for the root). */
export function folderOf(location: string, proto: string): string {
  const prefix = `${proto}://`;
  if (!location.startsWith(prefix)) {
    throw new ConfigError('location', `expected ${proto}://[/path/in/the/drive], got ${JSON.stringify(location)}`);
  }
  let rest = location.slice(prefix.length).split(/[?#]/)[0] ?? '';
  try {
    rest = decodeURIComponent(rest);
  } catch {
    // not percent-encoded: take it as written
  }
  return cleanPath(`/${rest}`);
}

/** How the connector signs in, decided from the options. */
export type AuthMode = 'refresh' | 'app' | 'static';

const TENANT_ALIASES = ['common', 'organizations', 'consumers'];

/** Checks the credential options together; returns the mode or throws a ConfigError naming every problem. */
export function authModeOf(o: CommonValues): AuthMode {
  const problems: ConfigProblem[] = [];
  let mode: AuthMode | undefined;
  if (o.refreshToken || o.tokenFile) {
    mode = 'refresh';
    if (!o.clientId) problems.push({ key: 'client_id', message: 'is required with refresh_token or token_file (the app the token was issued to)' });
  } else if (o.clientSecret) {
    mode = 'app';
    if (!o.clientId) problems.push({ key: 'client_id', message: 'is required with client_secret' });
    if (TENANT_ALIASES.includes(o.tenant.toLowerCase())) {
      problems.push({ key: 'tenant', message: `app-only sign-in needs your tenant ID or domain, not ${JSON.stringify(o.tenant)}` });
    }
    if (!o.driveId && !o.site) {
      problems.push({ key: 'drive_id', message: 'app-only sign-in has no signed-in user: set drive_id or site' });
    }
  } else if (o.accessToken) {
    mode = 'static';
  } else {
    problems.push({
      key: 'refresh_token',
      message:
        'no credentials: give client_id and refresh_token (run `onedrive login`), or client_id, client_secret, tenant and drive_id for app-only access, or an access_token',
    });
  }
  if (problems.length > 0 || !mode) throw new ConfigError(problems);
  return mode;
}
