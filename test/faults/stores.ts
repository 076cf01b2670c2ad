// The integrations with a storage connector (s3, imap, gdrive, onedrive) as the kill and soak tests drive them: the
// built executables, spawned like Plakar, against radosgw, Dovecot and the Drive and Graph emulators.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Integration } from '../../shared/define.ts';
import { integration as gdrive } from '../../integrations/gdrive/index.ts';
import { integration as imap } from '../../integrations/imap/index.ts';
import { integration as onedrive } from '../../integrations/onedrive/index.ts';
import { integration as s3 } from '../../integrations/s3/index.ts';
import { launchPlugin, type ConnectorKind, type LaunchedPlugin } from '../harness/index.ts';
import { DriveEmulator } from '../servers/drive-emulator.ts';
import { startGraphEmulator } from '../servers/graph-emulator.ts';
import { providedServer } from '../servers/provided.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/** One integration's connectors, reachable directly or through a proxy at `via` (`127.0.0.1:PORT`). */
export interface StoreTarget {
  name: string;
  integration: Integration;
  /** Where a proxy forwards to. */
  upstream: string | number;
  /** Config of `kind` for the repository or collection `name`. */
  config(kind: ConnectorKind, name: string, via?: string): Record<string, string>;
  secrets: string[];
  close(): Promise<void>;
}

/** Which of the targets a run wants: radosgw and Dovecot only when the run started them. */
export async function storeTargets(): Promise<StoreTarget[]> {
  const wanted = (process.env.KLOSET_TS_SERVERS ?? '').split(',').map((s) => s.trim());
  const out: StoreTarget[] = [];
  if (wanted.includes('radosgw')) {
    const rgw = providedServer('radosgw');
    const host = rgw.endpoint.replace(/^https?:\/\//, '');
    const bucket = `faults-k-${Date.now().toString(36)}`;
    out.push({
      name: 's3',
      integration: s3,
      upstream: rgw.endpoint,
      config: (_kind, name, via) => ({
        location: `s3://${via ?? host}/${bucket}/${name}`,
        access_key: rgw.accessKey,
        secret_access_key: rgw.secretKey,
        use_tls: 'false',
        part_size: '5MiB',
        upload_cutoff: '5MiB',
      }),
      secrets: [rgw.secretKey],
      close: async () => undefined,
    });
  }
  if (wanted.includes('dovecot')) {
    const d = providedServer('dovecot');
    const u = d.users[1] ?? (d.users[0] as { user: string; password: string });
    out.push({
      name: 'imap',
      integration: imap,
      upstream: d.port,
      config: (kind, name, via) => ({
        location: `imap://${via ?? `127.0.0.1:${d.port}`}/${kind === 'storage' ? '' : name}`,
        username: u.user,
        password: u.password,
        tls: 'no-tls',
        ...(kind === 'storage' ? { root: `Repo-${name}`, max_message_size: '512KiB' } : {}),
      }),
      secrets: [u.password],
      close: async () => undefined,
    });
  }
  const drive = await DriveEmulator.start();
  const clientId = 'faults-k.apps.googleusercontent.com';
  const clientSecret = 'GOCSPX-faults-k-secret';
  drive.addClient(clientId, clientSecret);
  const refresh = drive.issueRefreshToken(clientId);
  const driveUrl = drive.url;
  out.push({
    name: 'gdrive',
    integration: gdrive,
    upstream: driveUrl,
    config: (_kind, name, via) => ({
      location: `gdrive:///faults/${name}`,
      client_id: clientId,
      client_secret: clientSecret,
      refresh_token: refresh,
      api_url: via ? `http://${via}/` : driveUrl,
      token_url: via ? `http://${via}/token` : drive.tokenUrl,
      chunk_size: '512KiB',
    }),
    secrets: [clientSecret, refresh],
    close: () => drive.close(),
  });
  const graph = await startGraphEmulator();
  const graphUrl = graph.url;
  const tokens: string[] = [];
  out.push({
    name: 'onedrive',
    integration: onedrive,
    upstream: graphUrl,
    config: (_kind, name, via) => {
      const c = graph.config(`onedrive:///faults/${name}`, { upload_cutoff: '400KiB', chunk_size: '320KiB' });
      if (via) c.endpoint = `http://${via}`;
      tokens.push(c.refresh_token as string);
      return c;
    },
    secrets: tokens,
    close: () => graph.close(),
  });
  return out;
}

/** The manifest of an integration's built package; fails clearly when it was not built. */
export function manifestOf(name: string): string {
  const m = join(ROOT, 'dist', name, 'manifest.yaml');
  if (!existsSync(m)) throw new Error(`${m} is missing: build first (npx tsx scripts/build.ts --only ${name})`);
  return m;
}

/** Spawns the built `kind` executable of `t` like Plakar and sends Init. */
export async function spawnConnector(t: StoreTarget, kind: ConnectorKind, config: Record<string, string>): Promise<LaunchedPlugin> {
  const launched = await launchPlugin({ manifest: manifestOf(t.name), kind });
  try {
    await launched.host.init(kind, t.integration.protocols[0] as string, config, kind === 'storage' ? undefined : { maxConcurrency: 4 });
  } catch (err) {
    await launched.dispose(5000);
    throw err;
  }
  return launched;
}

/** Open file descriptors of a process (entries of /proc/<pid>/fd). */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Resident set size of a process in bytes (VmRSS). */
export function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
