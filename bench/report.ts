// The one output convention bench/run.ts reads besides markdown tables: `BENCH {json}` lines, one per figure.
// A bench script prints `figureLine({...})` next to its own table; run.ts gathers them into the summary of
// docs/BENCHMARKS.md, with the connector's figure, the raw client's (the practical limit) and their ratio.
// Also the one sampling of a spawned connector's CPU and peak RSS that the bench scripts share.
import { readFileSync, writeFileSync } from 'node:fs';

/** One measured figure. `limit` is the same transfer done by the raw client library against the same server. */
export interface BenchFigure {
  /** Integration (or `sdk`). */
  integration: string;
  /** What was measured, e.g. `storage Put throughput (256 MiB)`. */
  measure: string;
  value: number;
  /** `MB/s`, `objects/s`, `messages/s`, `ms`, `MB`… */
  unit: string;
  /** The raw client's figure for the same work, when measured side by side. */
  limit?: number;
  /** A target from the issue, as text. */
  target?: string;
}

/** The prefix of a machine-readable figure line. */
export const FIGURE_PREFIX = 'BENCH ';

/** The line a bench script prints for one figure (on stdout). */
export function figureLine(f: BenchFigure): string {
  return `${FIGURE_PREFIX}${JSON.stringify(f)}`;
}

/** Prints one figure line on stdout. */
export function printFigure(f: BenchFigure): void {
  process.stdout.write(`${figureLine(f)}\n`);
}

/** The figures found in a script's output (other lines ignored; malformed figure lines reported). */
export function parseFigures(output: string): { figures: BenchFigure[]; problems: string[] } {
  const figures: BenchFigure[] = [];
  const problems: string[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith(FIGURE_PREFIX)) continue;
    try {
      const f = JSON.parse(line.slice(FIGURE_PREFIX.length)) as BenchFigure;
      if (typeof f.integration !== 'string' || typeof f.measure !== 'string' || typeof f.value !== 'number' || typeof f.unit !== 'string') {
        throw new Error('needs integration, measure, value (number) and unit');
      }
      figures.push(f);
    } catch (err) {
      problems.push(`${line.slice(0, 120)}: ${(err as Error).message}`);
    }
  }
  return { figures, problems };
}

/** `value / limit` as text: how close the connector comes to the raw client (1.00 = as fast). */
export function ratioText(f: BenchFigure): string {
  if (f.limit === undefined || f.limit === 0 || !Number.isFinite(f.limit)) return '';
  const lowerIsBetter = /^(ms|s|MB|MiB|KiB|bytes|ms\/\w+)$/.test(f.unit);
  const r = lowerIsBetter ? f.limit / f.value : f.value / f.limit;
  return r.toFixed(2);
}

/** True in smoke mode (`--smoke` or KLOSET_TS_BENCH_SMOKE=1): small sizes, to check that a script runs, not to measure. */
export function smokeMode(): boolean {
  return process.argv.includes('--smoke') || process.env.KLOSET_TS_BENCH_SMOKE === '1';
}

/** The number after `--<name>` on the command line; else `smoke` in smoke mode, else `full`. */
export function sizeArg(name: string, full: number, smoke: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : smokeMode() ? smoke : full;
}

/** A megabyte as the issues' targets count it ("200 MB"): 10^6 bytes, not a MiB. */
export const MB = 1e6;

/** MB/s (10^6 bytes a second), the throughput unit of every bench. */
export function mbps(bytes: number, seconds: number): number {
  return bytes / MB / seconds;
}

/** What a process has used so far, read from /proc (Linux). */
export interface ProcessUsage {
  /** CPU seconds, user + system: a figure that a busy machine distorts less than wall time. */
  cpu: number;
  /** Peak resident set size (VmHWM) in bytes. */
  rss: number;
  /**
   * File-backed resident bytes now (RssFile, plus RssShmem for an executable on tmpfs): pages of the executable, which
   * only grow over a process's life. How many depends on how the kernel holds the file in its page cache (large folios
   * map more pages per fault), not on the code: one executable measured 47 to 69 MiB of them (docs/BENCHMARKS.md, S3
   * section), so `rss − rssFile` (a lower bound of the anonymous memory at the peak) is what to compare between builds.
   */
  rssFile: number;
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on every Linux Node runs on). */
const USER_HZ = 100;

/**
 * The CPU time and peak RSS of process `pid` (a spawned connector) so far; NaN for both when there is no pid.
 * Sample it after Init and again at the end to leave out start-up: CPU is cumulative, the peak RSS is the whole life's.
 */
export function processUsage(pid: number | undefined): ProcessUsage {
  if (pid === undefined) return { cpu: NaN, rss: NaN, rssFile: NaN };
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may itself hold spaces and parentheses: utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : NaN;
  };
  // An executable on tmpfs counts as shared memory (RssShmem) rather than RssFile.
  return { cpu: (Number(fields[11]) + Number(fields[12])) / USER_HZ, rss: kib('VmHWM'), rssFile: kib('RssFile') + kib('RssShmem') };
}

/**
 * Resets the peak RSS of process `pid` to its current RSS (`5` into /proc/<pid>/clear_refs, Linux ≥ 4.0), so that the
 * next {@link processUsage} gives the peak of what ran since: one process can then report one peak per phase. False when
 * the kernel refused (then the peak stays the whole life's).
 */
export function resetPeakRss(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
