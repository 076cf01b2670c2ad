// Opens one connector for a conformance case: the built executable through the host harness (KLOSET_TS_SPAWN=1), or in-process.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MB, processUsage } from '../../bench/report.ts';
import type { ConnectorKind, Integration } from '../../shared/define.ts';
import { serveOnDuplex } from '../../shared/transport/serve.ts';
import { connectInProcess, launchPlugin, type PluginHost } from '../harness/index.ts';

/** The integration under test and where its built package lives. */
export interface ConformanceTarget {
  integration: Integration;
  /** Protocol to send in Init (default: the first of the integration's protocols). */
  proto?: string;
  /** Directory of the built package holding `manifest.yaml` and the executable (default `dist/<name>`). */
  packageDir?: string;
}

/** An open connector: a host to drive it, what it wrote on stderr, and how to end it like Plakar exiting. */
export interface OpenConnector {
  host: PluginHost;
  /** Everything the connector wrote on stderr (spawned) or on this process's stderr while it ran (in-process). */
  stderr(): string;
  /** The child's pid when spawned. */
  pid: number | undefined;
  dispose(): Promise<void>;
}

const ROOT = join(import.meta.dirname, '..', '..');

/** True when conformance runs the built executables (CI), false for in-process runs. */
export function spawnMode(): boolean {
  return process.env.KLOSET_TS_SPAWN === '1';
}

/** The manifest of a target's built package. */
export function manifestOf(target: ConformanceTarget): string {
  return join(target.packageDir ?? join(ROOT, 'dist', target.integration.name), 'manifest.yaml');
}

/** Opens `kind` of the target; the caller sends Init. */
export async function openConnector(target: ConformanceTarget, kind: ConnectorKind, env?: NodeJS.ProcessEnv): Promise<OpenConnector> {
  if (spawnMode()) {
    const manifest = manifestOf(target);
    if (!existsSync(manifest)) throw new Error(`${manifest} is missing: build first (npm run build -- --fixture)`);
    const launched = await launchPlugin({ manifest, kind, protocol: target.proto }, { env });
    return {
      host: launched.host,
      pid: launched.process.pid,
      stderr: () => launched.process.stderr(),
      dispose: async () => {
        const exit = await launched.dispose(10_000);
        if (exit.timedOut) throw new Error(`${target.integration.name} ${kind} did not exit on EOF of stdin`);
        if (exit.code !== 0) throw new Error(`${target.integration.name} ${kind} exited with ${exit.code ?? exit.signal} after EOF`);
      },
    };
  }
  let captured = '';
  const original = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    captured += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return (original as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
  const conn = connectInProcess((d) => serveOnDuplex(target.integration, kind, d));
  return {
    host: conn.host,
    pid: undefined,
    stderr: () => captured,
    dispose: async () => {
      conn.close();
      process.stderr.write = original;
    },
  };
}

/** The protocol a target speaks in Init. */
export function protoOf(target: ConformanceTarget): string {
  return target.proto ?? (target.integration.protocols[0] as string);
}

/** Fails when any secret (raw, URL-encoded or base64) appears in `text`; `where` names the place for the message. */
export function assertNoSecrets(text: string, secrets: readonly string[], where: string): void {
  for (const s of secrets) {
    if (!s || s.length < 4) continue;
    for (const form of [s, encodeURIComponent(s), Buffer.from(s).toString('base64'), Buffer.from(s).toString('base64url')]) {
      if (text.includes(form)) throw new Error(`a secret value leaked into ${where}`);
    }
  }
}

/** The memory promise of the issues, "under 200 MB" of RSS: 10^6-byte megabytes (200 MiB would allow 4.9% more). */
export const MEMORY_LIMIT = 200 * MB;

/**
 * A live process's peak RSS and the file-backed part of its RSS now (the executable's own pages), in bytes, with both as
 * a phrase in MB (10^6 bytes). The file-backed part varies by ~20 MB for one executable with how the kernel holds the
 * file in its page cache (a freshly written file maps in large folios), so memory tests print it beside each peak
 * (docs/BENCHMARKS.md, S3 section).
 */
export interface MemoryPeak {
  peak: number;
  fileBacked: number;
  /** `peak RSS 165 MB (file-backed 75 MB)` */
  text: string;
}

/** {@link MemoryPeak} of a live process, read like the benches read it (bench/report.ts processUsage); throws when /proc lacks it. */
export function memoryPeak(pid: number | undefined): MemoryPeak {
  const { rss: peak, rssFile: fileBacked } = processUsage(pid);
  if (!Number.isFinite(peak) || !Number.isFinite(fileBacked)) throw new Error(`cannot read the memory of process ${pid} from /proc`);
  return { peak, fileBacked, text: `peak RSS ${(peak / MB).toFixed(0)} MB (file-backed ${(fileBacked / MB).toFixed(0)} MB)` };
}

/** Peak resident set size of a process in bytes (VmHWM, bench/report.ts processUsage), or undefined when not readable (the process is gone). */
export function peakRss(pid: number | undefined): number | undefined {
  try {
    const { rss } = processUsage(pid);
    return Number.isFinite(rss) ? rss : undefined;
  } catch {
    return undefined;
  }
}
