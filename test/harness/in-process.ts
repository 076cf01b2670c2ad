// Connects the host client to a plugin served in the same process through a Unix-domain socket pair.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { PluginHost, type HostSettings } from './host.ts';
import { GrpcConnection, type ConnectionOptions } from './transport.ts';

/** A host connected to an in-process plugin. */
export interface InProcessConnection {
  connection: GrpcConnection;
  host: PluginHost;
  /** Tears down both sides (host session first, then the plugin's `close`). */
  close(): void;
}

let sockets = 0;

/**
 * Serves a plugin in this process with `serve` (e.g. `(d) => serveOnDuplex(integration, kind, d)`) and connects a
 * host to it over a real Unix-domain socket pair, so both HTTP/2 sessions run on native stream handles like the
 * spawned executables' peers do (two JS stream shims in one process hit a Node 20 http2 assertion under load). The
 * host side is usable at once (writes wait for the connection); `serve` is called when the plugin side connects.
 */
export function connectInProcess(
  serve: (duplex: Duplex) => { close(): void },
  options: ConnectionOptions & HostSettings = {},
): InProcessConnection {
  const dir = mkdtempSync(join(tmpdir(), 'kloset-inproc-'));
  const path = join(dir, `s${++sockets}.sock`);
  let served: { close(): void } | undefined;
  let pluginSide: Socket | undefined;
  let closed = false;
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  const server = createServer((socket) => {
    server.close();
    cleanup();
    socket.on('error', () => undefined);
    if (closed) {
      socket.destroy();
      return;
    }
    pluginSide = socket;
    served = serve(socket);
  });
  server.on('error', () => undefined);
  // A pipe server binds and listens synchronously, so the connection below cannot race it.
  server.listen(path);
  const hostSide = connect({ path });
  const connection = new GrpcConnection(hostSide, options);
  const host = new PluginHost(connection, options);
  return {
    connection,
    host,
    close: () => {
      closed = true;
      connection.close();
      served?.close();
      pluginSide?.destroy();
      server.close();
      cleanup();
    },
  };
}
