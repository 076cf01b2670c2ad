// Shared pieces of the onedrive tests: the emulator, connectors served in-process through the host harness, stderr capture.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { integration } from '../../../integrations/onedrive/index.ts';
import { serveOnDuplex } from '../../../shared/transport/serve.ts';
import { connectInProcess, type ExportEntry, type ImportOutcome, type InitOptions, type PluginHost, type WireRecord } from '../../harness/index.ts';
import { startGraphEmulator, type EmuDrive, type EmuItem, type GraphEmulator, type GraphEmulatorOptions } from '../../servers/graph-emulator.ts';

export { integration };

/**
 * The sizes of issue #8: a 300 MiB file in the round trip, a 5,000-object repository. `ONEDRIVE_BIG_MIB` and
 * `ONEDRIVE_OBJECTS` change them (and the conformance suites' large object and object count, 24 MiB and 600 by default).
 */
export const BIG_FILE_BYTES = Number(process.env.ONEDRIVE_BIG_MIB ?? (process.env.KLOSET_TS_FULL_SCALE ? 300 : 64)) * 1024 * 1024 + 12_345;
export const MANY_OBJECTS = Number(process.env.ONEDRIVE_OBJECTS ?? 5000);

/** Starts an emulator. */
export function emulator(o: GraphEmulatorOptions = {}): Promise<GraphEmulator> {
  return startGraphEmulator(o);
}

/** A connector of the onedrive integration served in this process, driven by the host harness. */
export interface Served {
  host: PluginHost;
  close(): void;
}

/** Serves `kind` in-process and sends Init with `config`; returns the host (Init already done). */
export async function served(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>, options: InitOptions = {}): Promise<Served> {
  const c = connectInProcess((d) => serveOnDuplex(integration, kind, d));
  try {
    await c.host.init(kind, 'onedrive', config, options);
  } catch (err) {
    c.close();
    throw err;
  }
  return { host: c.host, close: () => c.close() };
}

/** The Init error message for `config` (undefined when Init succeeds). */
export async function initError(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>): Promise<string | undefined> {
  const c = connectInProcess((d) => serveOnDuplex(integration, kind, d));
  try {
    await c.host.init(kind, 'onedrive', config);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    c.close();
  }
}

/** Captures everything written to stderr until `stop()`. */
export function captureStderr(): { text(): string; stop(): string } {
  const chunks: string[] = [];
  const original = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return (original as (...a: unknown[]) => boolean)(chunk, ...rest);
  });
  return {
    text: () => chunks.join(''),
    stop: () => {
      process.stderr.write = original;
      return chunks.join('');
    },
  };
}

/** A temp folder removed by the returned cleanup. */
export async function tempDir(prefix = 'onedrive-test-'): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Imports `location` and keeps each file's content in a temp file; returns records and where the bytes are. */
export async function backup(
  config: Record<string, string>,
  dir: string,
  options: InitOptions = {},
): Promise<{ outcome: ImportOutcome; files: Map<string, string>; root: string }> {
  const s = await served('importer', config, options);
  const files = new Map<string, string>();
  let n = 0;
  try {
    const outcome = await s.host.importAll({
      maxConcurrency: 2,
      content: (record) => {
        if (record.isXattr) return undefined;
        const file = join(dir, `content-${n++}`);
        files.set(record.pathname, file);
        return createWriteStream(file);
      },
    });
    return { outcome, files, root: s.host.initResult?.root ?? '/' };
  } finally {
    s.close();
  }
}

/** Export entries for a restore of what `backup` read: paths relative to its root, content from the temp files. */
export function restoreEntries(records: WireRecord[], files: Map<string, string>, root: string): ExportEntry[] {
  const rel = (p: string): string => (p === root ? '/' : root === '/' ? p : p.slice(root.length));
  const byPath = new Map<string, ExportEntry>();
  for (const r of records) {
    if (r.error || r.isXattr || !r.fileInfo) continue;
    if (r.pathname !== root && !r.pathname.startsWith(root === '/' ? '/' : `${root}/`)) continue;
    const file = files.get(r.pathname);
    const e: ExportEntry = { path: rel(r.pathname), info: r.fileInfo };
    if (file) e.content = () => createReadStream(file);
    else if (r.hasReader) e.content = new Uint8Array(0);
    byPath.set(e.path, e);
  }
  return [...byPath.values()];
}

/** Every file below `folder` of `drive`, by path relative to the folder. */
export function filesUnder(emu: GraphEmulator, drive: EmuDrive, folder: string): Map<string, EmuItem> {
  const base = emu.store.resolve(drive, emu.store.item(drive, drive.rootId), folder.split('/').filter(Boolean));
  const out = new Map<string, EmuItem>();
  if (!base) return out;
  const walk = (it: EmuItem, rel: string): void => {
    for (const c of emu.store.childrenOf(drive, it)) {
      const p = `${rel}/${c.name}`;
      out.set(p, c);
      if (c.kind !== 'file') walk(c, p);
    }
  };
  walk(base, '');
  return out;
}

/** The item at `path` of `drive`, if any. */
export function itemAt(emu: GraphEmulator, drive: EmuDrive, path: string): EmuItem | undefined {
  return emu.store.resolve(drive, emu.store.item(drive, drive.rootId), path.split('/').filter(Boolean));
}

/** A deterministic pseudo-random buffer (fast to make, incompressible enough). */
export function pseudoRandom(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  for (let i = size - (size % 4); i < size; i++) out[i] = i & 0xff;
  return out;
}
