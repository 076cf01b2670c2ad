// Test helpers for the gdrive integration: an emulator with an OAuth client, configs pointing at it, and hosts driving
// the connectors in-process through the host harness (the real googleapis client runs against the emulator).
import type { Duplex } from 'node:stream';
import { integration } from '../../../integrations/gdrive/index.ts';
import { serveOnDuplex } from '../../../shared/transport/serve.ts';
import { connectInProcess, isRegular, type ExportEntry, type InitOptions, type PluginHost, type WireRecord } from '../../harness/index.ts';
import { DriveEmulator, type DriveEmulatorOptions } from '../../servers/drive-emulator.ts';

/** The OAuth client registered in every test emulator. */
export const CLIENT_ID = 'test-client.apps.googleusercontent.com';
export const CLIENT_SECRET = 'GOCSPX-test-client-secret-value';

/** Sizes scale with GDRIVE_TEST_SCALE (default 1 in CI; the bench uses its own sizes). */
export const SCALE = Number(process.env.GDRIVE_TEST_SCALE ?? 1) || 1;

/** An emulator plus a refresh token for alice. */
export interface TestDrive {
  emu: DriveEmulator;
  refreshToken: string;
  /** A config for `location` using user OAuth against the emulator. */
  config(location: string, extra?: Record<string, string>): Record<string, string>;
  close(): Promise<void>;
}

/** Starts an emulator with an OAuth client and a refresh token for alice@example.com. */
export async function startDrive(options: DriveEmulatorOptions = {}): Promise<TestDrive> {
  const emu = await DriveEmulator.start(options);
  emu.addClient(CLIENT_ID, CLIENT_SECRET);
  const refreshToken = emu.issueRefreshToken(CLIENT_ID);
  return {
    emu,
    refreshToken,
    config: (location, extra = {}) => ({
      location,
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      refresh_token: refreshToken,
      api_url: emu.url,
      token_url: emu.tokenUrl,
      ...extra,
    }),
    close: () => emu.close(),
  };
}

/** A connector served in this process, with a host connected to it. */
export interface Connected {
  host: PluginHost;
  close(): void;
}

/** Serves one gdrive connector in-process and sends Init with `config`. */
export async function connect(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>, init: InitOptions = {}): Promise<Connected> {
  const c = connectInProcess((d: Duplex) => serveOnDuplex(integration, kind, d));
  await c.host.init(kind, 'gdrive', config, { maxConcurrency: 4, ...init });
  return { host: c.host, close: () => c.close() };
}

/** Connects without Init (for init-failure tests). */
export function connectRaw(kind: 'importer' | 'exporter' | 'storage'): Connected {
  const c = connectInProcess((d: Duplex) => serveOnDuplex(integration, kind, d));
  return { host: c.host, close: () => c.close() };
}

/** Seconds and nanos of a Date, as FileInfo carries them. */
export function ts(d: Date): { seconds: number; nanos: number } {
  const ms = d.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

/** The Date of a FileInfo timestamp. */
export function dateOf(t: { seconds: number; nanos: number } | undefined): Date {
  return new Date((t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6));
}

/** Export entries that restore an import outcome (what `plakar restore` of that snapshot sends), paths below `root`. */
export function entriesFromImport(
  outcome: { records: WireRecord[]; contents: Map<string, Buffer | string> },
  root = '/',
): ExportEntry[] {
  const out: ExportEntry[] = [];
  for (const r of outcome.records) {
    if (r.isXattr || r.error || !r.fileInfo) continue;
    if (root !== '/' && r.pathname !== root && !r.pathname.startsWith(`${root}/`)) continue;
    const path = root === '/' ? r.pathname : r.pathname.slice(root.length) || '/';
    const content = r.hasReader ? outcome.contents.get(r.pathname) : undefined;
    const bytes = typeof content === 'string' ? undefined : content;
    out.push({
      path,
      info: { ...r.fileInfo, size: bytes ? bytes.length : r.fileInfo.size },
      target: r.target || undefined,
      xattrs: r.extendedAttributes,
      content: isRegular(r.fileInfo.mode) ? (bytes ?? Buffer.alloc(0)) : undefined,
    });
  }
  return out;
}
