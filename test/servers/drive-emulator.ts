// An in-memory Google Drive v3 emulator on 127.0.0.1 (contents on disk), faithful to the published API for the subset the
// gdrive integration uses, with test controls: throttling, 5xx, dropped connections, token expiry, request counts.
//
// Reference: https://developers.google.com/workspace/drive/api/reference/rest/v3 (files.list/get/create/update/delete/export,
// about.get, drives.list/get), https://developers.google.com/workspace/drive/api/guides/manage-uploads (multipart and
// resumable: 308 Resume Incomplete, Range replies, `Content-Range: bytes */*` status queries, unknown total length),
// https://developers.google.com/workspace/drive/api/guides/handle-errors (error bodies and reasons) and
// https://developers.google.com/identity/protocols/oauth2 (token endpoint: refresh_token, jwt-bearer, authorization_code).
import { createCipheriv, createHash, createPublicKey, generateKeyPairSync, randomBytes, verify, type Hash, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseFields, project, FieldsError } from './drive-emulator/fields.ts';
import { compileQuery, QueryError, type QueryFile } from './drive-emulator/query.ts';
import { RequestOrigin } from './request-origin.ts';

/** MIME types of Drive's own item kinds. */
export const MIME = {
  folder: 'application/vnd.google-apps.folder',
  shortcut: 'application/vnd.google-apps.shortcut',
  document: 'application/vnd.google-apps.document',
  spreadsheet: 'application/vnd.google-apps.spreadsheet',
  presentation: 'application/vnd.google-apps.presentation',
  drawing: 'application/vnd.google-apps.drawing',
  form: 'application/vnd.google-apps.form',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text',
  ods: 'application/x-vnd.oasis.opendocument.spreadsheet',
  odp: 'application/vnd.oasis.opendocument.presentation',
  pdf: 'application/pdf',
  svg: 'image/svg+xml',
  png: 'image/png',
} as const;

/** Export formats per native type (about.exportFormats, trimmed to the common ones). */
export const EXPORT_FORMATS: Readonly<Record<string, readonly string[]>> = {
  [MIME.document]: [MIME.docx, MIME.odt, 'application/rtf', MIME.pdf, 'text/plain', 'application/zip', 'application/epub+zip', 'text/markdown'],
  [MIME.spreadsheet]: [MIME.xlsx, MIME.ods, 'application/vnd.oasis.opendocument.spreadsheet', MIME.pdf, 'text/csv', 'text/tab-separated-values', 'application/zip'],
  [MIME.presentation]: [MIME.pptx, MIME.odp, MIME.pdf, 'text/plain'],
  [MIME.drawing]: [MIME.svg, MIME.png, 'image/jpeg', MIME.pdf],
  'application/vnd.google-apps.script': ['application/vnd.google-apps.script+json'],
};

/** Import (conversion) formats: uploaded MIME type → native types it converts to (about.importFormats, trimmed). */
export const IMPORT_FORMATS: Readonly<Record<string, readonly string[]>> = {
  [MIME.docx]: [MIME.document],
  'application/msword': [MIME.document],
  [MIME.odt]: [MIME.document],
  'application/rtf': [MIME.document],
  'text/plain': [MIME.document],
  'text/html': [MIME.document],
  [MIME.xlsx]: [MIME.spreadsheet],
  [MIME.ods]: [MIME.spreadsheet],
  'application/vnd.oasis.opendocument.spreadsheet': [MIME.spreadsheet],
  'text/csv': [MIME.spreadsheet],
  [MIME.pptx]: [MIME.presentation],
  [MIME.odp]: [MIME.presentation],
};

/** Routes, as counted in `stats.byRoute` and matched by fault rules. */
export type Route =
  | 'token'
  | 'auth'
  | 'about'
  | 'drives'
  | 'list'
  | 'get'
  | 'media'
  | 'export'
  | 'create'
  | 'update'
  | 'delete'
  | 'upload'
  | 'chunk'
  | 'unknown';

/** One emulated item (file, folder, shortcut, native document). */
export interface EmuFile {
  id: string;
  name: string;
  mimeType: string;
  /** Parent folder ids (one at most, as Drive enforces since 2020); empty for roots. */
  parents: string[];
  trashed: boolean;
  createdTime: string;
  modifiedTime: string;
  /** Owner's email; empty for items of a shared drive. */
  owner: string;
  /** Shared drive id, for items of a shared drive (and its root). */
  driveId?: string;
  size?: number;
  md5?: string;
  /** Content file on disk (regular files). */
  blob?: string;
  /** Native document body and the format it was imported from. */
  native?: { body: Buffer; originFormat?: string };
  shortcut?: { targetId: string; targetMimeType: string };
  /** Users this item is shared with directly. */
  sharedWith: Set<string>;
  appProperties?: Record<string, string>;
  description?: string;
  version: number;
}

/** What a fault does to a matching request. */
export type FaultAction =
  | { kind: 'error'; status: number; reason: string; message?: string; retryAfter?: string }
  /**
   * Closes the connection; with `afterBytes`, after reading (uploads) or sending (downloads) that many body bytes. An
   * upload chunk cut this way keeps the whole 256 KiB units it received, or with `unaligned` every byte received (Drive
   * may commit any prefix of a cut request; its `Range` then ends mid-unit, as after a real cut connection).
   */
  | { kind: 'drop'; afterBytes?: number; unaligned?: boolean }
  /** Handles the request completely, then closes the connection instead of answering (the answer is lost). */
  | { kind: 'lose-answer' }
  /** Downloads: sends `afterBytes` of the body, then goes silent for `ms` before going on. */
  | { kind: 'stall'; afterBytes: number; ms: number }
  /** Uploads (multipart or a resumable chunk): the first byte of the content is stored flipped, as if damaged in transit. */
  | { kind: 'corrupt' }
  /** Downloads: the Range header is ignored and the whole file answered with 200, as a careless proxy would. */
  | { kind: 'ignore-range' }
  | { kind: 'delay'; ms: number };

/** A test-controlled fault: applies to `times` matching requests (or each with `probability`). */
export interface FaultRule {
  routes?: readonly Route[];
  /** Extra match on the request (method, path, the file concerned when known). */
  when?: (req: { route: Route; method: string; url: URL; fileId?: string }) => boolean;
  /** How many matching requests it applies to (default 1; Infinity with `probability`). */
  times?: number;
  /** Probability in [0,1] for each matching request (a seeded generator decides). */
  probability?: number;
  action: FaultAction;
}

/** Request counters. */
export interface EmulatorStats {
  requests: number;
  byRoute: Record<string, number>;
  byStatus: Record<number, number>;
  /** 401 answers (invalid or expired token). */
  unauthorized: number;
  /** Faults injected. */
  faults: number;
  /** Largest number of requests in flight at once. */
  maxInFlight: number;
  /** Bytes received in upload bodies and sent in media downloads. */
  uploadBytes: number;
  downloadBytes: number;
  /** TCP connections accepted (clients that reuse connections keep this low). */
  connections: number;
}

/** Options of the emulator. */
export interface DriveEmulatorOptions {
  /** Access-token lifetime in seconds (default 3600). */
  tokenLifetimeSec?: number;
  /** Largest export through files.export in bytes (Google: 10 MB). */
  exportSizeLimit?: number;
  /** Delay added to every request (ms), to stand in for network latency. */
  latencyMs?: number;
  /** Seed of the fault probability generator. */
  seed?: number;
}

interface Token {
  user: string;
  expiresAt: number;
  scope: string;
}

interface Session {
  id: string;
  user: string;
  /** Set for files.update sessions. */
  fileId?: string;
  meta: Record<string, unknown>;
  params: URLSearchParams;
  mediaType: string;
  declaredTotal?: number;
  persisted: number;
  path: string;
  hash: Hash;
  done?: EmuFile;
  gone: boolean;
}

interface ServiceAccount {
  email: string;
  publicKey: KeyObject;
  delegation: boolean;
}

const CHUNK_GRANULARITY = 256 * 1024;

class HttpError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly extra: { domain?: string; location?: string; locationType?: string; retryAfter?: string };
  constructor(status: number, reason: string, message: string, extra: HttpError['extra'] = {}) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.extra = extra;
  }
}

const nowIso = (): string => new Date().toISOString();

function newId(): string {
  return `1${randomBytes(24).toString('base64url')}`.slice(0, 33);
}

/** Deterministic pseudo-random bytes (AES-CTR keystream) for large test files. */
export function pseudoRandomStream(size: number, seed = 1): Readable {
  const key = createHash('sha256').update(`seed:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zero = Buffer.alloc(1024 * 1024);
  let left = size;
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(left, zero.length);
      left -= n;
      this.push(cipher.update(zero.subarray(0, n)));
    },
  });
}

/** The MD5 (hex) of `pseudoRandomStream(size, seed)`. */
export async function pseudoRandomMd5(size: number, seed = 1): Promise<string> {
  const h = createHash('md5');
  for await (const c of pseudoRandomStream(size, seed)) h.update(c as Buffer);
  return h.digest('hex');
}

/** The emulator. Start with `DriveEmulator.start()`, stop with `close()`. */
export class DriveEmulator {
  /**
   * Base URL with a trailing slash: the `api_url` option. Absolute URLs in answers (resumable upload sessions, export
   * links) are built from the address each request was sent to (its Host header: a fault proxy's, when the client
   * goes through one), and from this one only for a request without a usable Host header.
   */
  url = '';
  /** The OAuth token endpoint: the `token_url` option. */
  tokenUrl = '';
  /** The OAuth authorization endpoint (for the login command). */
  authUrl = '';
  readonly stats: EmulatorStats = DriveEmulator.emptyStats();
  /** The user who consents on the authorization endpoint. */
  loginUser = 'alice@example.com';
  tokenLifetimeSec: number;
  exportSizeLimit: number;
  latencyMs: number;

  private server!: Server;
  private readonly dataDir: string;
  private readonly files = new Map<string, EmuFile>();
  private readonly roots = new Map<string, string>();
  private readonly drives = new Map<string, { name: string; createdTime: string }>();
  private readonly clients = new Map<string, string>();
  private readonly refreshTokens = new Map<string, { clientId: string; user: string }>();
  private readonly codes = new Map<string, { clientId: string; redirectUri: string; challenge?: string; user: string }>();
  private readonly serviceAccounts = new Map<string, ServiceAccount>();
  private readonly tokens = new Map<string, Token>();
  private readonly sessions = new Map<string, Session>();
  private readonly quota = new Map<string, number>();
  private faults: Array<FaultRule & { left: number }> = [];
  private readonly sockets = new Set<Socket>();
  private inFlight = 0;
  private blobCounter = 0;
  private rng: number;
  /** The address the request being answered was sent to. */
  private readonly origin = new RequestOrigin();

  private constructor(options: DriveEmulatorOptions) {
    this.tokenLifetimeSec = options.tokenLifetimeSec ?? 3600;
    this.exportSizeLimit = options.exportSizeLimit ?? 10 * 1024 * 1024;
    this.latencyMs = options.latencyMs ?? 0;
    this.rng = options.seed ?? 12345;
    this.dataDir = mkdtempSync(join(tmpdir(), 'drive-emulator-'));
  }

  private static emptyStats(): EmulatorStats {
    return { requests: 0, byRoute: {}, byStatus: {}, unauthorized: 0, faults: 0, maxInFlight: 0, uploadBytes: 0, downloadBytes: 0, connections: 0 };
  }

  /** Starts an emulator on 127.0.0.1 at a random port, with user alice@example.com. */
  static async start(options: DriveEmulatorOptions = {}): Promise<DriveEmulator> {
    const emu = new DriveEmulator(options);
    emu.addUser('alice@example.com');
    emu.server = createServer((req, res) => {
      void emu.origin.run(req, () => emu.handle(req, res));
    });
    emu.server.keepAliveTimeout = 30_000;
    emu.server.on('connection', (s) => {
      emu.sockets.add(s);
      emu.stats.connections++;
      s.on('close', () => emu.sockets.delete(s));
    });
    await new Promise<void>((resolve) => emu.server.listen(0, '127.0.0.1', resolve));
    const port = (emu.server.address() as AddressInfo).port;
    emu.url = `http://127.0.0.1:${port}/`;
    emu.tokenUrl = `${emu.url}token`;
    emu.authUrl = `${emu.url}o/oauth2/v2/auth`;
    return emu;
  }

  /** Base URL (trailing slash) of the absolute URLs handed out: where the request being answered was sent. */
  private base(): string {
    return `${this.origin.current(this.url.replace(/\/$/, ''))}/`;
  }

  /** Stops the server and removes every stored content. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  // ---------------------------------------------------------------- accounts and credentials

  /** Adds a user with an empty My Drive; returns the root folder id. */
  addUser(email: string): string {
    const existing = this.roots.get(email);
    if (existing) return existing;
    const id = newId();
    this.files.set(id, {
      id,
      name: 'My Drive',
      mimeType: MIME.folder,
      parents: [],
      trashed: false,
      createdTime: '2020-01-01T00:00:00.000Z',
      modifiedTime: '2020-01-01T00:00:00.000Z',
      owner: email,
      sharedWith: new Set(),
      version: 1,
    });
    this.roots.set(email, id);
    return id;
  }

  /** The My Drive root folder id of `user`. */
  rootId(user = 'alice@example.com'): string {
    const id = this.roots.get(user);
    if (!id) throw new Error(`no user ${user}`);
    return id;
  }

  /** Registers an OAuth client (what `client_id`/`client_secret` name). */
  addClient(clientId: string, clientSecret: string): void {
    this.clients.set(clientId, clientSecret);
  }

  /** Issues a refresh token for `clientId` and `user` (what the login flow would give). */
  issueRefreshToken(clientId: string, user = 'alice@example.com'): string {
    const t = `1//rt-${randomBytes(18).toString('base64url')}`;
    this.refreshTokens.set(t, { clientId, user });
    return t;
  }

  /** Revokes a refresh token (the next refresh answers invalid_grant). */
  revokeRefreshToken(token: string): void {
    this.refreshTokens.delete(token);
  }

  /** Issues an access token directly (the `access_token` option). */
  issueAccessToken(user = 'alice@example.com', lifetimeSec = this.tokenLifetimeSec): string {
    const t = `ya29.emu-${randomBytes(24).toString('base64url')}`;
    this.tokens.set(t, { user, expiresAt: Date.now() + lifetimeSec * 1000, scope: 'https://www.googleapis.com/auth/drive' });
    return t;
  }

  /** Expires every access token issued so far: the next API call with one answers 401. */
  expireAllTokens(): void {
    for (const t of this.tokens.values()) t.expiresAt = 0;
  }

  /** Creates a service account and returns its JSON key (as Google's console downloads it). */
  addServiceAccount(name = 'backup', options: { delegation?: boolean } = {}): { key: string; email: string } {
    const email = `${name}@emulator-project.iam.gserviceaccount.com`;
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.serviceAccounts.set(email, { email, publicKey, delegation: options.delegation ?? true });
    this.addUser(email);
    const key = {
      type: 'service_account',
      project_id: 'emulator-project',
      private_key_id: randomBytes(20).toString('hex'),
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: email,
      client_id: String(100000000000000000000n + BigInt(this.serviceAccounts.size)),
      auth_uri: this.authUrl,
      token_uri: this.tokenUrl,
    };
    return { key: JSON.stringify(key, null, 2), email };
  }

  /** Sets a user's storage quota in bytes (uploads beyond it answer 403 storageQuotaExceeded). */
  setQuota(user: string, bytes: number): void {
    this.quota.set(user, bytes);
  }

  // ---------------------------------------------------------------- seeding and inspection

  private resolveParent(parent: string | undefined): EmuFile {
    const id = parent === undefined || parent === 'root' ? this.rootId() : parent;
    const p = this.files.get(id);
    if (!p || p.mimeType !== MIME.folder) throw new Error(`no folder ${id}`);
    return p;
  }

  private insert(parent: EmuFile, fields: Partial<EmuFile> & { name: string; mimeType: string }): EmuFile {
    const t = nowIso();
    const f: EmuFile = {
      id: newId(),
      parents: [parent.id],
      trashed: false,
      createdTime: t,
      modifiedTime: t,
      owner: parent.driveId ? '' : parent.owner,
      driveId: parent.driveId,
      sharedWith: new Set(),
      version: 1,
      ...fields,
    };
    this.files.set(f.id, f);
    return f;
  }

  /** Creates a folder; returns its id. */
  createFolder(parent: string | undefined, name: string, opts: { createdTime?: string; modifiedTime?: string } = {}): string {
    return this.insert(this.resolveParent(parent), { name, mimeType: MIME.folder, ...opts }).id;
  }

  /** Creates a regular file from bytes, text, or `{size, seed}` pseudo-random content written straight to disk. */
  async createFile(
    parent: string | undefined,
    name: string,
    content: Buffer | string | { size: number; seed?: number },
    opts: { mimeType?: string; createdTime?: string; modifiedTime?: string; md5Override?: string } = {},
  ): Promise<string> {
    const blob = this.newBlobPath();
    const hash = createHash('md5');
    let size: number;
    if (typeof content === 'string' || Buffer.isBuffer(content)) {
      const buf = Buffer.from(content);
      await writeFile(blob, buf);
      hash.update(buf);
      size = buf.length;
    } else {
      await pipeline(
        pseudoRandomStream(content.size, content.seed),
        async function* (src) {
          for await (const c of src) {
            hash.update(c as Buffer);
            yield c;
          }
        },
        createWriteStream(blob),
      );
      size = content.size;
    }
    const { md5Override, ...rest } = opts;
    const f = this.insert(this.resolveParent(parent), {
      name,
      mimeType: 'application/octet-stream',
      ...rest,
      blob,
      size,
      md5: md5Override ?? hash.digest('hex'),
    });
    return f.id;
  }

  /** Creates a native Google document of `kind` whose body is `body`. */
  createGoogleDoc(
    parent: string | undefined,
    name: string,
    kind: 'document' | 'spreadsheet' | 'presentation' | 'drawing' | 'form',
    body: string | Buffer = '',
    opts: { createdTime?: string; modifiedTime?: string } = {},
  ): string {
    return this.insert(this.resolveParent(parent), { name, mimeType: MIME[kind], native: { body: Buffer.from(body) }, ...opts }).id;
  }

  /** Creates a shortcut to `targetId`. */
  createShortcut(parent: string | undefined, name: string, targetId: string, opts: { createdTime?: string } = {}): string {
    const target = this.files.get(targetId);
    return this.insert(this.resolveParent(parent), {
      name,
      mimeType: MIME.shortcut,
      shortcut: { targetId, targetMimeType: target?.mimeType ?? 'application/octet-stream' },
      ...opts,
    }).id;
  }

  /** Creates a shared drive; returns its id (also the id of its root folder). */
  createSharedDrive(name: string): string {
    const id = `0A${randomBytes(12).toString('base64url')}`.slice(0, 19);
    const t = nowIso();
    this.drives.set(id, { name, createdTime: t });
    this.files.set(id, { id, name, mimeType: MIME.folder, parents: [], trashed: false, createdTime: t, modifiedTime: t, owner: '', driveId: id, sharedWith: new Set(), version: 1 });
    return id;
  }

  /** Shares an item with `user` (it shows in that user's "Shared with me"). */
  shareWith(id: string, user: string): void {
    this.mustGet(id).sharedWith.add(user);
  }

  /** Moves an item to the trash. */
  trash(id: string): void {
    this.mustGet(id).trashed = true;
  }

  /** Overwrites the stored MD5 of a file (to test checksum verification). */
  corruptMd5(id: string, md5 = '0'.repeat(32)): void {
    this.mustGet(id).md5 = md5;
  }

  /** The item, or undefined. */
  file(id: string): EmuFile | undefined {
    return this.files.get(id);
  }

  private mustGet(id: string): EmuFile {
    const f = this.files.get(id);
    if (!f) throw new Error(`no file ${id}`);
    return f;
  }

  /** Children of a folder (untrashed unless asked), oldest first. */
  children(parentId: string, opts: { trashed?: boolean } = {}): EmuFile[] {
    return [...this.files.values()]
      .filter((f) => f.parents.includes(parentId) && (opts.trashed || !f.trashed))
      .sort((a, b) => a.createdTime.localeCompare(b.createdTime) || a.id.localeCompare(b.id));
  }

  /** Every item (inspection). */
  all(): EmuFile[] {
    return [...this.files.values()];
  }

  /** Follows names from a folder (default: alice's My Drive); the oldest match wins at each step. */
  lookup(path: string, from?: string): EmuFile | undefined {
    let cur = this.files.get(from ?? this.rootId());
    for (const seg of path.split('/').filter(Boolean)) {
      if (!cur) return undefined;
      cur = this.children(cur.id).find((c) => c.name === seg);
    }
    return cur;
  }

  /** The stored content of a regular file, or the body of a native document. */
  async content(id: string): Promise<Buffer> {
    const f = this.mustGet(id);
    if (f.native) return f.native.body;
    return f.blob ? readFile(f.blob) : Buffer.alloc(0);
  }

  // ---------------------------------------------------------------- faults and counters

  /** Adds a fault rule. */
  addFault(rule: FaultRule): void {
    this.faults.push({ ...rule, left: rule.times ?? (rule.probability !== undefined ? Infinity : 1) });
  }

  /** The next `times` requests (of `routes`) are throttled: 403 userRateLimitExceeded or 429 rateLimitExceeded. */
  throttle(times: number, opts: { status?: 403 | 429; reason?: string; retryAfter?: string; routes?: Route[] } = {}): void {
    const status = opts.status ?? 403;
    const reason = opts.reason ?? (status === 429 ? 'rateLimitExceeded' : 'userRateLimitExceeded');
    this.addFault({ routes: opts.routes, times, action: { kind: 'error', status, reason, retryAfter: opts.retryAfter } });
  }

  /** The next `times` requests (of `routes`) fail with a 5xx. */
  failNext(times: number, status = 503, routes?: Route[]): void {
    this.addFault({ routes, times, action: { kind: 'error', status, reason: status === 503 ? 'backendError' : 'internalError' } });
  }

  /** The next `times` requests (of `routes`) lose their connection, optionally after `afterBytes` body bytes. */
  dropNext(times: number, routes?: Route[], afterBytes?: number, unaligned = false): void {
    this.addFault({ routes, times, action: { kind: 'drop', afterBytes, unaligned } });
  }

  /** Removes every fault rule. */
  clearFaults(): void {
    this.faults = [];
  }

  /** Forgets every open upload session (the next chunk answers 404, as after Google expires a session). */
  expireUploadSessions(): void {
    for (const s of this.sessions.values()) s.gone = true;
  }

  /** Resets the counters. */
  resetStats(): void {
    Object.assign(this.stats, DriveEmulator.emptyStats());
  }

  private random(): number {
    // mulberry32
    this.rng = (this.rng + 0x6d2b79f5) | 0;
    let t = this.rng;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  private takeFault(route: Route, method: string, url: URL, fileId?: string): FaultAction | undefined {
    for (const rule of this.faults) {
      if (rule.left <= 0) continue;
      if (rule.routes && !rule.routes.includes(route)) continue;
      if (rule.when && !rule.when({ route, method, url, fileId })) continue;
      if (rule.probability !== undefined && this.random() >= rule.probability) continue;
      rule.left--;
      this.stats.faults++;
      return rule.action;
    }
    return undefined;
  }

  // ---------------------------------------------------------------- HTTP plumbing

  private routeOf(method: string, path: string, url: URL): { route: Route; id?: string } {
    if (path === '/token' && method === 'POST') return { route: 'token' };
    if (path === '/o/oauth2/v2/auth') return { route: 'auth' };
    if (path === '/drive/v3/about') return { route: 'about' };
    if (path.startsWith('/drive/v3/drives')) return { route: 'drives', id: path.split('/')[4] };
    if (path.startsWith('/upload/drive/v3/files')) {
      const id = path.split('/')[5];
      if (method === 'PUT' || url.searchParams.has('upload_id')) return { route: 'chunk', id };
      return { route: 'upload', id };
    }
    const m = /^\/drive\/v3\/files(?:\/([^/]+)(\/export)?)?$/.exec(path);
    if (m) {
      const id = m[1] ? decodeURIComponent(m[1]) : undefined;
      if (m[2]) return { route: 'export', id };
      if (!id) return { route: method === 'POST' ? 'create' : 'list' };
      if (method === 'GET') return { route: url.searchParams.get('alt') === 'media' ? 'media' : 'get', id };
      if (method === 'PATCH') return { route: 'update', id };
      if (method === 'DELETE') return { route: 'delete', id };
    }
    return { route: 'unknown' };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const method = req.method ?? 'GET';
    const { route, id } = this.routeOf(method, url.pathname, url);
    this.stats.requests++;
    this.stats.byRoute[route] = (this.stats.byRoute[route] ?? 0) + 1;
    this.inFlight++;
    this.stats.maxInFlight = Math.max(this.stats.maxInFlight, this.inFlight);
    res.on('close', () => this.inFlight--);
    const origEnd = res.end.bind(res);
    res.end = ((...args: Parameters<typeof res.end>) => {
      this.stats.byStatus[res.statusCode] = (this.stats.byStatus[res.statusCode] ?? 0) + 1;
      return origEnd(...args);
    }) as typeof res.end;
    try {
      if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
      const fault = this.takeFault(route, method, url, id);
      if (fault?.kind === 'delay') await new Promise((r) => setTimeout(r, fault.ms));
      if (fault?.kind === 'error') {
        await drain(req);
        throw new HttpError(fault.status, fault.reason, fault.message ?? defaultMessage(fault.reason), {
          domain: fault.status === 403 || fault.status === 429 ? 'usageLimits' : 'global',
          retryAfter: fault.retryAfter,
        });
      }
      if (fault?.kind === 'lose-answer') {
        const socket = req.socket;
        res.writeHead = (() => {
          socket.destroy();
          return res;
        }) as unknown as typeof res.writeHead;
        res.end = (() => {
          socket.destroy();
          return res;
        }) as unknown as typeof res.end;
      }
      const drop = fault?.kind === 'drop' ? fault : undefined;
      if (drop && drop.afterBytes === undefined) {
        const socket = req.socket;
        await drain(req);
        socket.destroy();
        return;
      }
      // Routes without a bearer token: the token endpoint, the consent page, and session URIs (they carry their own credential).
      if (route === 'token') return await this.token(req, res);
      if (route === 'auth') return this.authorize(url, res);
      const corrupt = fault?.kind === 'corrupt';
      if (route === 'chunk') return await this.chunk(req, res, url, drop?.afterBytes, corrupt, drop?.unaligned === true);
      if (route === 'unknown') {
        await drain(req);
        throw new HttpError(404, 'notFound', `Not Found: ${method} ${url.pathname}`);
      }
      const user = this.authenticate(req);
      switch (route) {
        case 'about':
          return this.about(user, url, res);
        case 'drives':
          return this.drivesRoute(id, url, res);
        case 'list':
          return this.list(user, url, res);
        case 'get':
          return this.json(res, 200, this.view(this.visible(user, id ?? '', url), user), url, 'kind,id,name,mimeType');
        case 'media':
          return await this.media(user, id ?? '', url, req, res, drop?.afterBytes, fault?.kind === 'stall' ? fault : undefined, fault?.kind === 'ignore-range');
        case 'export':
          return this.exportRoute(user, id ?? '', url, res);
        case 'create':
          return this.json(res, 200, this.view(this.createMeta(user, await readJson(req), url), user), url, 'kind,id,name,mimeType');
        case 'update':
          return this.json(res, 200, this.view(this.updateMeta(user, id ?? '', await readJson(req), url), user), url, 'kind,id,name,mimeType');
        case 'delete':
          await drain(req);
          await this.remove(this.visible(user, id ?? '', url));
          res.statusCode = 204;
          res.end();
          return;
        case 'upload':
          return await this.upload(user, id, req, res, url, corrupt);
      }
    } catch (err) {
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) return this.error(res, err);
      if (err instanceof QueryError) return this.error(res, new HttpError(400, 'invalid', `Invalid Value`, { location: 'q', locationType: 'parameter' }));
      if (err instanceof FieldsError) return this.error(res, new HttpError(400, 'invalidParameter', `Invalid field selection`, { location: 'fields', locationType: 'parameter' }));
      this.error(res, new HttpError(500, 'internalError', `Internal Error: ${(err as Error).message}`));
    }
  }

  private error(res: ServerResponse, err: HttpError): void {
    const body = {
      error: {
        code: err.status,
        message: err.message,
        errors: [
          {
            message: err.message,
            domain: err.extra.domain ?? 'global',
            reason: err.reason,
            ...(err.extra.location ? { location: err.extra.location, locationType: err.extra.locationType ?? 'parameter' } : {}),
          },
        ],
        ...(err.status === 401 ? { status: 'UNAUTHENTICATED' } : err.status === 429 ? { status: 'RESOURCE_EXHAUSTED' } : {}),
      },
    };
    res.statusCode = err.status;
    res.setHeader('Content-Type', 'application/json; charset=UTF-8');
    if (err.extra.retryAfter !== undefined) res.setHeader('Retry-After', err.extra.retryAfter);
    res.end(JSON.stringify(body));
  }

  private json(res: ServerResponse, status: number, value: unknown, url: URL | URLSearchParams, defaultFields: string): void {
    const params = url instanceof URL ? url.searchParams : url;
    const fields = params.get('fields') ?? defaultFields;
    const out = project(value, parseFields(fields));
    res.statusCode = status;
    res.setHeader('Content-Type', 'application/json; charset=UTF-8');
    res.end(JSON.stringify(out));
  }

  private authenticate(req: IncomingMessage): string {
    const h = req.headers.authorization ?? '';
    const m = /^Bearer (\S+)$/.exec(h);
    const t = m ? this.tokens.get(m[1] as string) : undefined;
    if (!t || t.expiresAt <= Date.now()) {
      this.stats.unauthorized++;
      throw new HttpError(
        401,
        'authError',
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
        { location: 'Authorization', locationType: 'header' },
      );
    }
    return t.user;
  }

  // ---------------------------------------------------------------- OAuth

  private async token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = new URLSearchParams((await readBody(req, 1 << 20)).toString('utf8'));
    const fail = (status: number, error: string, description: string): void => {
      res.statusCode = status;
      res.setHeader('Content-Type', 'application/json; charset=utf-8');
      res.end(JSON.stringify({ error, error_description: description }));
    };
    const issue = (user: string, extra: Record<string, unknown> = {}): void => {
      const access = this.issueAccessToken(user);
      res.statusCode = 200;
      res.setHeader('Content-Type', 'application/json; charset=utf-8');
      res.end(
        JSON.stringify({ access_token: access, expires_in: this.tokenLifetimeSec, scope: 'https://www.googleapis.com/auth/drive', token_type: 'Bearer', ...extra }),
      );
    };
    const grant = body.get('grant_type');
    if (grant === 'refresh_token' || grant === 'authorization_code') {
      const clientId = body.get('client_id') ?? '';
      const secret = this.clients.get(clientId);
      if (secret === undefined || secret !== body.get('client_secret')) return fail(401, 'invalid_client', 'The OAuth client was not found.');
      if (grant === 'refresh_token') {
        const rt = this.refreshTokens.get(body.get('refresh_token') ?? '');
        if (!rt || rt.clientId !== clientId) return fail(400, 'invalid_grant', 'Token has been expired or revoked.');
        return issue(rt.user);
      }
      const code = this.codes.get(body.get('code') ?? '');
      if (!code || code.clientId !== clientId || code.redirectUri !== body.get('redirect_uri')) return fail(400, 'invalid_grant', 'Malformed auth code.');
      if (code.challenge) {
        const verifier = body.get('code_verifier') ?? '';
        if (createHash('sha256').update(verifier).digest('base64url') !== code.challenge) return fail(400, 'invalid_grant', 'Invalid code verifier.');
      }
      this.codes.delete(body.get('code') ?? '');
      return issue(code.user, { refresh_token: this.issueRefreshToken(clientId, code.user) });
    }
    if (grant === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      const parts = (body.get('assertion') ?? '').split('.');
      if (parts.length !== 3) return fail(400, 'invalid_grant', 'Invalid JWT: Token must be a short-lived token and in a reasonable timeframe');
      let claims: { iss?: string; sub?: string; aud?: string; exp?: number; iat?: number; scope?: string };
      try {
        claims = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8'));
      } catch {
        return fail(400, 'invalid_grant', 'Invalid JWT payload');
      }
      const sa = this.serviceAccounts.get(claims.iss ?? '');
      if (!sa) return fail(401, 'invalid_client', 'The OAuth client was not found.');
      const ok = verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), sa.publicKey, Buffer.from(parts[2] as string, 'base64url'));
      if (!ok) return fail(400, 'invalid_grant', 'Invalid JWT Signature.');
      const now = Date.now() / 1000;
      if (!claims.exp || !claims.iat || claims.exp < now || claims.iat > now + 300 || claims.exp - claims.iat > 3600) {
        return fail(400, 'invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.');
      }
      if (claims.aud !== this.tokenUrl && claims.aud !== 'https://oauth2.googleapis.com/token') return fail(400, 'invalid_grant', 'Invalid JWT: aud');
      if (!claims.scope) return fail(400, 'invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
      let user = sa.email;
      if (claims.sub) {
        if (!sa.delegation) {
          return fail(401, 'unauthorized_client', 'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.');
        }
        user = claims.sub;
        this.addUser(user);
      }
      return issue(user);
    }
    return fail(400, 'unsupported_grant_type', `Invalid grant_type: ${grant ?? ''}`);
  }

  private authorize(url: URL, res: ServerResponse): void {
    const p = url.searchParams;
    const clientId = p.get('client_id') ?? '';
    const redirect = p.get('redirect_uri') ?? '';
    if (!this.clients.has(clientId)) {
      res.statusCode = 401;
      res.end('Error 401: invalid_client');
      return;
    }
    if (!/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?(\/.*)?$/.test(redirect) || p.get('response_type') !== 'code') {
      res.statusCode = 400;
      res.end('Error 400: invalid_request');
      return;
    }
    const code = `4/${randomBytes(16).toString('base64url')}`;
    this.codes.set(code, { clientId, redirectUri: redirect, challenge: p.get('code_challenge') ?? undefined, user: this.loginUser });
    const target = new URL(redirect);
    target.searchParams.set('code', code);
    const state = p.get('state');
    if (state !== null) target.searchParams.set('state', state);
    target.searchParams.set('scope', p.get('scope') ?? '');
    res.statusCode = 302;
    res.setHeader('Location', target.href);
    res.end();
  }

  // ---------------------------------------------------------------- visibility and views

  private isVisible(user: string, f: EmuFile, allDrives: boolean): boolean {
    if (f.driveId) return allDrives;
    for (let cur: EmuFile | undefined = f, depth = 0; cur && depth < 100; depth++) {
      if (cur.owner === user || cur.sharedWith.has(user)) return true;
      cur = cur.parents[0] ? this.files.get(cur.parents[0]) : undefined;
    }
    return false;
  }

  private visible(user: string, id: string, url: URL): EmuFile {
    const realId = id === 'root' ? this.rootId(user) : id;
    const f = this.files.get(realId);
    const all = url.searchParams.get('supportsAllDrives') === 'true';
    if (!f || !this.isVisible(user, f, all)) {
      throw new HttpError(404, 'notFound', `File not found: ${id}.`, { location: 'fileId', locationType: 'parameter' });
    }
    return f;
  }

  private view(f: EmuFile, user: string): Record<string, unknown> {
    const parents = f.parents.filter((p) => {
      const pf = this.files.get(p);
      return pf && this.isVisible(user, pf, true);
    });
    const sharedWithMe = f.sharedWith.has(user) && f.owner !== user;
    const out: Record<string, unknown> = {
      kind: 'drive#file',
      id: f.id,
      name: f.name,
      mimeType: f.mimeType,
      trashed: f.trashed,
      explicitlyTrashed: f.trashed,
      createdTime: f.createdTime,
      modifiedTime: f.modifiedTime,
      version: String(f.version),
      ownedByMe: f.owner === user,
      shared: f.sharedWith.size > 0,
      owners: f.owner ? [{ kind: 'drive#user', emailAddress: f.owner, displayName: f.owner.split('@')[0], me: f.owner === user }] : undefined,
      spaces: ['drive'],
    };
    if (parents.length > 0) out.parents = parents;
    if (f.driveId) {
      out.driveId = f.driveId;
      out.teamDriveId = f.driveId;
    }
    if (sharedWithMe) out.sharedWithMeTime = f.createdTime;
    if (f.blob !== undefined) {
      out.size = String(f.size ?? 0);
      out.md5Checksum = f.md5;
      out.quotaBytesUsed = String(f.size ?? 0);
      const ext = /\.([^.]+)$/.exec(f.name)?.[1];
      if (ext) {
        out.fileExtension = ext;
        out.fullFileExtension = ext;
      }
      out.headRevisionId = `rev${f.version}`;
    } else {
      out.quotaBytesUsed = '0';
    }
    if (f.native) {
      const formats = EXPORT_FORMATS[f.mimeType] ?? [];
      out.exportLinks = Object.fromEntries(formats.map((m) => [m, `${this.base()}export-links/${f.id}?mimeType=${encodeURIComponent(m)}`]));
    }
    if (f.shortcut) out.shortcutDetails = { ...f.shortcut };
    if (f.appProperties) out.appProperties = { ...f.appProperties };
    if (f.description !== undefined) out.description = f.description;
    return out;
  }

  private queryView(user: string, f: EmuFile): QueryFile {
    return {
      name: f.name,
      mimeType: f.mimeType,
      parents: f.parents,
      trashed: f.trashed,
      sharedWithMe: f.sharedWith.has(user) && f.owner !== user,
      modifiedTime: f.modifiedTime,
      createdTime: f.createdTime,
    };
  }

  // ---------------------------------------------------------------- about, drives, list

  private about(user: string, url: URL, res: ServerResponse): void {
    if (!url.searchParams.get('fields')) {
      throw new HttpError(400, 'required', "The 'fields' parameter is required for this method.", { location: 'fields' });
    }
    let usage = 0;
    for (const f of this.files.values()) if (f.owner === user && f.size) usage += f.size;
    const limit = this.quota.get(user);
    this.json(
      res,
      200,
      {
        kind: 'drive#about',
        user: { kind: 'drive#user', displayName: user.split('@')[0], emailAddress: user, permissionId: createHash('md5').update(user).digest('hex').slice(0, 20), me: true },
        storageQuota: { ...(limit !== undefined ? { limit: String(limit) } : {}), usage: String(usage), usageInDrive: String(usage), usageInDriveTrash: '0' },
        importFormats: IMPORT_FORMATS,
        exportFormats: EXPORT_FORMATS,
        maxUploadSize: '5242880000000',
        canCreateDrives: true,
      },
      url,
      '',
    );
  }

  private drivesRoute(id: string | undefined, url: URL, res: ServerResponse): void {
    if (id) {
      const d = this.drives.get(id);
      if (!d) throw new HttpError(404, 'notFound', `Shared drive not found: ${id}`, { location: 'driveId' });
      return this.json(res, 200, { kind: 'drive#drive', id, name: d.name, createdTime: d.createdTime }, url, 'kind,id,name');
    }
    const pageSize = Number(url.searchParams.get('pageSize') ?? 10);
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100) throw new HttpError(400, 'invalid', 'Invalid pageSize', { location: 'pageSize' });
    const all = [...this.drives.entries()].sort((a, b) => a[0].localeCompare(b[0]));
    const offset = Number(url.searchParams.get('pageToken') ?? 0) || 0;
    const page = all.slice(offset, offset + pageSize).map(([did, d]) => ({ kind: 'drive#drive', id: did, name: d.name, createdTime: d.createdTime }));
    const next = offset + pageSize < all.length ? String(offset + pageSize) : undefined;
    this.json(res, 200, { kind: 'drive#driveList', drives: page, ...(next ? { nextPageToken: next } : {}) }, url, 'kind,nextPageToken,drives(kind,id,name)');
  }

  private list(user: string, url: URL, res: ServerResponse): void {
    const p = url.searchParams;
    const pageSize = p.has('pageSize') ? Number(p.get('pageSize')) : 100;
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
      throw new HttpError(400, 'invalid', 'Invalid value for pageSize: must be between 1 and 1000', { location: 'pageSize' });
    }
    const spaces = p.get('spaces') ?? 'drive';
    if (spaces !== 'drive') throw new HttpError(400, 'invalid', `Invalid Value`, { location: 'spaces' });
    const corpora = p.get('corpora') ?? 'user';
    const supportsAll = p.get('supportsAllDrives') === 'true';
    const includeAll = p.get('includeItemsFromAllDrives') === 'true';
    const driveId = p.get('driveId') ?? undefined;
    if (corpora === 'drive') {
      if (!driveId) throw new HttpError(400, 'invalid', 'The driveId parameter must be specified if and only if corpora is set to drive.', { location: 'driveId' });
      if (!includeAll || !supportsAll) {
        throw new HttpError(403, 'teamDrivesParameterRequired', 'The includeItemsFromAllDrives parameter must be set to true when driveId is specified.', { location: 'includeItemsFromAllDrives' });
      }
      if (!this.drives.has(driveId)) throw new HttpError(404, 'notFound', `Shared drive not found: ${driveId}`, { location: 'driveId' });
    } else if (corpora !== 'user' && corpora !== 'allDrives') {
      throw new HttpError(400, 'invalid', `Invalid Value`, { location: 'corpora' });
    }
    const pred = compileQuery(p.get('q') ?? undefined);
    let items = [...this.files.values()].filter((f) => {
      if (f.parents.length === 0) return false; // roots are not listed
      if (corpora === 'drive') return f.driveId === driveId;
      if (f.driveId) return corpora === 'allDrives' && includeAll && supportsAll;
      return this.isVisible(user, f, false);
    });
    items = items.filter((f) => pred(this.queryView(user, f)));
    items.sort(comparator(p.get('orderBy') ?? undefined));
    const key = createHash('sha1').update([p.get('q'), p.get('orderBy'), corpora, driveId].join('\0')).digest('hex').slice(0, 12);
    let offset = 0;
    const token = p.get('pageToken');
    if (token) {
      const [k, o] = Buffer.from(token, 'base64url').toString('utf8').split(':');
      if (k !== key || !/^\d+$/.test(o ?? '')) throw new HttpError(400, 'invalid', 'Invalid Value', { location: 'pageToken' });
      offset = Number(o);
    }
    const page = items.slice(offset, offset + pageSize);
    const next = offset + pageSize < items.length ? Buffer.from(`${key}:${offset + pageSize}`).toString('base64url') : undefined;
    this.json(
      res,
      200,
      { kind: 'drive#fileList', incompleteSearch: false, files: page.map((f) => this.view(f, user)), ...(next ? { nextPageToken: next } : {}) },
      url,
      'kind,incompleteSearch,nextPageToken,files(kind,id,name,mimeType)',
    );
  }

  // ---------------------------------------------------------------- downloads and exports

  private async media(
    user: string,
    id: string,
    url: URL,
    req: IncomingMessage,
    res: ServerResponse,
    dropAfter?: number,
    stall?: { afterBytes: number; ms: number },
    ignoreRange = false,
  ): Promise<void> {
    const f = this.visible(user, id, url);
    if (f.mimeType === MIME.folder || f.native || f.shortcut) {
      throw new HttpError(
        403,
        'fileNotDownloadable',
        'Only files with binary content can be downloaded. Use Export with Docs Editors files.',
        { location: 'alt', locationType: 'parameter' },
      );
    }
    const size = f.size ?? 0;
    let start = 0;
    let end = size - 1;
    const range = ignoreRange ? undefined : req.headers.range;
    let partial = false;
    if (range) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) throw new HttpError(400, 'badRequest', 'Invalid Range header');
      if (m[1] === '') {
        start = Math.max(0, size - Number(m[2]));
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(Number(m[2]), size - 1);
      }
      if (start >= size || start > end) {
        res.statusCode = 416;
        res.setHeader('Content-Range', `bytes */${size}`);
        res.setHeader('Content-Type', 'application/json; charset=UTF-8');
        res.end(JSON.stringify({ error: { code: 416, message: 'Request range not satisfiable', errors: [{ domain: 'global', reason: 'requestedRangeNotSatisfiable', message: 'Request range not satisfiable' }] } }));
        return;
      }
      partial = true;
    }
    const length = size === 0 ? 0 : end - start + 1;
    res.statusCode = partial ? 206 : 200;
    res.setHeader('Content-Type', f.mimeType);
    res.setHeader('Content-Length', String(length));
    if (partial) res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
    if (length === 0 || !f.blob) {
      res.end();
      return;
    }
    let sent = 0;
    const limit = dropAfter ?? Infinity;
    const stream = createReadStream(f.blob, { start, end });
    try {
      for await (const chunk of stream) {
        let buf = chunk as Buffer;
        if (sent + buf.length > limit) buf = buf.subarray(0, Math.max(0, limit - sent));
        if (stall && sent < stall.afterBytes && sent + buf.length >= stall.afterBytes) {
          const head = buf.subarray(0, stall.afterBytes - sent);
          res.write(head);
          sent += head.length;
          buf = buf.subarray(head.length);
          await new Promise((r) => setTimeout(r, stall.ms));
          if (res.destroyed) {
            stream.destroy();
            return;
          }
        }
        if (buf.length > 0) {
          sent += buf.length;
          this.stats.downloadBytes += buf.length;
          if (!res.write(buf)) await new Promise<void>((r) => res.once('drain', () => r()));
        }
        if (sent >= limit) {
          stream.destroy();
          await new Promise((r) => setTimeout(r, 5));
          res.socket?.destroy();
          return;
        }
        if (res.destroyed) {
          stream.destroy();
          return;
        }
      }
      res.end();
    } catch {
      res.destroy();
    }
  }

  private render(f: EmuFile, mime: string): Buffer {
    const native = f.native as { body: Buffer; originFormat?: string };
    if (native.originFormat === mime) return native.body;
    return Buffer.concat([Buffer.from(`KLOSET-EMU-EXPORT ${mime}\n`), native.body]);
  }

  private exportRoute(user: string, id: string, url: URL, res: ServerResponse): void {
    const f = this.visible(user, id, url);
    const mime = url.searchParams.get('mimeType');
    if (!mime) throw new HttpError(400, 'required', 'Required parameter: mimeType', { location: 'mimeType' });
    if (!f.native) throw new HttpError(403, 'fileNotExportable', 'Export only supports Docs Editors files.', { location: 'fileId' });
    if (!(EXPORT_FORMATS[f.mimeType] ?? []).includes(mime)) throw new HttpError(400, 'badRequest', 'The requested conversion is not supported.', { location: 'mimeType' });
    const body = this.render(f, mime);
    if (body.length > this.exportSizeLimit) throw new HttpError(403, 'exportSizeLimitExceeded', 'This file is too large to be exported.');
    res.statusCode = 200;
    res.setHeader('Content-Type', mime);
    res.setHeader('Content-Length', String(body.length));
    res.end(body);
  }

  // ---------------------------------------------------------------- metadata writes

  private parentFor(user: string, meta: Record<string, unknown>, url: URL): EmuFile {
    const parents = meta.parents;
    if (parents !== undefined && (!Array.isArray(parents) || parents.length > 1)) {
      throw new HttpError(403, 'cannotAddParent', 'Increasing the number of parents is not allowed.');
    }
    const pid = (parents as string[] | undefined)?.[0] ?? 'root';
    const p = this.visible(user, pid, url);
    if (p.mimeType !== MIME.folder) throw new HttpError(400, 'invalidParent', 'The parent is not a folder.');
    if (p.trashed) throw new HttpError(400, 'invalidParent', 'The parent is trashed.');
    return p;
  }

  private createMeta(user: string, meta: Record<string, unknown>, url: URL): EmuFile {
    const parent = this.parentFor(user, meta, url);
    const mimeType = typeof meta.mimeType === 'string' ? meta.mimeType : 'application/octet-stream';
    const t = nowIso();
    const fields: Partial<EmuFile> & { name: string; mimeType: string } = {
      name: typeof meta.name === 'string' ? meta.name : 'Untitled',
      mimeType,
      createdTime: t,
      modifiedTime: typeof meta.modifiedTime === 'string' ? normalizeTime(meta.modifiedTime) : t,
      appProperties: meta.appProperties as Record<string, string> | undefined,
      description: meta.description as string | undefined,
    };
    if (mimeType === MIME.shortcut) {
      const sd = meta.shortcutDetails as { targetId?: string } | undefined;
      if (!sd?.targetId) throw new HttpError(400, 'shortcutTargetInvalid', 'A shortcut needs shortcutDetails.targetId.');
      const target = this.files.get(sd.targetId);
      if (!target) throw new HttpError(404, 'notFound', `File not found: ${sd.targetId}.`, { location: 'shortcutDetails.targetId' });
      fields.shortcut = { targetId: target.id, targetMimeType: target.mimeType };
    } else if (mimeType.startsWith('application/vnd.google-apps.') && mimeType !== MIME.folder) {
      fields.native = { body: Buffer.alloc(0) };
    } else if (mimeType !== MIME.folder) {
      fields.blob = this.newBlobPath();
      fields.size = 0;
      fields.md5 = createHash('md5').digest('hex');
      void writeFile(fields.blob, '');
    }
    return this.insert(parent, fields);
  }

  private updateMeta(user: string, id: string, meta: Record<string, unknown>, url: URL): EmuFile {
    const f = this.visible(user, id, url);
    if (typeof meta.name === 'string') f.name = meta.name;
    if (typeof meta.trashed === 'boolean') f.trashed = meta.trashed;
    if (typeof meta.description === 'string') f.description = meta.description;
    if (meta.appProperties && typeof meta.appProperties === 'object') f.appProperties = { ...f.appProperties, ...(meta.appProperties as Record<string, string>) };
    const add = url.searchParams.get('addParents');
    const remove = url.searchParams.get('removeParents');
    if (add || remove) {
      const next = f.parents.filter((p) => !(remove ?? '').split(',').includes(p));
      for (const a of (add ?? '').split(',').filter(Boolean)) {
        const pf = this.visible(user, a, url);
        if (pf.mimeType !== MIME.folder) throw new HttpError(400, 'invalidParent', 'The parent is not a folder.');
        next.push(pf.id);
      }
      if (next.length > 1) throw new HttpError(403, 'cannotAddParent', 'A shared drive item must have exactly one parent.');
      f.parents = next;
    }
    f.modifiedTime = typeof meta.modifiedTime === 'string' ? normalizeTime(meta.modifiedTime) : nowIso();
    f.version++;
    return f;
  }

  private async remove(f: EmuFile): Promise<void> {
    if (f.parents.length === 0) throw new HttpError(403, 'insufficientFilePermissions', 'The user does not have sufficient permissions for this file.');
    const doomed: EmuFile[] = [f];
    for (let i = 0; i < doomed.length; i++) {
      for (const c of this.files.values()) if (c.parents.includes((doomed[i] as EmuFile).id)) doomed.push(c);
    }
    for (const d of doomed) {
      this.files.delete(d.id);
      if (d.blob) await rm(d.blob, { force: true });
    }
  }

  // ---------------------------------------------------------------- uploads

  private newBlobPath(): string {
    return join(this.dataDir, `blob-${++this.blobCounter}`);
  }

  private async upload(user: string, id: string | undefined, req: IncomingMessage, res: ServerResponse, url: URL, corrupt = false): Promise<void> {
    const type = url.searchParams.get('uploadType');
    if (id !== undefined && req.method !== 'PATCH') throw new HttpError(404, 'notFound', 'Not Found');
    if (id === undefined && req.method !== 'POST') throw new HttpError(404, 'notFound', 'Not Found');
    const target = id !== undefined ? this.visible(user, id, url) : undefined;
    if (type === 'resumable') {
      const meta = await readJson(req);
      if (!target) this.parentFor(user, meta, url);
      const sid = randomBytes(18).toString('base64url');
      const declared = req.headers['x-upload-content-length'];
      const session: Session = {
        id: sid,
        user,
        fileId: target?.id,
        meta,
        params: new URLSearchParams(url.searchParams),
        mediaType: String(req.headers['x-upload-content-type'] ?? meta.mimeType ?? 'application/octet-stream'),
        declaredTotal: declared !== undefined ? Number(declared) : undefined,
        persisted: 0,
        path: join(this.dataDir, `session-${sid}`),
        hash: createHash('md5'),
        gone: false,
      };
      await writeFile(session.path, '');
      this.sessions.set(sid, session);
      const loc = new URL(`upload/drive/v3/files${target ? `/${target.id}` : ''}`, this.base());
      loc.searchParams.set('uploadType', 'resumable');
      loc.searchParams.set('upload_id', sid);
      res.statusCode = 200;
      res.setHeader('Location', loc.href);
      res.setHeader('X-GUploader-UploadID', sid);
      res.setHeader('Content-Length', '0');
      res.end();
      return;
    }
    if (type !== 'multipart' && type !== 'media') throw new HttpError(400, 'invalid', `Invalid upload type: ${type ?? ''}`, { location: 'uploadType' });
    const body = await readBody(req, 512 * 1024 * 1024);
    this.stats.uploadBytes += body.length;
    let meta: Record<string, unknown> = {};
    let media: Buffer;
    let mediaType: string;
    if (type === 'multipart') {
      const parts = parseMultipart(body, String(req.headers['content-type'] ?? ''));
      if (parts.length !== 2) throw new HttpError(400, 'badContent', 'Multipart upload needs exactly a metadata part and a media part.');
      const [m, d] = parts as [MultipartPart, MultipartPart];
      if (!/^application\/json/i.test(m.type)) throw new HttpError(400, 'badContent', 'The first part of a multipart upload must be application/json.');
      meta = JSON.parse(m.body.toString('utf8') || '{}') as Record<string, unknown>;
      media = d.body;
      mediaType = d.type || 'application/octet-stream';
    } else {
      media = body;
      mediaType = String(req.headers['content-type'] ?? 'application/octet-stream');
    }
    if (corrupt && media.length > 0) media[0] = (media[0] as number) ^ 0xff;
    const blob = this.newBlobPath();
    await writeFile(blob, media);
    const file = await this.finish(user, target, meta, url, blob, media.length, createHash('md5').update(media).digest('hex'), mediaType);
    this.json(res, 200, this.view(file, user), url, 'kind,id,name,mimeType');
  }

  /** Creates or replaces a file from uploaded content (converting to a native document when asked). */
  private async finish(
    user: string,
    target: EmuFile | undefined,
    meta: Record<string, unknown>,
    url: URL | URLSearchParams,
    blob: string,
    size: number,
    md5: string,
    mediaType: string,
  ): Promise<EmuFile> {
    const params = url instanceof URL ? url.searchParams : url;
    const asUrl = new URL(`x:/?${params.toString()}`);
    const limit = this.quota.get(user);
    if (limit !== undefined) {
      let usage = 0;
      for (const f of this.files.values()) if (f.owner === user && f.size && f !== target) usage += f.size;
      if (usage + size > limit) {
        await rm(blob, { force: true });
        throw new HttpError(403, 'storageQuotaExceeded', "The user's Drive storage quota has been exceeded.");
      }
    }
    const wanted = typeof meta.mimeType === 'string' ? meta.mimeType : target?.mimeType;
    const convertTo = wanted && wanted.startsWith('application/vnd.google-apps.') && wanted !== MIME.folder ? wanted : undefined;
    let native: EmuFile['native'];
    if (convertTo) {
      if (!(IMPORT_FORMATS[mediaType] ?? []).includes(convertTo)) {
        await rm(blob, { force: true });
        throw new HttpError(400, 'badRequest', `Conversion of the uploaded content (${mediaType}) to ${convertTo} is not supported.`);
      }
      native = { body: await readFile(blob), originFormat: mediaType };
      await rm(blob, { force: true });
    }
    const modifiedTime = typeof meta.modifiedTime === 'string' ? normalizeTime(meta.modifiedTime) : nowIso();
    if (target) {
      if (target.mimeType === MIME.folder) throw new HttpError(400, 'badRequest', 'A folder cannot have content.');
      if (target.blob) await rm(target.blob, { force: true });
      if (typeof meta.name === 'string') target.name = meta.name;
      if (native) {
        target.native = native;
        target.blob = undefined;
        target.size = undefined;
        target.md5 = undefined;
        target.mimeType = convertTo as string;
      } else {
        target.blob = blob;
        target.size = size;
        target.md5 = md5;
        target.native = undefined;
        if (typeof meta.mimeType === 'string') target.mimeType = meta.mimeType;
      }
      target.modifiedTime = modifiedTime;
      target.version++;
      return target;
    }
    const parent = this.parentFor(user, meta, asUrl);
    const t = nowIso();
    return this.insert(parent, {
      name: typeof meta.name === 'string' ? meta.name : 'Untitled',
      mimeType: convertTo ?? (typeof meta.mimeType === 'string' ? meta.mimeType : mediaType),
      createdTime: t,
      modifiedTime,
      appProperties: meta.appProperties as Record<string, string> | undefined,
      description: meta.description as string | undefined,
      ...(native ? { native } : { blob, size, md5 }),
    });
  }

  private async chunk(req: IncomingMessage, res: ServerResponse, url: URL, dropAfter?: number, corrupt = false, unaligned = false): Promise<void> {
    const sid = url.searchParams.get('upload_id') ?? '';
    const s = this.sessions.get(sid);
    if (!s || s.gone) {
      await drain(req);
      throw new HttpError(404, 'notFound', 'The upload session was not found or has expired.');
    }
    const cr = String(req.headers['content-range'] ?? '');
    const status = /^bytes \*\/(\d+|\*)$/.exec(cr);
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(cr);
    const replyIncomplete = (): void => {
      res.statusCode = 308;
      if (s.persisted > 0) res.setHeader('Range', `bytes=0-${s.persisted - 1}`);
      res.setHeader('Content-Length', '0');
      res.end();
    };
    const complete = async (total: number): Promise<void> => {
      if (!s.done) {
        const blob = this.newBlobPath();
        await rm(blob, { force: true });
        const { rename } = await import('node:fs/promises');
        await rename(s.path, blob);
        s.done = await this.finish(s.user, s.fileId ? this.files.get(s.fileId) : undefined, s.meta, s.params, blob, total, s.hash.digest('hex'), s.mediaType);
      }
      this.json(res, 200, this.view(s.done, s.user), s.params, 'kind,id,name,mimeType');
    };
    if (status) {
      await drain(req);
      if (s.done) return complete(s.persisted);
      const total = status[1] === '*' ? undefined : Number(status[1]);
      if (total !== undefined && total === s.persisted) return complete(total);
      return replyIncomplete();
    }
    if (!range) {
      await drain(req);
      throw new HttpError(400, 'badRequest', `Invalid Content-Range header: ${cr}`);
    }
    if (s.done) {
      await drain(req);
      return complete(s.persisted);
    }
    const first = Number(range[1]);
    const last = Number(range[2]);
    const total = range[3] === '*' ? undefined : Number(range[3]);
    const length = last - first + 1;
    const declaredLength = Number(req.headers['content-length'] ?? -1);
    if (last < first || declaredLength !== length) {
      await drain(req);
      throw new HttpError(400, 'badRequest', `Content-Range ${cr} does not match Content-Length ${declaredLength}`);
    }
    if (total !== undefined && (last + 1 > total || (s.declaredTotal !== undefined && total !== s.declaredTotal))) {
      await drain(req);
      throw new HttpError(400, 'badRequest', `Content-Range ${cr} does not match the upload's total size`);
    }
    if (first > s.persisted) {
      await drain(req);
      throw new HttpError(400, 'badRequest', `Invalid request. According to the Content-Range header, the upload offset is ${first} byte(s), which exceeds already uploaded size of ${s.persisted} byte(s).`);
    }
    const isFinal = total !== undefined && last + 1 === total;
    if (!isFinal && length % CHUNK_GRANULARITY !== 0) {
      await drain(req);
      throw new HttpError(400, 'badRequest', `Invalid request. The number of bytes uploaded is required to be a multiple of ${CHUNK_GRANULARITY}, except for the final request.`);
    }
    // Append the new bytes (skipping any already persisted), stopping early when a drop fault applies.
    const socket = req.socket;
    const out = createWriteStream(s.path, { flags: 'a' });
    let offset = first;
    let read = 0;
    let keep = Infinity;
    if (dropAfter !== undefined) keep = unaligned ? Math.min(dropAfter, length) : Math.floor(Math.min(dropAfter, length) / CHUNK_GRANULARITY) * CHUNK_GRANULARITY;
    try {
      for await (const c of req) {
        let buf = c as Buffer;
        read += buf.length;
        this.stats.uploadBytes += buf.length;
        if (offset < s.persisted) {
          const skip = Math.min(buf.length, s.persisted - offset);
          offset += skip;
          buf = buf.subarray(skip);
        }
        const room = first + keep - offset;
        if (buf.length > room) buf = buf.subarray(0, Math.max(0, room));
        if (buf.length > 0) {
          if (corrupt) {
            buf = Buffer.from(buf);
            buf[0] = (buf[0] as number) ^ 0xff;
            corrupt = false;
          }
          s.hash.update(buf);
          offset += buf.length;
          s.persisted = offset;
          if (!out.write(buf)) await new Promise<void>((r) => out.once('drain', () => r()));
        }
        if (dropAfter !== undefined && read >= Math.min(dropAfter, length)) break;
      }
    } finally {
      await new Promise<void>((r) => out.end(() => r()));
    }
    if (dropAfter !== undefined) {
      socket.destroy();
      return;
    }
    if (read !== length) throw new HttpError(400, 'badRequest', 'The request body ended before Content-Length bytes');
    if (total !== undefined && s.persisted === total) return complete(total);
    replyIncomplete();
  }
}

// ---------------------------------------------------------------- helpers

function defaultMessage(reason: string): string {
  switch (reason) {
    case 'userRateLimitExceeded':
      return 'User Rate Limit Exceeded. Rate of requests for user exceed configured project quota.';
    case 'rateLimitExceeded':
      return 'Rate Limit Exceeded';
    case 'backendError':
      return 'Backend Error';
    case 'internalError':
      return 'Internal Error';
    case 'storageQuotaExceeded':
      return "The user's Drive storage quota has been exceeded.";
    case 'uploadLimitExceeded':
      return 'The daily upload limit has been exceeded.';
    default:
      return reason;
  }
}

function normalizeTime(t: string): string {
  const ms = Date.parse(t);
  if (Number.isNaN(ms)) throw new HttpError(400, 'invalid', `Invalid value for modifiedTime: ${t}`, { location: 'modifiedTime' });
  return new Date(ms).toISOString();
}

function comparator(orderBy: string | undefined): (a: EmuFile, b: EmuFile) => number {
  const keys = (orderBy ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean)
    .map((k) => {
      const [field, dir] = k.split(/\s+/);
      if (!['createdTime', 'modifiedTime', 'name', 'folder'].includes(field ?? '')) {
        throw new HttpError(400, 'invalid', `Invalid orderBy field: ${field ?? ''}`, { location: 'orderBy' });
      }
      return { field: field as string, desc: dir === 'desc' };
    });
  return (a, b) => {
    for (const k of keys) {
      let c = 0;
      if (k.field === 'folder') c = Number(b.mimeType === MIME.folder) - Number(a.mimeType === MIME.folder);
      else if (k.field === 'name') c = a.name.localeCompare(b.name);
      else c = (a as unknown as Record<string, string>)[k.field]!.localeCompare((b as unknown as Record<string, string>)[k.field]!);
      if (c !== 0) return k.desc ? -c : c;
    }
    // No stable order is promised by Drive; the emulator uses the random ids, so parents and children come in any order.
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  };
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > limit) throw new HttpError(413, 'uploadTooLarge', 'Request body too large');
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const body = await readBody(req, 10 * 1024 * 1024);
  if (body.length === 0) return {};
  try {
    const v = JSON.parse(body.toString('utf8')) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  } catch {
    throw new HttpError(400, 'parseError', 'Parse Error');
  }
}

async function drain(req: IncomingMessage): Promise<void> {
  if (req.readableEnded) return;
  for await (const _ of req) {
    // discard
  }
}

interface MultipartPart {
  type: string;
  body: Buffer;
}

function parseMultipart(body: Buffer, contentType: string): MultipartPart[] {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  if (!/^multipart\/related/i.test(contentType) || !m) throw new HttpError(400, 'badContent', 'Multipart uploads need Content-Type multipart/related with a boundary.');
  const boundary = Buffer.from(`--${m[1] ?? m[2]}`);
  const parts: MultipartPart[] = [];
  let pos = body.indexOf(boundary);
  while (pos >= 0) {
    pos += boundary.length;
    if (body.subarray(pos, pos + 2).toString() === '--') break;
    const next = body.indexOf(boundary, pos);
    if (next < 0) break;
    let part = body.subarray(pos, next);
    if (part.subarray(0, 2).toString() === '\r\n') part = part.subarray(2);
    if (part.subarray(part.length - 2).toString() === '\r\n') part = part.subarray(0, part.length - 2);
    const sep = part.indexOf('\r\n\r\n');
    const head = sep >= 0 ? part.subarray(0, sep).toString('utf8') : '';
    const type = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1]?.trim() ?? '';
    parts.push({ type, body: sep >= 0 ? part.subarray(sep + 4) : Buffer.alloc(0) });
    pos = next;
  }
  return parts;
}

/** Size and MD5 of a file on disk (tests). */
export async function fileMd5(path: string): Promise<{ size: number; md5: string }> {
  const h = createHash('md5');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return { size: (await stat(path)).size, md5: h.digest('hex') };
}

/** The public key of a PEM private key (tests that sign their own JWTs). */
export function publicKeyOf(pem: string): KeyObject {
  return createPublicKey(pem);
}
