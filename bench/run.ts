// `npm run bench`: runs every benchmark script in bench/ one after the other (or those named), shows their output as
// it comes, and writes the generated section of docs/BENCHMARKS.md: the machine and its load, each script's figures
// (its markdown tables and `BENCH {json}` lines, see bench/report.ts), a summary with the raw client's practical limit
// and the ratio, and the package size of every built platform.
//   npm run bench                      every script, then docs/BENCHMARKS.md
//   npm run bench -- s3 imap           only those scripts (the other scripts' last results are kept)
//   npm run bench -- --sizes-only      only the package sizes
//   npm run bench -- --no-write        print, do not touch docs/BENCHMARKS.md
// The caldav, gdrive, imap and onedrive benches run the built executables in dist/ when they exist (benchEnv).
import { spawn } from 'node:child_process';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { exeFileName, hostTarget } from '../scripts/build-lib.ts';
import { findStaged } from '../scripts/package.ts';
import { FIGURE_PREFIX, parseFigures, ratioText, type BenchFigure } from './report.ts';

const ROOT = join(import.meta.dirname, '..');
const DOC = join(ROOT, 'docs', 'BENCHMARKS.md');
export const START = '<!-- npm run bench: generated section, do not edit by hand -->';
export const END = '<!-- end of the generated section -->';
/** Helper modules in bench/ that are not benchmarks. */
const NOT_SCRIPTS = new Set(['run.ts', 'report.ts']);

/** The benchmark scripts, sdk first, then by name. */
export function benchScripts(dir: string): string[] {
  const all = readdirSync(dir).filter((f) => f.endsWith('.ts') && !NOT_SCRIPTS.has(f) && !f.endsWith('.test.ts'));
  return [...all.filter((f) => f === 'sdk.ts'), ...all.filter((f) => f !== 'sdk.ts').sort()];
}

interface ScriptRun {
  script: string;
  ok: boolean;
  exit: string;
  seconds: number;
  /** When it ended, `YYYY-MM-DD HH:MM` UTC. */
  ended: string;
  output: string;
}

/** Scripts that run an integration's connectors from the sources unless `<NAME>_BENCH_EXE` names a built executable. */
const EXE_SCRIPTS = ['caldav', 'gdrive', 'imap', 'onedrive'] as const;

/**
 * The environment of a benchmark script: the integrations' benches measure the built executable (`dist/<name>/`, the
 * binary a user runs, with its V8 flags and code cache) whenever it exists and `<NAME>_BENCH_EXE` is not set already;
 * the sources through tsx run under the development Node with neither.
 */
export function benchEnv(root: string, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const name of EXE_SCRIPTS) {
    const key = `${name.toUpperCase()}_BENCH_EXE`;
    const exe = join('dist', name, exeFileName(name, hostTarget()));
    if (out[key] === undefined && existsSync(join(root, exe))) out[key] = exe;
  }
  return out;
}

function runScript(script: string): Promise<ScriptRun> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', script)], {
      cwd: ROOT,
      env: benchEnv(ROOT, process.env),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => {
      chunks.push(c);
      process.stdout.write(c);
    });
    child.on('close', (code, signal) =>
      resolve({
        script,
        ok: code === 0,
        exit: signal ?? String(code),
        seconds: (performance.now() - started) / 1000,
        ended: utcMinute(new Date()),
        output: Buffer.concat(chunks).toString('utf8'),
      }),
    );
  });
}

/** Bytes of `file` gzip-compressed (level 6), as a stand-in for the download size of its package. */
async function gzipSize(file: string): Promise<number> {
  let n = 0;
  await pipeline(
    createReadStream(file),
    createGzip({ level: 6 }),
    new Writable({
      write(chunk: Buffer, _e, cb) {
        n += chunk.length;
        cb();
      },
    }),
  );
  return n;
}

interface PackageSize {
  name: string;
  target: string;
  bytes: number;
  gzip: number;
}

/** Every staged executable under dist/ (the build machine's and `--all-targets`'), with its size. */
async function packageSizes(): Promise<PackageSize[]> {
  const out: PackageSize[] = [];
  for (const s of await findStaged(join(ROOT, 'dist'), hostTarget())) {
    if (s.name === 'fixture') continue;
    const exe = join(s.manifest, '..', exeFileName(s.name, s.target));
    if (!existsSync(exe)) continue;
    out.push({ name: s.name, target: s.target.id, bytes: statSync(exe).size, gzip: await gzipSize(exe) });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.target.localeCompare(b.target));
}

const mb = (n: number): string => (n / 1e6).toFixed(1);

function fmt(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** The summary table of every `BENCH` figure. */
export function summaryTable(figures: readonly BenchFigure[]): string {
  if (figures.length === 0) return '';
  const rows = figures.map(
    (f) =>
      `| ${f.integration} | ${f.measure} | ${fmt(f.value)} ${f.unit} | ${f.limit === undefined ? '' : `${fmt(f.limit)} ${f.unit}`} | ${ratioText(f)} | ${f.target ?? ''} |`,
  );
  return ['| integration | measure | connector | raw client (practical limit) | ratio | target |', '|---|---|---|---|---|---|', ...rows].join('\n');
}

/** What a script printed, for the docs: its markdown tables as tables, the rest as a text block. */
export function scriptSection(run: ScriptRun): string {
  const all = run.output.split('\n');
  const lines = all.filter((l) => !l.startsWith(FIGURE_PREFIX));
  const table = lines.filter((l) => l.startsWith('|'));
  const text = lines.filter((l) => !l.startsWith('|') && l.trim() !== '');
  const parts = [`### \`bench/${run.script}\` — ${run.ok ? 'ok' : `**failed (exit ${run.exit})**`}, ${run.seconds.toFixed(0)} s, ended ${run.ended} UTC`];
  if (table.length > 0) parts.push(table.join('\n'));
  if (text.length > 0) parts.push(['```text', ...text, '```'].join('\n'));
  // The figures ride along invisibly, so that a later run of other scripts still lists them in the summary.
  const figures = all.filter((l) => l.startsWith(FIGURE_PREFIX));
  if (figures.length > 0) parts.push(figures.map((l) => `<!-- ${l} -->`).join('\n'));
  return parts.join('\n\n');
}

/** Which scripts the run that writes the document measured, and which sections it kept from earlier runs. */
export function ranText(ran: string[], shown: string[]): string {
  const earlier = shown.filter((s) => !ran.includes(s));
  const ranPart = ran.length === 0 ? 'This run measured only the package sizes' : `This run: ${ran.join(', ')}`;
  return earlier.length === 0 ? `${ranPart}.` : `${ranPart}; ${earlier.join(', ')} kept from earlier runs (each section says when it ended).`;
}

/** The figures kept in a section written by `scriptSection`. */
export function sectionFigures(section: string): string {
  return [...section.matchAll(/^<!-- (BENCH \{.*\}) -->$/gm)].map((m) => m[1]).join('\n');
}

/** `YYYY-MM-DD HH:MM` of `d` in UTC. */
function utcMinute(d: Date): string {
  return d.toISOString().slice(0, 16).replace('T', ' ');
}

function machine(): string {
  const load = os.loadavg().map((l) => l.toFixed(1)).join(', ');
  const cpus = os.cpus();
  return `${utcMinute(new Date())} UTC, ${os.type()} ${os.release()} ${os.arch()}, ${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, load average ${load} when the run ended`;
}

/** Replaces (or adds, after the first paragraph) the generated section of the document. */
export function withSection(doc: string, section: string): string {
  const block = `${START}\n${section.trim()}\n${END}`;
  const a = doc.indexOf(START);
  const b = doc.indexOf(END);
  if (a >= 0 && b > a) return `${doc.slice(0, a)}${block}${doc.slice(b + END.length)}`;
  const firstSection = doc.indexOf('\n## ');
  if (firstSection < 0) return `${doc.trimEnd()}\n\n${block}\n`;
  return `${doc.slice(0, firstSection + 1)}${block}\n\n${doc.slice(firstSection + 1)}`;
}

/** The previous run's per-script sections, to keep those not re-run. */
function previousSections(doc: string): Map<string, string> {
  const out = new Map<string, string>();
  const a = doc.indexOf(START);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) return out;
  const body = doc.slice(a, b);
  const re = /^### `bench\/([\w-]+\.ts)`[^\n]*\n[\s\S]*?(?=^### |^## |$(?![\s\S]))/gm;
  for (const m of body.matchAll(re)) out.set(m[1] as string, m[0].trim());
  return out;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const sizesOnly = args.includes('--sizes-only');
  const write = !args.includes('--no-write');
  const only = args.filter((a) => !a.startsWith('--')).map((a) => a.replace(/\.ts$/, ''));
  const all = benchScripts(join(ROOT, 'bench'));
  const unknown = only.filter((o) => !all.includes(`${o}.ts`));
  if (unknown.length > 0) throw new Error(`no bench/${unknown[0]}.ts (have: ${all.join(', ')})`);
  const chosen = sizesOnly ? [] : all.filter((f) => only.length === 0 || only.includes(f.replace(/\.ts$/, '')));

  const runs: ScriptRun[] = [];
  for (const script of chosen) {
    process.stderr.write(`\n== bench/${script}\n`);
    runs.push(await runScript(script));
  }
  process.stderr.write('\n== package sizes\n');
  const sizes = await packageSizes();

  const doc = existsSync(DOC) ? readFileSync(DOC, 'utf8') : '# Benchmarks\n';
  const kept = previousSections(doc);
  for (const r of runs) kept.set(r.script, scriptSection(r));
  // The summary covers every script's latest figures: this run's, and those kept from earlier runs.
  const figures: BenchFigure[] = [];
  const problems: string[] = [];
  for (const script of all) {
    const section = kept.get(script);
    if (section === undefined) continue;
    const p = parseFigures(sectionFigures(section));
    figures.push(...p.figures);
    problems.push(...p.problems.map((x) => `bench/${script}: ${x}`));
  }

  const sizeRows = sizes.map((s) => `| ${s.name} | ${s.target} | ${mb(s.bytes)} MB | ${mb(s.gzip)} MB |`);
  const section = [
    '## Latest `npm run bench`',
    `Machine: ${machine()}. ${ranText(runs.map((r) => r.script), all.filter((s) => kept.has(s)))} Figures are comparable only within one run on one quiet machine.`,
    figures.length > 0 ? `### Summary (connector beside the raw client doing the same transfers)\n\n${summaryTable(figures)}` : '',
    ...all.map((s) => kept.get(s)).filter((s): s is string => s !== undefined),
    '### Package sizes',
    sizes.length > 0
      ? [
          'Each package is one Node 24 single executable (`npm run build -- --all-targets`); gzip -6 stands in for the download. darwin-arm64 and win-arm64 are not built: the npm registry has no Node 24 runtime for them.',
          '',
          '| integration | platform | executable | gzip |',
          '|---|---|---|---|',
          ...sizeRows,
        ].join('\n')
      : 'No package built (`npm run build`).',
  ]
    .filter((s) => s !== '')
    .join('\n\n');

  process.stdout.write(`\n${summaryTable(figures)}\n\n${sizeRows.join('\n')}\n`);
  for (const p of problems) process.stderr.write(`bench: malformed figure line: ${p}\n`);
  if (write) {
    writeFileSync(DOC, withSection(doc, section));
    process.stderr.write(`bench: wrote ${relative(process.cwd(), DOC)}\n`);
  }
  process.exit(runs.some((r) => !r.ok) ? 1 : 0);
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
