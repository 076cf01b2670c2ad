// onedrive benchmark against the Graph emulator, with each connector spawned over two pipes like Plakar does:
// a large file restored and backed up (throughput, connector peak RSS), a 2 GiB file under 200 MB of connector memory,
// and a repository of many objects (Put, List, ranged Gets).
// Run: npx tsx bench/onedrive.ts [--big-mib 300] [--huge-mib 2048] [--objects 5000]
//   ONEDRIVE_BENCH_EXE=dist/onedrive/onedrive uses the built executable instead of the TypeScript sources.
//   --smoke (or KLOSET_TS_BENCH_SMOKE=1) checks that everything runs with small sizes (16 MiB, 64 MiB, 100 objects).
// The headline figures are printed as `BENCH` lines too (bench/report.ts); no raw Graph client runs beside them.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { launchPlugin, RESOURCE, type LaunchedPlugin, type WireRecord } from '../test/harness/index.ts';
import { startGraphEmulator, type GraphEmulator } from '../test/servers/graph-emulator.ts';
import { MB, mbps, printFigure, processUsage, sizeArg } from './report.ts';

const ROOT = join(import.meta.dirname, '..');
const MiB = 1024 * 1024;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Progress notes go to stderr; the figures are printed as one table at the end. */
function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** One row of the result table. */
interface Row {
  measure: string;
  result: string;
  target: string;
}
const rows: Row[] = [];
function row(measure: string, result: string, target = '—'): void {
  rows.push({ measure, result, target });
  note(`  ${measure}: ${result}`);
}

/** Spawns one connector (built executable when ONEDRIVE_BENCH_EXE is set, else the sources through tsx) and sends Init. */
async function connector(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>): Promise<LaunchedPlugin> {
  const exe = process.env.ONEDRIVE_BENCH_EXE;
  const p = exe
    ? await launchPlugin({ executable: join(ROOT, exe), args: [kind] })
    : await launchPlugin({ executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/onedrive'), kind] });
  await p.host.init(kind, 'onedrive', config, { maxConcurrency: 4 });
  return p;
}

/** Bytes of a synthetic file: a fixed random block repeated with a counter, so it neither compresses nor costs CPU. */
function* synthetic(size: number): Generator<Uint8Array> {
  const block = randomBytes(MiB);
  for (let sent = 0, n = 0; sent < size; sent += MiB, n++) {
    const piece = Buffer.from(block.subarray(0, Math.min(MiB, size - sent)));
    piece.writeUInt32LE(n, 0);
    yield piece;
  }
}

async function restoreBig(emu: GraphEmulator, folder: string, size: number): Promise<{ seconds: number; rss: number; sha256: string; cpu: number }> {
  const hash = createHash('sha256');
  const p = await connector('exporter', emu.config(`onedrive://${folder}`, { chunk_size: '10MiB' }));
  try {
    const cpuAtInit = processUsage(p.process.pid).cpu;
    const started = performance.now();
    const out = await p.host.exportTree(
      [
      { path: '/', info: { name: 'bench', mode: 0x800001ed } },
      {
        path: '/big.bin',
        info: { name: 'big.bin', mode: 0o644, size, modTime: { seconds: 1_700_000_000, nanos: 0 } },
        content: async function* () {
          for (const piece of synthetic(size)) {
            hash.update(piece);
            yield piece;
          }
        },
      },
      ],
      { endTimeoutMs: 600_000 },
    );
    const seconds = (performance.now() - started) / 1000;
    if (out.itemErrors.length > 0) throw new Error(`restore failed: ${out.itemErrors[0]?.error}`);
    const used = processUsage(p.process.pid);
    return { seconds, rss: used.rss, sha256: hash.digest('hex'), cpu: used.cpu - cpuAtInit };
  } finally {
    await p.dispose();
  }
}

async function backupBig(emu: GraphEmulator, folder: string): Promise<{ seconds: number; rss: number; sha256: string; bytes: number; cpu: number }> {
  const p = await connector('importer', emu.config(`onedrive://${folder}`));
  try {
    const cpuAtInit = processUsage(p.process.pid).cpu;
    const hash = createHash('sha256');
    let bytes = 0;
    const started = performance.now();
    const out = await p.host.importAll({
      maxConcurrency: 2,
      content: (r: WireRecord) =>
        !r.isXattr && r.pathname.endsWith('big.bin')
          ? new Writable({
              write(chunk: Buffer, _e, cb) {
                hash.update(chunk);
                bytes += chunk.length;
                cb();
              },
            })
          : undefined,
    });
    const seconds = (performance.now() - started) / 1000;
    if (out.itemErrors.length > 0) throw new Error(`backup failed: ${out.itemErrors[0]?.message}`);
    const used = processUsage(p.process.pid);
    return { seconds, rss: used.rss, sha256: hash.digest('hex'), bytes, cpu: used.cpu - cpuAtInit };
  } finally {
    await p.dispose();
  }
}

async function bigFile(emu: GraphEmulator, mib: number, rssLimit?: number): Promise<void> {
  const size = mib * MiB;
  const folder = `/Bench/${mib}MiB`;
  note(`${mib} MiB file: restore, then backup…`);
  const r = await restoreBig(emu, folder, size);
  row(`restore ${mib} MiB (upload session, 10 MiB fragments)`, `${r.seconds.toFixed(1)} s, ${(mib / r.seconds).toFixed(1)} MiB/s`);
  row(`exporter CPU per GiB restored, after Init (${mib} MiB)`, `${((r.cpu / mib) * 1024).toFixed(1)} s`);
  const b = await backupBig(emu, folder);
  row(`backup ${mib} MiB (verified ranged download)`, `${b.seconds.toFixed(1)} s, ${(mib / b.seconds).toFixed(1)} MiB/s`);
  row(`importer CPU per GiB backed up, after Init (${mib} MiB)`, `${((b.cpu / mib) * 1024).toFixed(1)} s`);
  if (b.sha256 !== r.sha256 || b.bytes !== size) throw new Error('the backed-up bytes differ from the restored ones');
  const limit = rssLimit !== undefined ? `< ${(rssLimit / MiB).toFixed(0)} MiB` : '—';
  row(`exporter peak RSS (${mib} MiB restore)`, `${(r.rss / MiB).toFixed(0)} MiB`, limit);
  row(`importer peak RSS (${mib} MiB backup)`, `${(b.rss / MiB).toFixed(0)} MiB`, limit);
  printFigure({ integration: 'onedrive', measure: `exporter restore throughput (${mib} MiB, 10 MiB fragments)`, value: mbps(size, r.seconds), unit: 'MB/s' });
  printFigure({ integration: 'onedrive', measure: `importer backup throughput (${mib} MiB, verified ranged download)`, value: mbps(size, b.seconds), unit: 'MB/s' });
  const target = rssLimit !== undefined ? { target: `< ${(rssLimit / 1e6).toFixed(0)} MB` } : {};
  printFigure({ integration: 'onedrive', measure: `exporter peak RSS (${mib} MiB restore)`, value: r.rss / 1e6, unit: 'MB', ...target });
  printFigure({ integration: 'onedrive', measure: `importer peak RSS (${mib} MiB backup)`, value: b.rss / 1e6, unit: 'MB', ...target });
  if (rssLimit !== undefined && Math.max(r.rss, b.rss) >= rssLimit) process.exitCode = 1;
}

async function repository(emu: GraphEmulator, objects: number): Promise<void> {
  const p = await connector('storage', emu.config('onedrive:///Bench/repo'));
  try {
    await p.host.create(Buffer.from('_KLOSET_bench'));
    const macs: Buffer[] = [];
    let t = performance.now();
    let inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < objects; i++) {
      const mac = randomBytes(32);
      macs.push(mac);
      inFlight.push(p.host.put(RESOURCE.PACKFILE, mac, randomBytes(1024 + (i % 16) * 1024)));
      // The host runs at most two Puts at once (PROTOCOL.md §9).
      if (inFlight.length === 2) {
        await Promise.all(inFlight);
        inFlight = [];
      }
    }
    await Promise.all(inFlight);
    let s = (performance.now() - t) / 1000;
    row(`repository: ${objects} Puts (1–16 KiB, 2 at a time)`, `${s.toFixed(1)} s, ${(objects / s).toFixed(0)} objects/s`);
    printFigure({ integration: 'onedrive', measure: 'storage Put of 1–16 KiB packfiles, 2 at a time', value: objects / s, unit: 'objects/s' });
    t = performance.now();
    const listed = await p.host.list(RESOURCE.PACKFILE);
    s = (performance.now() - t) / 1000;
    row(`repository: List of ${listed.length} packfiles (256 buckets)`, `${s.toFixed(2)} s`);
    if (listed.length !== objects) throw new Error(`listed ${listed.length} of ${objects}`);
    t = performance.now();
    const gets = Math.min(1000, objects);
    for (let i = 0; i < gets; i++) await p.host.get(RESOURCE.PACKFILE, macs[i] as Buffer, { offset: 16, length: 512 });
    s = (performance.now() - t) / 1000;
    row(`repository: ${gets} ranged Gets of distinct packfiles, one at a time (cache on)`, `${((s / gets) * 1000).toFixed(1)} ms each`);
    printFigure({ integration: 'onedrive', measure: 'storage ranged Get of 512 B of a distinct packfile, one at a time (cache on)', value: (s / gets) * 1000, unit: 'ms' });
    const used = processUsage(p.process.pid);
    row(`repository: storage peak RSS / CPU`, `${(used.rss / MiB).toFixed(0)} MiB / ${used.cpu.toFixed(1)} s`);
    row(`repository: HTTP requests to the emulator (whole run so far)`, `${emu.count()}`);
  } finally {
    await p.dispose();
  }
}

async function main(): Promise<void> {
  const bigMib = sizeArg('big-mib', 300, 16);
  const hugeMib = sizeArg('huge-mib', 2048, 64);
  const objects = sizeArg('objects', 5000, 100);
  const emu = await startGraphEmulator();
  const os = await import('node:os');
  const loadBefore = os.loadavg()[0] ?? 0;
  note(`onedrive bench: Graph emulator at ${emu.url}`);
  try {
    if (bigMib > 0) await bigFile(emu, bigMib);
    if (hugeMib > 0) await bigFile(emu, hugeMib, 200 * MB);
    if (objects > 0) await repository(emu, objects);
  } finally {
    await emu.close();
  }
  say(`onedrive through the Graph emulator, connectors spawned over two pipes (${process.env.ONEDRIVE_BENCH_EXE ? `executable ${process.env.ONEDRIVE_BENCH_EXE}` : 'sources through tsx'})`);
  say(`bench process on Node ${process.version}, ${os.availableParallelism()} CPUs, load average ${loadBefore.toFixed(1)} at start and ${(os.loadavg()[0] ?? 0).toFixed(1)} at the end`);
  say('');
  say('| measure | result | target |');
  say('|---|---|---|');
  for (const r of rows) say(`| ${r.measure} | ${r.result} | ${r.target} |`);
}

if (existsSync(join(ROOT, 'integrations/onedrive/index.ts'))) await main();
