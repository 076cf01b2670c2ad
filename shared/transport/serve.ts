// Serves one connector's gRPC service on a Duplex with grpc-js's connection injector (no port, no GOAWAY, no limits).
import * as grpc from '@grpc/grpc-js';
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
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
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
