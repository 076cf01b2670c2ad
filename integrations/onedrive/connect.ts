// Builds a connector's Graph client from its options: credentials, pacer, endpoints, and the drive to work on.
import { setMaxListeners } from 'node:events';
import type { ConnectorContext } from '../../shared/index.ts';
import { classify, endpointsOf, GraphClient } from './client.ts';
import { OAuthTokens } from './oauth.ts';
import { authModeOf, type CommonValues } from './options.ts';

/** A Graph client signed in and bound to the configured drive (the first Graph calls happen here). */
export async function connect(ctx: ConnectorContext<CommonValues>, kind: 'importer' | 'exporter' | 'storage'): Promise<GraphClient> {
  const o = ctx.options;
  // Every request and download in flight listens on the shutdown signal; dozens at once are normal.
  setMaxListeners(0, ctx.signal);
  const mode = authModeOf(o);
  const endpoints = endpointsOf(o);
  // Like rclone's OneDrive pacer, the shared slow-down after throttling stays short (Retry-After is honoured apart).
  const pacer = ctx.pacer({ classify, maxAttempts: o.maxRetries, log: ctx.log, minSleepMs: 100, maxSleepMs: 5000 });
  const tokens = new OAuthTokens({ mode, values: o, endpoints, pacer, log: ctx.log, signal: ctx.signal, addSecret: (v) => ctx.addSecret(v), kind });
  const g = new GraphClient({ tokens, endpoints, pacer, timeoutMs: o.timeout, signal: ctx.signal, log: ctx.log });
  await g.useDrive(o);
  return g;
}

/** The `onedrive://` location help shared by the three connectors. */
export const LOCATION = {
  help: 'onedrive://[/path]: a folder of the drive, created when needed by the exporter and storage (default: the drive root)',
  examples: ['onedrive://', 'onedrive:///Documents', 'onedrive:///Backups/plakar'],
  pattern: '^onedrive://',
} as const;
