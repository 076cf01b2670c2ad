// A Microsoft Graph drive emulator for tests: the endpoints the onedrive integration calls, after Microsoft's reference.
//
// Metadata lives in memory, file contents in a private temp folder. It listens on 127.0.0.1 at a random port and
// serves: `/me/drive`, `/drives/{id}`, `/sites/{id}/drive` and site lookup by URL, `root`, `items/{id}`, path
// addressing `root:/a/b:` and `items/{id}:/a/b:`, `children` with `@odata.nextLink`, `delta` with nextLink/deltaLink,
// content download through a 302 to a pre-authenticated URL that honours Range, simple upload, `createUploadSession`
// with Graph's fragment rules (320 KiB multiples, Content-Range, nextExpectedRanges, expiry), PATCH of fileSystemInfo,
// folder creation, delete, the identity platform's token and device-code endpoints, and Graph error bodies.
// Links it emits are real-looking `https://graph.microsoft.com/v1.0/...` URLs (the client maps them back here);
// upload and download URLs point at the address the request was sent to (its Host header), so a client that goes
// through a proxy gets them through the same proxy. Tests can throttle (429 + Retry-After), fail (5xx), drop connections,
// expire tokens, sessions, download URLs and delta tokens, and count requests.
import { createHash, randomBytes, randomUUID, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { appendFile, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Faults, type RequestInfo, type RequestKind, type RequestMatch } from './graph-emulator/faults.ts';
import { Identity, type IdentitySettings } from './graph-emulator/identity.ts';
import { QuickXorHash } from '../../integrations/onedrive/quickxorhash.ts';
import { DriveStore, GraphFault, type DriveType, type EmuDrive, type EmuItem } from './graph-emulator/store.ts';
import { RequestOrigin } from './request-origin.ts';

export { GraphFault, type EmuDrive, type EmuItem } from './graph-emulator/store.ts';
export type { RequestInfo, RequestKind, RequestMatch } from './graph-emulator/faults.ts';

/** The public Graph root the emulator writes into links. */
export const GRAPH_ROOT = 'https://graph.microsoft.com';

const KIB320 = 320 * 1024;
const MAX_FRAGMENT = 60 * 1024 * 1024;

/** Emulator settings. */
export interface GraphEmulatorOptions {
  /** Private folder for file contents (default: a new temp folder, removed by close). */
  dir?: string;
  /** Largest `children` page (default 200, Graph's default page). */
  pageSize?: number;
  /** Items per delta page (default 200). */
  deltaPageSize?: number;
  /** Order of a full delta enumeration (default parents-first). */
  deltaOrder?: 'parents-first' | 'children-first' | 'shuffled';
  /** Largest simple upload in bytes (default 250 MB, the documented limit). */
  simpleUploadLimit?: number;
  /** Upload-session lifetime, extended by each fragment (default 1 h). */
  sessionLifetimeMs?: number;
  /** Lifetime of pre-authenticated download URLs (default 1 h). */
  downloadUrlLifetimeMs?: number;
  /** Drive type of the default user's drive (default personal). */
  driveType?: DriveType;
  /** Identity platform settings. */
  identity?: Partial<IdentitySettings>;
}

interface Session {
  id: string;
  driveId: string;
  parentId: string;
  name: string;
  targetId?: string;
  conflict: string;
  fsCreated?: string;
  fsModified?: string;
  total?: number;
  received: number;
  file: string;
  expiresAt: number;
  done: boolean;
  /** Hashes of the bytes received so far (so that committing a huge file costs nothing). */
  hashes: { qx: QuickXorHash; sha1: Hash; sha256: Hash };
}

interface DownloadGrant {
  driveId: string;
  itemId: string;
  version: number;
  expiresAt: number;
}

interface DeltaSession {
  driveId: string;
  rootId: string;
  ids: string[];
  /** Change sequence at the start: the deltaLink token. */
  seq: number;
  issuedAt: number;
}

interface Site {
  id: string;
  hostname: string;
  path: string;
  displayName: string;
  driveId: string;
}

/** Base name for the default app registration used by tests. */
export const TEST_CLIENT_ID = '11111111-2222-3333-4444-555555555555';

/** A running emulator with its test controls. */
export class GraphEmulator {
  readonly store: DriveStore;
  readonly identity: Identity;
  readonly faults = new Faults();
  readonly options: Required<Omit<GraphEmulatorOptions, 'dir' | 'identity' | 'driveType'>>;
  /** The default user's drive (`/me/drive`). */
  readonly me: EmuDrive;
  /**
   * `http://127.0.0.1:PORT`. Upload-session and download URLs are built from the address each request was sent to
   * (its Host header: a fault proxy's, when the client goes through one), and from this one only for a request
   * without a usable Host header or outside a request.
   */
  url = '';
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Map<string, Session>();
  private readonly downloads = new Map<string, DownloadGrant>();
  private readonly deltas = new Map<string, DeltaSession>();
  private readonly sites = new Map<string, Site>();
  /** Upload requests whose body is stored damaged (the `corrupt` control). */
  private readonly corrupted = new WeakSet<IncomingMessage>();
  private deltaTokensValidAfter = 0;
  private requestSeq = 0;
  private readonly ownsDir: boolean;
  /** The address the request being answered was sent to. */
  private readonly origin = new RequestOrigin();

  constructor(dir: string, ownsDir: boolean, o: GraphEmulatorOptions) {
    this.store = new DriveStore(dir);
    this.ownsDir = ownsDir;
    this.identity = new Identity(o.identity);
    this.options = {
      pageSize: o.pageSize ?? 200,
      deltaPageSize: o.deltaPageSize ?? 200,
      deltaOrder: o.deltaOrder ?? 'parents-first',
      simpleUploadLimit: o.simpleUploadLimit ?? 250 * 1000 * 1000,
      sessionLifetimeMs: o.sessionLifetimeMs ?? 3_600_000,
      downloadUrlLifetimeMs: o.downloadUrlLifetimeMs ?? 3_600_000,
    };
    this.me = this.store.createDrive({ driveType: o.driveType ?? 'personal', owner: 'Test User' });
    this.identity.registerClient(TEST_CLIENT_ID);
  }

  // --- test controls -------------------------------------------------------------------------------------------

  /** A config map for the integration: endpoint, client_id and a fresh refresh token for `drive` (default `me`). */
  config(location: string, extra: Record<string, string> = {}, drive: EmuDrive = this.me): Record<string, string> {
    return {
      location,
      endpoint: this.url,
      client_id: TEST_CLIENT_ID,
      refresh_token: this.identity.issueRefreshToken(TEST_CLIENT_ID, drive.id),
      ...extra,
    };
  }

  /** Creates another drive (a work account's OneDrive or a document library). */
  createDrive(o: { driveType?: DriveType; owner?: string; quotaTotal?: number } = {}): EmuDrive {
    return this.store.createDrive(o);
  }

  /** Creates a SharePoint site whose default document library is a new drive. */
  addSite(hostname: string, path: string, displayName = path.split('/').pop() ?? 'Site'): { site: Site; drive: EmuDrive } {
    const drive = this.store.createDrive({ driveType: 'documentLibrary', owner: displayName });
    const site: Site = { id: `${hostname},${randomUUID()},${randomUUID()}`, hostname, path, displayName, driveId: drive.id };
    this.sites.set(site.id, site);
    return { site, drive };
  }

  /** The next `count` matching requests get `status` (429 by default) with Retry-After `retryAfter` seconds. */
  throttle(count: number, o: { status?: number; code?: string; retryAfter?: number; match?: RequestMatch } = {}): void {
    this.faults.add(
      count,
      { type: 'status', status: o.status ?? 429, code: o.code ?? 'activityLimitReached', message: 'The request has been throttled', retryAfter: o.retryAfter ?? 1 },
      o.match,
    );
  }

  /** The next `count` matching requests fail with `status` (500 by default). */
  fail(count: number, o: { status?: number; code?: string; match?: RequestMatch } = {}): void {
    this.faults.add(count, { type: 'status', status: o.status ?? 500, code: o.code ?? 'generalException', message: 'An unexpected error occurred' }, o.match);
  }

  /**
   * The next `count` matching requests lose their connection: at once, after `afterBytes` of the body, or (uploads,
   * `afterCommit`) once the fragment is stored, so that only the reply is lost.
   */
  drop(count: number, o: { afterBytes?: number; afterCommit?: boolean; match?: RequestMatch } = {}): void {
    this.faults.add(count, { type: 'drop', afterBytes: o.afterBytes, afterCommit: o.afterCommit }, o.match);
  }

  /** The next `count` matching uploads (simple PUTs or session fragments) are stored with their first byte flipped. */
  corrupt(count: number, match?: RequestMatch): void {
    this.faults.add(count, { type: 'corrupt' }, match);
  }

  /** The next `count` matching requests wait `ms` first. */
  delay(count: number, ms: number, match?: RequestMatch): void {
    this.faults.add(count, { type: 'delay', ms }, match);
  }

  /** Every upload session expires now. */
  expireSessions(): void {
    for (const s of this.sessions.values()) s.expiresAt = 0;
  }

  /** Every pre-authenticated download URL expires now. */
  expireDownloadUrls(): void {
    for (const d of this.downloads.values()) d.expiresAt = 0;
  }

  /** Every delta token and nextLink issued so far is refused with 410 resyncRequired. */
  expireDeltaTokens(): void {
    this.deltaTokensValidAfter = Date.now() + 1;
  }

  /** Live upload sessions (not committed, cancelled or expired). */
  get openSessions(): number {
    return [...this.sessions.values()].filter((s) => !s.done && Date.now() < s.expiresAt).length;
  }

  /** Requests so far matching `match`. */
  count(match?: (r: RequestInfo & { status: number }) => boolean): number {
    return this.faults.count(match);
  }

  // --- server ----------------------------------------------------------------------------------------------------

  /** Starts listening on 127.0.0.1 at a random port. */
  async listen(): Promise<void> {
    await this.store.init();
    this.server = createServer((req, res) => {
      this.origin.run(req, () => this.handle(req, res)).catch((err: unknown) => {
        if (!res.headersSent) this.sendError(res, 500, 'generalException', `emulator bug: ${String(err)}`);
        else res.destroy();
      });
    });
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const addr = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${addr.port}`;
  }

  /** Stops the server and removes the contents folder. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    if (this.ownsDir) await rm(this.store.dir, { recursive: true, force: true });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = req.method ?? 'GET';
    const kind: RequestKind = url.pathname.startsWith('/v1.0/')
      ? 'graph'
      : url.pathname.startsWith('/upload/')
        ? 'upload'
        : url.pathname.startsWith('/download/')
          ? 'download'
          : 'token';
    const info: RequestInfo = { kind, method, path: url.pathname, seq: ++this.requestSeq };
    res.on('close', () => {
      this.faults.log.push({
        ...info,
        status: res.writableFinished ? res.statusCode : 0,
        query: url.search,
        range: (req.headers['range'] ?? req.headers['content-range']),
        sdkVersion: typeof req.headers['sdkversion'] === 'string' ? req.headers['sdkversion'] : undefined,
        authorized: req.headers['authorization'] !== undefined,
      });
    });
    const fault = this.faults.take(info);
    if (fault?.type === 'corrupt') this.corrupted.add(req);
    if (fault?.type === 'delay') await new Promise((r) => setTimeout(r, fault.ms));
    if (fault?.type === 'status') {
      req.resume();
      this.sendError(res, fault.status, fault.code, fault.message ?? 'error', fault.retryAfter);
      return;
    }
    if (fault?.type === 'drop' && fault.afterBytes === undefined && !fault.afterCommit) {
      req.socket.destroy();
      return;
    }
    const dropAfter = fault?.type === 'drop' ? fault.afterBytes : undefined;
    const dropReply = fault?.type === 'drop' && fault.afterCommit === true;
    try {
      switch (kind) {
        case 'token':
          return await this.handleIdentity(req, res, url);
        case 'upload':
          return await this.handleUpload(req, res, url, dropAfter, dropReply);
        case 'download':
          return await this.handleDownload(req, res, url, dropAfter);
        case 'graph':
          return await this.handleGraph(req, res, url);
      }
    } catch (err) {
      if (err instanceof GraphFault) {
        req.resume();
        this.sendError(res, err.status, err.code, err.message);
        return;
      }
      throw err;
    }
  }

  private sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  /** A Graph error body: `{error:{code, message, innerError}}`. */
  private sendError(res: ServerResponse, status: number, code: string, message: string, retryAfter?: number): void {
    const headers: Record<string, string> = {};
    if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
    const date = new Date().toISOString().replace(/\.\d+Z$/, '');
    this.sendJson(res, status, { error: { code, message, innerError: { date, 'request-id': randomUUID(), 'client-request-id': randomUUID() } } }, headers);
  }

  private async readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const chunk of req) {
      n += (chunk as Buffer).length;
      if (n > limit) throw new GraphFault(413, 'requestTooLarge', 'The request body is too large.');
      parts.push(chunk as Buffer);
    }
    return Buffer.concat(parts);
  }

  private async readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
    const body = await this.readBody(req, 1024 * 1024);
    if (body.length === 0) return {};
    try {
      return JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new GraphFault(400, 'BadRequest', 'Unable to read JSON request payload.');
    }
  }

  // --- identity platform -----------------------------------------------------------------------------------------

  private async handleIdentity(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const m = /^\/([^/]+)\/oauth2\/v2\.0\/(token|devicecode)$/.exec(url.pathname);
    if (!m || req.method !== 'POST') {
      req.resume();
      this.sendJson(res, 404, { error: 'not_found', error_description: 'AADSTS90002: Unknown endpoint.' });
      return;
    }
    const form = new URLSearchParams((await this.readBody(req, 64 * 1024)).toString('utf8'));
    const tenant = decodeURIComponent(m[1] as string);
    const reply = m[2] === 'token' ? this.identity.token(tenant, form, GRAPH_ROOT) : this.identity.deviceCode(tenant, form);
    this.sendJson(res, reply.status, reply.body);
  }

  // --- Graph -----------------------------------------------------------------------------------------------------

  private async handleGraph(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const auth = req.headers['authorization'];
    const bearer = typeof auth === 'string' && /^Bearer /i.test(auth) ? auth.slice(7).trim() : undefined;
    const checked = this.identity.check(bearer);
    if ('error' in checked) throw new GraphFault(401, 'InvalidAuthenticationToken', checked.error);
    const grant = checked.grant;
    const method = req.method ?? 'GET';
    let p = url.pathname.slice('/v1.0'.length);
    let drive: EmuDrive | undefined;

    if (p === '/me' || p.startsWith('/me/')) {
      if (!grant.userDriveId) throw new GraphFault(400, 'BadRequest', '/me request is only valid with delegated authentication flow.');
      const mine = this.store.drive(grant.userDriveId);
      if (p === '/me/drives') return this.sendJson(res, 200, { value: [this.driveJson(mine)] });
      if (p !== '/me/drive' && !p.startsWith('/me/drive/')) throw new GraphFault(400, 'BadRequest', `Unsupported segment in ${p}`);
      drive = mine;
      p = p.slice('/me/drive'.length);
    } else if (p.startsWith('/drives/')) {
      const rest = p.slice('/drives/'.length);
      const slash = rest.indexOf('/');
      drive = this.store.drive(decodeURIComponent(slash >= 0 ? rest.slice(0, slash) : rest));
      p = slash >= 0 ? rest.slice(slash) : '';
    } else if (p.startsWith('/sites/')) {
      const r = this.siteRoute(p.slice('/sites/'.length));
      if (r.rest === '') return this.sendJson(res, 200, { id: r.site.id, displayName: r.site.displayName, webUrl: `https://${r.site.hostname}${r.site.path}` });
      const siteDrive = this.store.drive(r.site.driveId);
      if (r.rest === '/drives') return this.sendJson(res, 200, { value: [this.driveJson(siteDrive)] });
      if (r.rest !== '/drive' && !r.rest.startsWith('/drive/')) throw new GraphFault(400, 'BadRequest', `Unsupported segment in ${p}`);
      drive = siteDrive;
      p = r.rest.slice('/drive'.length);
    } else {
      throw new GraphFault(400, 'BadRequest', `Resource not found for the segment '${p.split('/')[1] ?? ''}'.`);
    }

    if (p === '') {
      if (method !== 'GET') throw new GraphFault(405, 'notSupported', 'Method not allowed.');
      req.resume();
      return this.sendJson(res, 200, this.driveJson(drive));
    }
    return this.itemRoute(req, res, url, drive, p, method);
  }

  private siteRoute(rest: string): { site: Site; rest: string } {
    const colon = rest.indexOf(':');
    const slash = rest.indexOf('/');
    if (colon >= 0 && (slash < 0 || colon < slash)) {
      const hostname = rest.slice(0, colon);
      const after = rest.slice(colon + 1);
      const end = after.indexOf(':');
      const sitePath = decodeURIComponent(end >= 0 ? after.slice(0, end) : after).replace(/\/+$/, '');
      const site = [...this.sites.values()].find((s) => s.hostname === hostname && s.path.toLowerCase() === sitePath.toLowerCase());
      if (!site) throw new GraphFault(404, 'itemNotFound', 'Requested site could not be found');
      return { site, rest: end >= 0 ? after.slice(end + 1) : '' };
    }
    const id = decodeURIComponent(slash >= 0 ? rest.slice(0, slash) : rest);
    const site = this.sites.get(id) ?? [...this.sites.values()].find((s) => s.hostname === id && s.path === '');
    if (!site) throw new GraphFault(404, 'itemNotFound', 'Requested site could not be found');
    return { site, rest: slash >= 0 ? rest.slice(slash) : '' };
  }

  private driveJson(d: EmuDrive): Record<string, unknown> {
    const used = this.store.used(d);
    return {
      id: d.id,
      driveType: d.driveType,
      name: d.driveType === 'documentLibrary' ? 'Documents' : 'OneDrive',
      owner: { user: { displayName: d.owner } },
      quota: { total: d.quotaTotal, used, remaining: Math.max(0, d.quotaTotal - used), deleted: 0, state: used >= d.quotaTotal ? 'exceeded' : 'normal' },
    };
  }

  /** An item as Graph shows it; `delta` items have no parentReference.path and no downloadUrl. */
  itemJson(d: EmuDrive, it: EmuItem, o: { delta?: boolean } = {}): Record<string, unknown> {
    const j: Record<string, unknown> = {
      id: it.id,
      name: it.name,
      size: it.kind === 'file' ? it.size : this.store.treeSize(d, it),
      eTag: `"{${it.id}},${it.version}"`,
      cTag: `"c:{${it.id}},${it.version}"`,
      createdDateTime: it.created,
      lastModifiedDateTime: it.modified,
      createdBy: { user: { displayName: d.owner } },
      fileSystemInfo: { createdDateTime: it.fsCreated, lastModifiedDateTime: it.fsModified },
    };
    const parentRef: Record<string, unknown> = { driveId: d.id, driveType: d.driveType };
    if (it.parentId) {
      parentRef.id = it.parentId;
      if (!o.delta) {
        const parent = d.items.get(it.parentId);
        const pp = parent ? this.store.pathOf(d, parent) : '/';
        parentRef.path = pp === '/' ? '/drive/root:' : `/drive/root:${pp}`;
      }
    }
    j.parentReference = parentRef;
    switch (it.kind) {
      case 'root':
        j.root = {};
        j.folder = { childCount: this.store.childrenOf(d, it).length };
        break;
      case 'folder':
        j.folder = { childCount: this.store.childrenOf(d, it).length };
        break;
      case 'package':
        j.package = { type: it.packageType };
        break;
      case 'file': {
        const h = it.hashes;
        j.file = {
          mimeType: it.mimeType,
          hashes: d.driveType === 'personal' ? { quickXorHash: h?.quickXorHash, sha1Hash: h?.sha1Hash, sha256Hash: h?.sha256Hash } : { quickXorHash: h?.quickXorHash },
        };
        if (!o.delta) j['@microsoft.graph.downloadUrl'] = this.downloadUrl(d, it);
        break;
      }
    }
    if (it.remote) j.remoteItem = { id: it.remote.id, parentReference: { driveId: it.remote.driveId } };
    if (it.malware) j.malware = { description: 'Win32/Test.Malware' };
    return j;
  }

  private downloadUrl(d: EmuDrive, it: EmuItem): string {
    const token = randomBytes(18).toString('base64url');
    this.downloads.set(token, { driveId: d.id, itemId: it.id, version: it.version, expiresAt: Date.now() + this.options.downloadUrlLifetimeMs });
    return `${this.origin.current(this.url)}/download/${token}`;
  }

  private async itemRoute(req: IncomingMessage, res: ServerResponse, url: URL, d: EmuDrive, p: string, method: string): Promise<void> {
    const m = /^\/(root|items\/([^/:]+))/.exec(p);
    if (!m) throw new GraphFault(400, 'BadRequest', `Unsupported segment in ${p}`);
    const base = m[1] === 'root' ? this.store.item(d, d.rootId) : this.store.item(d, decodeURIComponent(m[2] as string));
    let after = p.slice(m[0].length);
    let segments: string[] | undefined;
    if (after.startsWith(':')) {
      const end = after.indexOf(':', 1);
      const rel = end >= 0 ? after.slice(1, end) : after.slice(1);
      after = end >= 0 ? after.slice(end + 1) : '';
      segments = rel.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
    }
    const action = after.replace(/^\//, '').replace(/\(\)$/, '');
    const target = segments ? this.store.resolve(d, base, segments) : base;

    switch (action) {
      case '': {
        if (!target) throw new GraphFault(404, 'itemNotFound', 'The resource could not be found.');
        if (method === 'GET') {
          req.resume();
          return this.sendJson(res, 200, this.itemJson(d, target));
        }
        if (method === 'PATCH') return this.sendJson(res, 200, this.itemJson(d, this.store.patch(d, target, await this.readJson(req))));
        if (method === 'DELETE') {
          req.resume();
          this.store.remove(d, target);
          res.writeHead(204).end();
          return;
        }
        throw new GraphFault(405, 'notSupported', 'Method not allowed.');
      }
      case 'children': {
        if (!target) throw new GraphFault(404, 'itemNotFound', 'The resource could not be found.');
        if (method === 'GET') {
          req.resume();
          return this.listChildren(res, url, d, target);
        }
        if (method === 'POST') {
          const body = await this.readJson(req);
          if (!body.folder && !body.package) throw new GraphFault(400, 'invalidRequest', 'Only folders can be created this way; upload files with PUT content.');
          const cb = body['@microsoft.graph.conflictBehavior'];
          const conflict = typeof cb === 'string' ? cb : 'fail';
          const fsi = body.fileSystemInfo as { createdDateTime?: string; lastModifiedDateTime?: string } | undefined;
          const { item } = this.store.createFolder(d, target, body.name, conflict, {
            packageType: (body.package as { type?: string } | undefined)?.type,
            fsCreated: fsi?.createdDateTime,
            fsModified: fsi?.lastModifiedDateTime,
          });
          return this.sendJson(res, 201, this.itemJson(d, item));
        }
        throw new GraphFault(405, 'notSupported', 'Method not allowed.');
      }
      case 'content': {
        if (method === 'GET') {
          req.resume();
          if (!target) throw new GraphFault(404, 'itemNotFound', 'The resource could not be found.');
          if (target.kind !== 'file') throw new GraphFault(400, 'invalidRequest', 'Only files have content.');
          if (target.malware) throw new GraphFault(403, 'malwareDetected', 'Malware detected in the file; download is blocked.');
          res.writeHead(302, { location: this.downloadUrl(d, target), 'content-length': 0 }).end();
          return;
        }
        if (method === 'PUT') return this.simpleUpload(req, res, url, d, base, segments, target);
        throw new GraphFault(405, 'notSupported', 'Method not allowed.');
      }
      case 'createUploadSession': {
        if (method !== 'POST') throw new GraphFault(405, 'notSupported', 'Method not allowed.');
        return this.createSession(req, res, d, base, segments, target);
      }
      case 'delta': {
        if (method !== 'GET') throw new GraphFault(405, 'notSupported', 'Method not allowed.');
        req.resume();
        if (!target) throw new GraphFault(404, 'itemNotFound', 'The resource could not be found.');
        return this.delta(res, url, d, target);
      }
      default:
        throw new GraphFault(400, 'BadRequest', `Unsupported segment '${action}'.`);
    }
  }

  private listChildren(res: ServerResponse, url: URL, d: EmuDrive, folder: EmuItem): void {
    if (folder.kind === 'file') throw new GraphFault(400, 'invalidRequest', 'The item is not a folder.');
    const top = Math.max(1, Math.min(Number(url.searchParams.get('$top') ?? 200) || 200, this.options.pageSize));
    const skip = Number(url.searchParams.get('$skiptoken') ?? 0) || 0;
    const all = this.store.childrenOf(d, folder);
    const page = all.slice(skip, skip + top);
    const body: Record<string, unknown> = { value: page.map((c) => this.itemJson(d, c)) };
    if (skip + top < all.length) {
      body['@odata.nextLink'] = `${GRAPH_ROOT}/v1.0/drives/${encodeURIComponent(d.id)}/items/${encodeURIComponent(folder.id)}/children?$top=${top}&$skiptoken=${skip + top}`;
    }
    this.sendJson(res, 200, body);
  }

  // --- delta -----------------------------------------------------------------------------------------------------

  private delta(res: ServerResponse, url: URL, d: EmuDrive, root: EmuItem): void {
    if (root.kind !== 'root' && d.driveType !== 'personal') {
      throw new GraphFault(400, 'invalidRequest', 'Delta is only supported on the root folder of OneDrive for Business and SharePoint document libraries.');
    }
    const links = `${GRAPH_ROOT}/v1.0/drives/${encodeURIComponent(d.id)}/items/${encodeURIComponent(root.id)}/delta`;
    const skip = url.searchParams.get('$skiptoken');
    const token = url.searchParams.get('token');
    let session: DeltaSession;
    let offset = 0;
    if (skip) {
      const [sid, off] = skip.split('.');
      const s = this.deltas.get(sid ?? '');
      if (!s || s.issuedAt < this.deltaTokensValidAfter) throw this.resync();
      session = s;
      offset = Number(off) || 0;
    } else if (token) {
      const [issued, seq] = token.split('.').map(Number);
      if (!issued || issued < this.deltaTokensValidAfter || seq === undefined) throw this.resync();
      // Incremental: items changed after `seq`, then deletions.
      const changed = this.subtree(d, root).filter((it) => it.seq > seq);
      const gone = [...d.tombstones.values()].filter((t) => t.seq > seq).map((t) => t.item);
      const body = {
        value: [...changed.map((it) => this.itemJson(d, it, { delta: true })), ...gone.map((it) => ({ id: it.id, name: it.name, deleted: { state: 'deleted' }, parentReference: { driveId: d.id, id: it.parentId } }))],
        '@odata.deltaLink': `${links}?token=${Date.now()}.${this.store.currentSeq}`,
      };
      return this.sendJson(res, 200, body);
    } else {
      const sid = randomBytes(8).toString('hex');
      session = { driveId: d.id, rootId: root.id, ids: this.order(this.subtree(d, root)).map((it) => it.id), seq: this.store.currentSeq, issuedAt: Date.now() };
      this.deltas.set(sid, session);
      url.searchParams.set('$skiptoken', `${sid}.0`);
      return this.delta(res, url, d, root);
    }
    const sid = (skip ?? '').split('.')[0];
    const ids = session.ids.slice(offset, offset + this.options.deltaPageSize);
    const value = ids.map((id) => d.items.get(id)).filter((it): it is EmuItem => it !== undefined).map((it) => this.itemJson(d, it, { delta: true }));
    const body: Record<string, unknown> = { value };
    const next = offset + this.options.deltaPageSize;
    if (next < session.ids.length) body['@odata.nextLink'] = `${links}?$skiptoken=${sid}.${next}`;
    else body['@odata.deltaLink'] = `${links}?token=${session.issuedAt}.${session.seq}`;
    this.sendJson(res, 200, body);
  }

  private resync(): GraphFault {
    return new GraphFault(410, 'resyncRequired', 'Resync required. Replace any local items with the server version (including deletes) if you are sure that the service was up to date with your local changes when you last synced.');
  }

  /** `root` and everything below it, breadth first. */
  private subtree(d: EmuDrive, root: EmuItem): EmuItem[] {
    const out: EmuItem[] = [root];
    for (let i = 0; i < out.length; i++) out.push(...this.store.childrenOf(d, out[i] as EmuItem));
    return out;
  }

  private order(items: EmuItem[]): EmuItem[] {
    switch (this.options.deltaOrder) {
      case 'parents-first':
        return items;
      case 'children-first':
        return [...items].reverse();
      case 'shuffled': {
        const out = [...items];
        let seed = 42;
        for (let i = out.length - 1; i > 0; i--) {
          seed = (seed * 1103515245 + 12345) & 0x7fffffff;
          const j = seed % (i + 1);
          [out[i], out[j]] = [out[j] as EmuItem, out[i] as EmuItem];
        }
        return out;
      }
    }
  }

  // --- uploads ---------------------------------------------------------------------------------------------------

  /** Where an upload addressed by (base, segments, target) lands: an existing file, or a new name in a parent. */
  private uploadTarget(d: EmuDrive, base: EmuItem, segments: string[] | undefined, target: EmuItem | undefined): { parent: EmuItem; name: string; existing?: EmuItem } {
    if (target && target.kind === 'file') {
      return { parent: this.store.item(d, target.parentId as string), name: target.name, existing: target };
    }
    if (target) throw new GraphFault(409, 'nameAlreadyExists', 'A folder with the specified name already exists.');
    if (!segments || segments.length === 0) throw new GraphFault(400, 'invalidRequest', 'The target is a folder.');
    const parent = this.store.resolve(d, base, segments.slice(0, -1));
    if (!parent || parent.kind === 'file') throw new GraphFault(404, 'itemNotFound', 'The parent folder does not exist.');
    return { parent, name: this.store.checkName(segments[segments.length - 1]) };
  }

  private async simpleUpload(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    d: EmuDrive,
    base: EmuItem,
    segments: string[] | undefined,
    target: EmuItem | undefined,
  ): Promise<void> {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > this.options.simpleUploadLimit) {
      req.resume();
      throw new GraphFault(413, 'requestTooLarge', `Simple upload supports files up to ${this.options.simpleUploadLimit} bytes; use an upload session.`);
    }
    const t = this.uploadTarget(d, base, segments, target);
    const blob = this.store.newBlobPath();
    let n = 0;
    const limit = this.options.simpleUploadLimit;
    let damage = this.corrupted.has(req);
    await pipeline(
      req,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          if (damage && chunk.length > 0) {
            chunk[0] = (chunk[0] as number) ^ 0xff;
            damage = false;
          }
          n += chunk.length;
          if (n > limit) throw new GraphFault(413, 'requestTooLarge', 'The request body is too large.');
          yield chunk;
        }
      },
      createWriteStream(blob),
    ).catch(async (err: unknown) => {
      await rm(blob, { force: true });
      throw err;
    });
    const conflict = url.searchParams.get('@microsoft.graph.conflictBehavior') ?? 'replace';
    const { item, created } = await this.store.putFile(d, t.parent, t.name, blob, {
      conflict: t.existing && conflict === 'replace' ? undefined : conflict,
      target: t.existing && conflict === 'replace' ? t.existing : undefined,
    });
    this.sendJson(res, created ? 201 : 200, this.itemJson(d, item));
  }

  private async createSession(
    req: IncomingMessage,
    res: ServerResponse,
    d: EmuDrive,
    base: EmuItem,
    segments: string[] | undefined,
    target: EmuItem | undefined,
  ): Promise<void> {
    const body = await this.readJson(req);
    const item = (body.item ?? {}) as { '@microsoft.graph.conflictBehavior'?: string; name?: string; fileSystemInfo?: { createdDateTime?: string; lastModifiedDateTime?: string } };
    const conflict = item['@microsoft.graph.conflictBehavior'] ?? 'replace';
    const t = this.uploadTarget(d, base, segments, target);
    if (t.existing && conflict === 'fail') throw new GraphFault(409, 'nameAlreadyExists', 'The specified item name already exists.');
    const id = randomBytes(16).toString('base64url');
    const s: Session = {
      id,
      driveId: d.id,
      parentId: t.parent.id,
      name: t.name,
      targetId: t.existing && conflict === 'replace' ? t.existing.id : undefined,
      conflict,
      fsCreated: item.fileSystemInfo?.createdDateTime,
      fsModified: item.fileSystemInfo?.lastModifiedDateTime,
      received: 0,
      file: join(this.store.dir, `session-${id}`),
      expiresAt: Date.now() + this.options.sessionLifetimeMs,
      done: false,
      hashes: { qx: new QuickXorHash(), sha1: createHash('sha1'), sha256: createHash('sha256') },
    };
    await writeFile(s.file, '');
    this.sessions.set(id, s);
    this.sendJson(res, 200, { uploadUrl: `${this.origin.current(this.url)}/upload/${id}`, expirationDateTime: new Date(s.expiresAt).toISOString(), nextExpectedRanges: ['0-'] });
  }

  private sessionStatus(s: Session): Record<string, unknown> {
    return { expirationDateTime: new Date(s.expiresAt).toISOString(), nextExpectedRanges: [`${s.received}-${s.total !== undefined ? s.total - 1 : ''}`] };
  }

  private async handleUpload(req: IncomingMessage, res: ServerResponse, url: URL, dropAfter: number | undefined, dropReply: boolean): Promise<void> {
    const socket = req.socket;
    const s = this.sessions.get(url.pathname.slice('/upload/'.length));
    if (!s || s.done || Date.now() >= s.expiresAt) {
      req.resume();
      throw new GraphFault(404, 'itemNotFound', 'The upload session was not found or has expired.');
    }
    if (req.headers['authorization']) {
      req.resume();
      throw new GraphFault(401, 'unauthenticated', 'Do not send an Authorization header to an upload URL.');
    }
    switch (req.method ?? '') {
      case 'GET':
        req.resume();
        return this.sendJson(res, 200, this.sessionStatus(s));
      case 'DELETE':
        req.resume();
        s.done = true;
        await rm(s.file, { force: true });
        res.writeHead(204).end();
        return;
      case 'PUT':
        break;
      default:
        throw new GraphFault(405, 'notSupported', 'Method not allowed.');
    }
    const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(req.headers['content-range'] ?? ''));
    const length = Number(req.headers['content-length'] ?? NaN);
    if (!cr) {
      req.resume();
      throw new GraphFault(400, 'invalidRequest', 'The Content-Range header is missing or malformed.');
    }
    const start = Number(cr[1]);
    const end = Number(cr[2]);
    const total = cr[3] === '*' ? undefined : Number(cr[3]);
    if (total === undefined) {
      req.resume();
      throw new GraphFault(400, 'invalidRequest', 'The total size must be given in Content-Range.');
    }
    if (s.total !== undefined && s.total !== total) {
      req.resume();
      throw new GraphFault(400, 'invalidRequest', 'The total size does not match earlier fragments.');
    }
    const size = end - start + 1;
    if (end < start || end >= total || length !== size) {
      req.resume();
      throw new GraphFault(400, 'invalidRequest', 'Content-Range and Content-Length do not agree.');
    }
    if (size > MAX_FRAGMENT) {
      req.resume();
      throw new GraphFault(413, 'requestTooLarge', 'Fragments must be smaller than 60 MiB.');
    }
    if (end + 1 < total && size % KIB320 !== 0) {
      req.resume();
      throw new GraphFault(400, 'invalidRequest', 'Fragments other than the last must be a multiple of 320 KiB.');
    }
    if (start < s.received) {
      req.resume();
      throw new GraphFault(416, 'requestedRangeNotSatisfiable', 'The uploaded fragment overlaps with data that has already been received.');
    }
    if (start > s.received) {
      req.resume();
      throw new GraphFault(400, 'invalidRange', `Fragments must be sent in order: expected byte ${s.received}.`);
    }
    if (dropAfter !== undefined) {
      // Read part of the fragment, then lose the connection: nothing of it is kept.
      await new Promise<void>((resolve) => {
        let got = 0;
        const onData = (chunk: Buffer): void => {
          got += chunk.length;
          if (got >= dropAfter) {
            req.off('data', onData);
            socket.destroy();
            resolve();
          }
        };
        req.on('data', onData);
        req.on('end', resolve);
        req.on('error', () => resolve());
      });
      return;
    }
    const body = await this.readBody(req, MAX_FRAGMENT);
    if (body.length !== size) throw new GraphFault(400, 'invalidRequest', 'The body is shorter than Content-Length.');
    if (this.corrupted.has(req) && body.length > 0) body[0] = (body[0] as number) ^ 0xff;
    s.total = total;
    await appendFile(s.file, body);
    s.hashes.qx.update(body);
    s.hashes.sha1.update(body);
    s.hashes.sha256.update(body);
    s.received = end + 1;
    s.expiresAt = Date.now() + this.options.sessionLifetimeMs;
    if (s.received < total) {
      if (dropReply) {
        socket.destroy();
        return;
      }
      return this.sendJson(res, 202, this.sessionStatus(s));
    }
    // Last fragment: commit.
    const d = this.store.drive(s.driveId);
    const parent = this.store.item(d, s.parentId);
    const target = s.targetId ? d.items.get(s.targetId) : undefined;
    s.done = true;
    const blob = this.store.newBlobPath();
    await rename(s.file, blob);
    const { item, created } = await this.store.putFile(d, parent, s.name, blob, {
      conflict: target ? undefined : s.conflict,
      target,
      fsCreated: s.fsCreated,
      fsModified: s.fsModified,
      hashes: {
        size: total,
        quickXorHash: s.hashes.qx.digestBase64(),
        sha1Hash: s.hashes.sha1.digest('hex').toUpperCase(),
        sha256Hash: s.hashes.sha256.digest('hex').toUpperCase(),
      },
    });
    if (dropReply) {
      socket.destroy();
      return;
    }
    this.sendJson(res, created ? 201 : 200, this.itemJson(d, item));
  }

  // --- downloads -------------------------------------------------------------------------------------------------

  private async handleDownload(req: IncomingMessage, res: ServerResponse, url: URL, dropAfter: number | undefined): Promise<void> {
    req.resume();
    const g = this.downloads.get(url.pathname.slice('/download/'.length));
    if (!g || Date.now() >= g.expiresAt) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('The download URL has expired.');
      return;
    }
    const d = this.store.drive(g.driveId);
    const it = d.items.get(g.itemId);
    if (!it || it.version !== g.version || !it.blob) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found.');
      return;
    }
    const total = it.size;
    let start = 0;
    let end = total - 1;
    let status = 200;
    const range = req.headers['range'];
    if (typeof range === 'string') {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) {
        res.writeHead(416, { 'content-range': `bytes */${total}` }).end();
        return;
      }
      if (m[1] === '') {
        const suffix = Number(m[2]);
        start = Math.max(0, total - suffix);
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(total - 1, Number(m[2]));
      }
      if (start >= total || start > end) {
        res.writeHead(416, { 'content-range': `bytes */${total}` }).end();
        return;
      }
      status = 206;
    }
    const length = total === 0 ? 0 : end - start + 1;
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'content-length': length, 'accept-ranges': 'bytes' };
    if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${total}`;
    res.writeHead(status, headers);
    if (length === 0) {
      res.end();
      return;
    }
    const stream = createReadStream(it.blob, { start, end });
    if (dropAfter !== undefined) {
      let sent = 0;
      for await (const chunk of stream) {
        const b = chunk as Buffer;
        const room = dropAfter - sent;
        if (b.length >= room) {
          if (room > 0) res.write(b.subarray(0, room));
          await new Promise((r) => setTimeout(r, 20));
          stream.destroy();
          res.socket?.destroy();
          return;
        }
        res.write(b);
        sent += b.length;
      }
      res.end();
      return;
    }
    await pipeline(stream, res).catch(() => undefined);
  }
}

/** Starts an emulator on 127.0.0.1 at a random port. */
export async function startGraphEmulator(o: GraphEmulatorOptions = {}): Promise<GraphEmulator> {
  const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'graph-emulator-')));
  const emu = new GraphEmulator(dir, o.dir === undefined, o);
  await emu.listen();
  return emu;
}
