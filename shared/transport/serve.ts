// Serves one connector's gRPC service on a Duplex with grpc-js's connection injector (no port, no GOAWAY, no limits).
import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { ConnectorKind, Integration } from '../define.ts';
import { exporterService } from '../protocol/exporter-server.ts';
import { importerService } from '../protocol/importer-server.ts';
import type { ConnectorRuntime } from '../protocol/runtime.ts';
import { storageService } from '../protocol/storage-server.ts';

/**
 * Server options: unlimited message sizes; keepalive, max-age and idle timeouts left unset (their defaults are off);
 * channelz off (its per-call bookkeeping is a measurable part of a small Get's cost, PROTOCOL.md §9, and nothing here
 * could read it).
 */
export const SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc.enable_channelz': 0,
};

/**
 * The plugin's HTTP/2 receive window (connection and each stream). Node's default is 64 KiB, so a Put from the host
 * would stall for a WINDOW_UPDATE every 32–64 KiB whenever the event loop is busy with the store; 4 MiB lets the host
 * keep streaming a chunk ahead (grpc-go grows its own windows the same way, PROTOCOL.md §1.3). Memory stays bounded by
 * the window.
 */
export const RECEIVE_WINDOW = 4 * 1024 * 1024;

/**
 * grpc-js has no server option for the receive window, so the HTTP/2 server it builds for the connection injector is
 * given the window through `http2.createServer` for the duration of that one call.
 */
function withReceiveWindow<T>(make: () => T): T {
  const original = http2.createServer;
  const patched = ((options: http2.ServerOptions, listener?: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void) => {
    const server = original({ ...options, settings: { ...options?.settings, initialWindowSize: RECEIVE_WINDOW } }, listener);
    server.on('session', (session: http2.ServerHttp2Session) => {
      try {
        session.setLocalWindowSize(RECEIVE_WINDOW);
      } catch {
        // A session that is already closing keeps the default window.
      }
    });
    return server;
  }) as typeof http2.createServer;
  http2.createServer = patched;
  try {
    return make();
  } finally {
    http2.createServer = original;
  }
}

/** A served connector: its runtime (for shutdown) and a close function for tests. */
export interface ServedConnector {
  runtime: ConnectorRuntime<unknown>;
  server: grpc.Server;
  close(): void;
}

/** Builds the grpc-js server with the one service this process provides. */
export function buildServer(integration: Integration, kind: ConnectorKind): { server: grpc.Server; runtime: ConnectorRuntime<unknown> } {
  const server = new grpc.Server(SERVER_OPTIONS);
  let svc: { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation; runtime: ConnectorRuntime<any> };
  switch (kind) {
    case 'importer': {
      if (!integration.importer) throw new Error(`${integration.name} has no importer`);
      svc = importerService(integration, integration.importer);
      break;
    }
    case 'exporter': {
      if (!integration.exporter) throw new Error(`${integration.name} has no exporter`);
      svc = exporterService(integration, integration.exporter);
      break;
    }
    case 'storage': {
      if (!integration.storage) throw new Error(`${integration.name} has no storage`);
      svc = storageService(integration, integration.storage);
      break;
    }
  }
  server.addService(svc.definition, svc.implementation);
  return { server, runtime: svc.runtime };
}

/** Serves `kind` of `integration` on `duplex` (stdio in production, an in-memory pair in tests). */
export function serveOnDuplex(integration: Integration, kind: ConnectorKind, duplex: Duplex): ServedConnector {
  const { server, runtime } = buildServer(integration, kind);
  const injector = withReceiveWindow(() => server.createConnectionInjector(grpc.ServerCredentials.createInsecure()));
  injector.injectConnection(duplex);
  return {
    runtime,
    server,
    close: () => {
      void runtime.shutdown();
      injector.destroy();
      server.forceShutdown();
    },
  };
}
