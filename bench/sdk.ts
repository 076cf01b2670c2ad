// SDK benchmark through the built fixture executable over two pipes: cold start, Put/Get/Open throughput, small ranged Gets, peak RSS.
// Run: npx tsx bench/sdk.ts (BENCH_BYTES=… changes the 1 GiB transfers; `npm run build -- --only fixture` first).
//   --smoke (or KLOSET_TS_BENCH_SMOKE=1) checks that everything runs with small sizes (64 MiB, 2,000 small Gets).
// Prints a table and every figure as a `BENCH` line (bench/report.ts), with the target the SDK issue set.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { launchPlugin, RESOURCE, type LaunchedPlugin } from '../test/harness/index.ts';
import { decodeMessage, encodeMessage } from '../test/harness/messages.ts';
import { MB, printFigure, processUsage, resetPeakRss, smokeMode } from './report.ts';

const ROOT = join(import.meta.dirname, '..');
const MANIFEST = join(ROOT, 'dist', 'fixture', 'manifest.yaml');
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** One measured figure with its target. */
export interface Figure {
  name: string;
  value: number;
  unit: string;
  target?: string;
  ok?: boolean;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function storage(location: string): Promise<LaunchedPlugin> {
  const p = await launchPlugin({ manifest: MANIFEST, kind: 'storage' });
  await p.host.init('storage', 'fixture', { location });
  return p;
}

async function* generate(total: number): AsyncGenerator<Uint8Array> {
  const block = randomBytes(MiB);
  for (let sent = 0; sent < total; sent += MiB) yield block.subarray(0, Math.min(MiB, total - sent));
}

/** Runs the SDK benchmark and returns its figures. */
export async function benchSdk(options: { bytes?: number; smallGets?: number } = {}): Promise<Figure[]> {
  if (!existsSync(MANIFEST)) throw new Error(`${MANIFEST} missing: run npm run build -- --only fixture first`);
  const bytes = options.bytes ?? GiB;
  const smallGets = options.smallGets ?? 20_000;
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = await mkdtemp(join(base, 'kts-bench-'));
  const figures: Figure[] = [];
  try {
    // Cold start: spawn to the first Init reply.
    const starts: number[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      const p = await launchPlugin({ manifest: MANIFEST, kind: 'storage' });
      await p.host.init('storage', 'fixture', { location: `fixture://${dir}/cold` });
      starts.push(performance.now() - t0);
      await p.dispose();
    }
    const cold = median(starts);
    figures.push({ name: 'cold start to first Init reply (median of 7)', value: cold, unit: 'ms', target: '≤ 150 ms', ok: cold <= 150 });

    // Put and Get of one large object.
    const repo = `fixture://${dir}/repo`;
    const s = await storage(repo);
    await s.host.create(Buffer.from('_KLOSET_bench'));
    const mac = randomBytes(32);
    let t0 = performance.now();
    await s.host.put(RESOURCE.PACKFILE, mac, generate(bytes));
    const putMBs = bytes / 1e6 / ((performance.now() - t0) / 1000);
    figures.push({ name: `Put throughput (${bytes / MiB} MiB, one stream)`, value: putMBs, unit: 'MB/s', target: '≥ 150 MB/s', ok: putMBs >= 150 });
    t0 = performance.now();
    const call = await s.host.connection.serverStream('/store.Store/Get', encodeMessage('store.GetRequest', { mac, type: RESOURCE.PACKFILE }));
    let got = 0;
    for (;;) {
      const msg = await call.read();
      if (msg === undefined) break;
      got += (decodeMessage('store.GetResponse', msg).chunk as Uint8Array).length;
    }
    if (got !== bytes) throw new Error(`Get returned ${got} bytes, expected ${bytes}`);
    const getMBs = bytes / 1e6 / ((performance.now() - t0) / 1000);
    figures.push({ name: `Get throughput (${bytes / MiB} MiB, one stream)`, value: getMBs, unit: 'MB/s', target: '≥ 150 MB/s', ok: getMBs >= 150 });
    // The streaming peak (issue 2: RSS ≤ 120 MB while streaming 1 GiB) is read before the small Gets below: their own
    // peak (the JavaScript heap growing towards the old-generation floor, docs/BENCHMARKS.md) is a figure of its own.
    const streamed = processUsage(s.process.pid);
    figures.push({ name: `storage peak RSS (${bytes / MiB} MiB Put + Get)`, value: streamed.rss / MB, unit: 'MB', target: '≤ 120 MB', ok: streamed.rss <= 120 * MB });
    figures.push({ name: 'storage file-backed RSS after the Put + Get (pages of the executable)', value: streamed.rssFile / MB, unit: 'MB' });
    const phased = resetPeakRss(s.process.pid);

    // The host's restore pattern: many tiny sequential ranged Gets of one packfile (read-ahead cache on).
    const pack = randomBytes(32);
    const packBytes = 64 * MiB;
    await s.host.put(RESOURCE.PACKFILE, pack, generate(packBytes));
    await s.host.get(RESOURCE.PACKFILE, pack, { offset: 0, length: 16 });
    const cpu0 = processUsage(s.process.pid).cpu;
    t0 = performance.now();
    for (let i = 0; i < smallGets; i++) {
      const offset = Math.floor(((i * 7919) % 9973) / 9973 * (packBytes - 1000));
      await s.host.get(RESOURCE.PACKFILE, pack, { offset, length: 720 });
    }
    const wall = (performance.now() - t0) / smallGets;
    const used = processUsage(s.process.pid);
    const cpu = ((used.cpu - cpu0) * 1000) / smallGets;
    figures.push({ name: `small ranged Get round trip (720 B, ${smallGets} sequential)`, value: wall, unit: 'ms', target: '—' });
    figures.push({ name: 'plugin CPU per small ranged Get', value: cpu, unit: 'ms', target: '< 0.4 ms', ok: cpu < 0.4 });
    const smallName = phased ? `64 MiB Put, then ${smallGets} small Gets` : `whole life, ${bytes / MiB} MiB Put + Get then ${smallGets} small Gets`;
    figures.push({ name: `storage peak RSS (${smallName})`, value: used.rss / MB, unit: 'MB' });
    await s.dispose();

    // Importer Open of one large file.
    await mkdir(join(dir, 'src'), { recursive: true });
    const block = randomBytes(MiB);
    const { open } = await import('node:fs/promises');
    const fh = await open(join(dir, 'src', 'big.bin'), 'w');
    for (let w = 0; w < bytes; w += MiB) await fh.write(block, 0, Math.min(MiB, bytes - w));
    await fh.close();
    await writeFile(join(dir, 'src', 'small.txt'), 'x');
    const imp = await launchPlugin({ manifest: MANIFEST, kind: 'importer' });
    await imp.host.init('importer', 'fixture', { location: `fixture://${join(dir, 'src')}` }, { maxConcurrency: 2 });
    t0 = performance.now();
    await imp.host.importAll({ content: () => new Writable({ write: (_c, _e, cb) => cb() }) });
    const openMBs = bytes / 1e6 / ((performance.now() - t0) / 1000);
    figures.push({ name: `Open throughput (${bytes / MiB} MiB file)`, value: openMBs, unit: 'MB/s', target: '≥ 150 MB/s', ok: openMBs >= 150 });
    const imported = processUsage(imp.process.pid);
    figures.push({ name: `importer peak RSS (${bytes / MiB} MiB Open)`, value: imported.rss / MB, unit: 'MB', target: '≤ 120 MB', ok: imported.rss <= 120 * MB });
    figures.push({ name: 'importer file-backed RSS after the Open (pages of the executable)', value: imported.rssFile / MB, unit: 'MB' });
    await imp.dispose();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return figures;
}

/** Formats figures as a Markdown table. */
export function figuresTable(figures: Figure[]): string {
  const rows = figures.map((f) => `| ${f.name} | ${f.value.toFixed(f.value < 10 ? 3 : 1)} ${f.unit} | ${f.target ?? ''} | ${f.ok === undefined ? '' : f.ok ? 'met' : '**missed**'} |`);
  return ['| measure | result | target | |', '|---|---|---|---|', ...rows].join('\n');
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const smoke = smokeMode();
  const figures = await benchSdk({ bytes: Number(process.env.BENCH_BYTES ?? (smoke ? 64 * MiB : GiB)), smallGets: smoke ? 2000 : undefined });
  process.stdout.write(`${figuresTable(figures)}\n`);
  for (const f of figures) printFigure({ integration: 'sdk', measure: f.name, value: f.value, unit: f.unit, ...(f.target && f.target !== '—' ? { target: f.target } : {}) });
}
