// The one output convention bench/run.ts reads besides markdown tables: `BENCH {json}` lines, one per figure.
// A bench script prints `figureLine({...})` next to its own table; run.ts gathers them into the summary of
// docs/BENCHMARKS.md, with the connector's figure, the raw client's (the practical limit) and their ratio.

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
