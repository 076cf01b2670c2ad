// Drives the caldav connectors through the host harness in-process: a backup becomes a snapshot, a snapshot a restore.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { integration } from '../../../integrations/caldav/index.ts';
import { serveOnDuplex } from '../../../shared/transport/serve.ts';
import {
  contentKey,
  GrpcConnection,
  PluginHost,
  MODE,
  walkOrder,
  type ExportEntry,
  type ExportOutcome,
  type ImportOptions,
  type ImportOutcome,
  type InitResult,
  type WireRecord,
} from '../../harness/index.ts';

/**
 * Serves one connector in this process and connects a harness host to it over a real unix socket. The harness's
 * in-memory duplex pair puts both HTTP/2 sessions on JS stream sockets, and Node 20 aborts on heavy two-way traffic
 * there (`Assertion failed: (stream_buf_.base) != nullptr` in node_http2.cc); a socket is what Plakar gives anyway.
 */
async function connect(kind: 'importer' | 'exporter'): Promise<{ host: PluginHost; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'caldav-host-'));
  const path = join(dir, 'plugin.sock');
  let served: { close(): void } | undefined;
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    served = serveOnDuplex(integration, kind, socket);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const socket = net.connect(path);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const connection = new GrpcConnection(socket);
  return {
    host: new PluginHost(connection),
    close: () => {
      connection.close();
      socket.destroy();
      served?.close();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A finished backup: what Init said and everything the host received. */
export interface Backup extends ImportOutcome {
  init: InitResult;
}

/** Backs up with the caldav importer (a full import, every file opened, like a first backup). */
export async function backup(proto: 'caldav' | 'carddav', config: Record<string, string>, options: ImportOptions = {}): Promise<Backup> {
  const c = await connect('importer');
  try {
    const init = await c.host.init('importer', proto, config, { maxConcurrency: 3 });
    const out = await c.host.importAll({ maxConcurrency: 2, ...options });
    await c.host.close();
    return { init, ...out };
  } finally {
    c.close();
  }
}

/** Sends only Init (and Close): for the errors a wrong configuration gives. Returns the error, or undefined. */
export async function initError(kind: 'importer' | 'exporter', proto: 'caldav' | 'carddav', config: Record<string, string>): Promise<Error | undefined> {
  const c = await connect(kind);
  try {
    await c.host.init(kind, proto, config);
    await c.host.close();
    return undefined;
  } catch (err) {
    return err as Error;
  } finally {
    c.close();
  }
}

/** The file records of a backup by path (no xattr or error records). */
export function files(b: Backup): Map<string, WireRecord> {
  const out = new Map<string, WireRecord>();
  for (const r of b.records) if (!r.isXattr && !r.error && r.fileInfo && (r.fileInfo.mode & MODE.DIR) === 0) out.set(r.pathname, r);
  return out;
}

/** The bytes the host read for one path. */
export function content(b: Backup, path: string): string {
  const c = b.contents.get(path);
  if (c === undefined) throw new Error(`no content for ${path}`);
  return Buffer.isBuffer(c) ? c.toString('utf8') : c;
}

/** The value of an extended attribute record. */
export function xattr(b: Backup, path: string, name: string): string | undefined {
  const c = b.contents.get(contentKey({ pathname: path, isXattr: true, xattrName: name, xattrType: 0 }));
  return c === undefined ? undefined : Buffer.isBuffer(c) ? c.toString('utf8') : c;
}

/**
 * The entries the host sends to an exporter when restoring `subtree` of this backup (default: the snapshot root):
 * paths relative to it, `/` first and named after the restored directory, missing parents created like kloset does.
 */
export function snapshot(b: Backup, subtree = b.init.root): ExportEntry[] {
  const base = subtree === '/' ? '' : subtree;
  const byPath = new Map<string, ExportEntry>();
  const modTime = { seconds: 0, nanos: 0 };
  const rootName = subtree === '/' ? '/' : (subtree.split('/').pop() as string);
  byPath.set('/', { path: '/', info: { name: rootName, mode: (MODE.DIR | 0o750) >>> 0, modTime } });
  for (const r of b.records) {
    if (r.isXattr || r.error || !r.fileInfo) continue;
    if (base !== '' && r.pathname !== base && !r.pathname.startsWith(`${base}/`)) continue;
    const rel = r.pathname.slice(base.length) || '/';
    const isDir = (r.fileInfo.mode & MODE.DIR) !== 0;
    // Parents the importer did not send are created by kloset (dir|0750, epoch).
    const segs = rel.split('/').slice(1, -1);
    for (let i = 1; i <= segs.length; i++) {
      const p = `/${segs.slice(0, i).join('/')}`;
      if (!byPath.has(p)) byPath.set(p, { path: p, info: { name: segs[i - 1] as string, mode: (MODE.DIR | 0o750) >>> 0, modTime } });
    }
    if (rel === '/') {
      byPath.set('/', { path: '/', info: { ...r.fileInfo, name: rootName } });
      continue;
    }
    const bytes = isDir ? undefined : b.contents.get(contentKey(r));
    byPath.set(rel, {
      path: rel,
      info: { ...r.fileInfo, size: Buffer.isBuffer(bytes) ? bytes.length : r.fileInfo.size },
      xattrs: r.extendedAttributes,
      content: isDir ? undefined : Buffer.isBuffer(bytes) ? bytes : Buffer.alloc(0),
    });
  }
  return walkOrder([...byPath.keys()]).map((p) => byPath.get(p) as ExportEntry);
}

/** Restores entries with the caldav exporter. */
export async function restore(
  proto: 'caldav' | 'carddav',
  config: Record<string, string>,
  entries: ExportEntry[],
  maxConcurrency = 4,
  endTimeoutMs = 600_000,
): Promise<ExportOutcome> {
  const c = await connect('exporter');
  try {
    await c.host.init('exporter', proto, config, { maxConcurrency });
    // The host waits for the plugin as long as it takes; the harness's 30 s default is too short for big restores.
    const out = await c.host.exportTree(entries, { endTimeoutMs });
    await c.host.close();
    return out;
  } finally {
    c.close();
  }
}
