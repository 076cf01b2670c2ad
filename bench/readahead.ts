// Read-ahead cache benchmark: the host's restore/check read pattern (PROTOCOL.md §9: one ranged Get at a time, median
// ~720 B, p90 ~97 KB, up to ~5.8 MB, about half in ascending order within a packfile) replayed over 64 MiB packfiles
// through the built s3 executable against Ceph radosgw, with the SDK's read-ahead cache on and off, side by side with
// the raw AWS SDK downloading the same packfiles whole (the practical limit). Two latencies: loopback, and a delay proxy
// adding ~20 ms to every request (like a remote store). Every byte the replays return is compared with the source.
// The replays are driven by the Go host stand-in (bench/go-host: grpc-go over two pipes, like plakar) when Go and
// grpc-go are installed (scripts/install-bench-tools.sh), else by the Node harness, whose http2 client costs more CPU
// per Get than the plugin; every row and figure names the host that drove it.
// Run: npx tsx bench/readahead.ts   (build first: npm run build -- --only s3)
// Environment: READAHEAD_PACKFILES (4), READAHEAD_PACKFILE_MIB (64), READAHEAD_DELAY_MS (20), READAHEAD_SEED (1),
//   READAHEAD_OFF_SAMPLE (0 = replay everything with the cache off; N = only the first N Gets of each packfile with
//   the cache off, the rest extrapolated and labelled so), READAHEAD_DIST (dist).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { CreateBucketCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { objectName } from '../shared/index.ts';
import { launchPlugin, RESOURCE, type LaunchedPlugin } from '../test/harness/index.ts';
import { configFor, radosgw, sdkClient } from '../test/integrations/s3/servers.ts';
import { printFigure, processUsage } from './report.ts';
import { figuresTable, type Figure } from './sdk.ts';
import { goHost, storageExecutable, type GoHost } from './support/go-host.ts';

const ROOT = join(import.meta.dirname, '..');
/** The built s3 package (READAHEAD_DIST overrides `dist/`, e.g. for a build made with `scripts/build.ts --dist`). */
const MANIFEST = join(process.env.READAHEAD_DIST ?? join(ROOT, 'dist'), 's3', 'manifest.yaml');
const MiB = 1024 * 1024;

function env(name: string, fallback: number): number {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : Number(v);
}

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A small seeded PRNG (mulberry32), so every run replays the same ranges. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Quantiles of the host's Get sizes (PROTOCOL.md §9, plakar v1.1.4): 86 B smallest, median 720 B, p90 ~97 KB, ~0.46%
 * over 4 MiB, 5.8 MB largest. Sizes between the points are interpolated on a log scale.
 */
const SIZE_QUANTILES: ReadonlyArray<[number, number]> = [
  [0, 86],
  [0.5, 720],
  [0.9, 97_000],
  [0.99, 1_000_000],
  [0.9954, 4 * MiB],
  [1, 5_800_000],
];

function rangeSize(u: number): number {
  for (let i = 1; i < SIZE_QUANTILES.length; i++) {
    const [q1, s1] = SIZE_QUANTILES[i] as [number, number];
    const [q0, s0] = SIZE_QUANTILES[i - 1] as [number, number];
    if (u <= q1) return Math.round(Math.exp(Math.log(s0) + ((u - q0) / (q1 - q0)) * (Math.log(s1) - Math.log(s0))));
  }
  return 5_800_000;
}

interface Range {
  offset: number;
  length: number;
}

/**
 * The Gets of one packfile: consecutive ranges covering it whole, then shuffled within windows of 16 so that about
 * half of the Gets start after the previous one (the host reads blobs in the order files need them, not in file order).
 */
export function readPattern(packBytes: number, random: () => number): Range[] {
  const ranges: Range[] = [];
  for (let offset = 0; offset < packBytes; ) {
    const length = Math.min(rangeSize(random()), packBytes - offset);
    ranges.push({ offset, length });
    offset += length;
  }
  const WINDOW = 16;
  for (let start = 0; start < ranges.length; start += WINDOW) {
    const end = Math.min(start + WINDOW, ranges.length);
    for (let i = end - 1; i > start; i--) {
      const j = start + Math.floor(random() * (i - start + 1));
      [ranges[i], ranges[j]] = [ranges[j] as Range, ranges[i] as Range];
    }
  }
  return ranges;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] as number;
}

/** Starts bench/support/delay-proxy.ts in its own process (so this process's work cannot stretch its timers). */
async function delayProxy(target: string, ms: number): Promise<{ endpoint: string; close(): Promise<void> }> {
  const tsx = createRequire(import.meta.url).resolve('tsx');
  const child: ChildProcess = spawn(process.execPath, ['--import', tsx, join(import.meta.dirname, 'support', 'delay-proxy.ts'), target, String(ms)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`delay proxy exited with ${code}`)));
    createInterface({ input: child.stdout as Readable }).once('line', resolve);
  });
  return {
    endpoint,
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin?.end();
      await exited;
    },
  };
}

interface Pack {
  mac: Buffer;
  key: string;
  data: Buffer;
  ranges: Range[];
}

interface Result {
  seconds: number;
  gets: number;
  bytes: number;
  /** Plugin CPU per Get (ms), undefined for the raw SDK. */
  cpuPerGet?: number;
  /** The host's own CPU per Get (ms; the Node harness's includes comparing the bytes), undefined for the raw SDK. */
  hostCpuPerGet?: number;
  /** Median wall time of one Get (ms), undefined for the raw SDK. */
  medianGetMs?: number;
  /** Only a sample was replayed; `seconds` is extrapolated from it. */
  extrapolatedFrom?: { gets: number; seconds: number };
}

/** The raw AWS SDK downloading each packfile whole, one after the other, as fast as it can. */
async function rawWhole(sdk: S3Client, bucket: string, packs: Pack[]): Promise<Result> {
  const t0 = performance.now();
  let bytes = 0;
  for (const p of packs) {
    const g = await sdk.send(new GetObjectCommand({ Bucket: bucket, Key: p.key }));
    let n = 0;
    for await (const c of g.Body as AsyncIterable<Buffer>) n += c.length;
    if (n !== p.data.length) throw new Error(`raw download of ${p.key} returned ${n} bytes, expected ${p.data.length}`);
    bytes += n;
  }
  return { seconds: (performance.now() - t0) / 1000, gets: packs.length, bytes };
}

/** Which host drives the replays: the Go stand-in when it is available, else the Node harness. */
type Host = ({ kind: 'go'; go: GoHost; dir: string } | { kind: 'node' }) & { label: string; detail: string };

/** Plugin CPU per Get when every range is already in the cache (the lean Get path alone). */
interface Warm {
  cpuPerGet: number;
  gets: number;
}

/** The Gets of one replay: every range, or the first `sample` of each packfile. */
function selected(packs: Pack[], sample: number): Array<{ pack: Pack; range: Range }> {
  return packs.flatMap((p) => (sample > 0 ? p.ranges.slice(0, sample) : p.ranges).map((range) => ({ pack: p, range })));
}

/** The sampled time scaled to every Get, when only a sample was replayed. */
function complete(packs: Pack[], r: Result): Result {
  const all = packs.reduce((n, p) => n + p.ranges.length, 0);
  if (r.gets === all) return r;
  const allBytes = packs.reduce((n, p) => n + p.data.length, 0);
  return { ...r, seconds: (r.seconds * all) / r.gets, gets: all, bytes: allBytes, extrapolatedFrom: { gets: r.gets, seconds: r.seconds } };
}

/**
 * Replays the read pattern through a freshly spawned s3 executable; `sample` caps the Gets per packfile; with `warm`,
 * the last packfile is then read three more times from the warm cache to measure the lean Get path alone.
 */
async function replay(host: Host, config: Record<string, string>, packs: Pack[], sample: number, warm: boolean): Promise<{ result: Result; warm?: Warm }> {
  return host.kind === 'go' ? replayGo(host, config, packs, sample, warm) : replayNode(config, packs, sample, warm);
}

async function replayGo(host: Extract<Host, { kind: 'go' }>, config: Record<string, string>, packs: Pack[], sample: number, warm: boolean): Promise<{ result: Result; warm?: Warm }> {
  const line = (p: Pack, r: Range): string => `${p.mac.toString('hex')} ${RESOURCE.PACKFILE} ${r.offset} ${r.length}\n`;
  const gets = join(host.dir, `gets-${sample}.txt`);
  await writeFile(gets, selected(packs, sample).map(({ pack, range }) => line(pack, range)).join(''));
  const steps: Parameters<GoHost['run']>[0]['steps'] = [
    { op: 'open' },
    { op: 'replay', gets, verify: Object.fromEntries(packs.map((p) => [p.mac.toString('hex'), packPath(host, p)])) },
  ];
  if (warm) {
    const last = packs[packs.length - 1] as Pack;
    const warmGets = join(host.dir, 'gets-warm.txt');
    const once = last.ranges.map((r) => line(last, r)).join('');
    await writeFile(warmGets, once.repeat(3));
    steps.push({ op: 'replay', name: 'warm', gets: warmGets });
  }
  const out = await host.go.run({ ...storageExecutable(MANIFEST), proto: 's3', config, steps });
  const [run, again] = [out.steps[1], out.steps[2]];
  if (!run) throw new Error('go-host returned no replay result');
  if (run.verified !== run.calls) throw new Error(`go-host verified ${run.verified ?? 0} of ${run.calls} Gets`);
  const result = complete(packs, {
    seconds: run.seconds,
    gets: run.calls,
    bytes: run.bytes,
    cpuPerGet: (run.pluginCpu * 1000) / run.calls,
    hostCpuPerGet: (run.hostCpu * 1000) / run.calls,
    medianGetMs: run.latencyMs?.p50,
  });
  return { result, warm: again ? { cpuPerGet: (again.pluginCpu * 1000) / again.calls, gets: again.calls } : undefined };
}

function packPath(host: Extract<Host, { kind: 'go' }>, p: Pack): string {
  return join(host.dir, `${p.mac.toString('hex')}.pack`);
}

async function replayNode(config: Record<string, string>, packs: Pack[], sample: number, warm: boolean): Promise<{ result: Result; warm?: Warm }> {
  const plugin = await launchPlugin({ manifest: MANIFEST, kind: 'storage' });
  try {
    await plugin.host.init('storage', 's3', config);
    await plugin.host.open();
    const pluginCpu0 = processUsage(plugin.process.pid).cpu;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let gets = 0;
    let bytes = 0;
    const times: number[] = [];
    for (const { pack: p, range: r } of selected(packs, sample)) {
      const g0 = performance.now();
      const got = await plugin.host.get(RESOURCE.PACKFILE, p.mac, r);
      times.push(performance.now() - g0);
      if (!got.equals(p.data.subarray(r.offset, r.offset + r.length))) {
        throw new Error(`Get ${r.offset}+${r.length} of packfile ${p.mac.toString('hex').slice(0, 8)} returned different bytes`);
      }
      gets++;
      bytes += got.length;
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const result = complete(packs, {
      seconds,
      gets,
      bytes,
      cpuPerGet: ((processUsage(plugin.process.pid).cpu - pluginCpu0) * 1000) / gets,
      hostCpuPerGet: (cpu.user + cpu.system) / 1000 / gets,
      medianGetMs: percentile(times, 0.5),
    });
    return { result, warm: warm ? await warmCpu(plugin, packs) : undefined };
  } finally {
    await plugin.dispose();
  }
}

/** Plugin CPU per Get when every range is already in the cache (the lean Get path alone). */
async function warmCpu(plugin: LaunchedPlugin, packs: Pack[]): Promise<Warm> {
  const p = packs[packs.length - 1] as Pack;
  const cpu0 = processUsage(plugin.process.pid).cpu;
  let gets = 0;
  for (let round = 0; round < 3; round++) {
    for (const r of p.ranges) {
      await plugin.host.get(RESOURCE.PACKFILE, p.mac, r);
      gets++;
    }
  }
  return { cpuPerGet: ((processUsage(plugin.process.pid).cpu - cpu0) * 1000) / gets, gets };
}

/** The Go host when it is available (with a scratch directory for the packfile copies), else the Node harness. */
async function pickHost(): Promise<Host> {
  const go = await goHost();
  if (!go.available) {
    say(`host: Node harness (test/harness), because the Go host is not available: ${go.reason}`);
    return { kind: 'node', label: 'Node host', detail: `Node harness (test/harness; the Go host is not available: ${go.reason})` };
  }
  say(`host: ${go.label} (bench/go-host)`);
  const dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kts-readahead-'));
  return { kind: 'go', go, label: 'Go host', detail: `${go.label}, bench/go-host`, dir };
}

/** Runs the read-ahead benchmark and returns its table and figures. */
export async function benchReadAhead(
  options: { packfiles?: number; packMiB?: number; delayMs?: number; seed?: number; offSample?: number } = {},
): Promise<{ table: string; figures: Figure[] }> {
  if (!existsSync(MANIFEST)) throw new Error(`${MANIFEST} missing: run npm run build -- --only s3 first`);
  const count = options.packfiles ?? 4;
  const packBytes = (options.packMiB ?? 64) * MiB;
  const delayMs = options.delayMs ?? 20;
  const offSample = options.offSample ?? 0;
  const random = prng(options.seed ?? 1);

  // A private radosgw (tcp_nodelay on: small answers at LAN speed), started again once if the one-node Ceph start races.
  const rgw = await radosgw({ own: true });
  const server = { ...rgw, stop: async () => undefined };
  const direct = sdkClient(server);
  const bucket = `bench-readahead-${Date.now().toString(36)}`;
  const prefix = 'repo';
  const rows: string[] = [];
  const figures: Figure[] = [];
  const host = await pickHost();
  try {
    await direct.send(new CreateBucketCommand({ Bucket: bucket }));
    // Seed: a repository with `count` packfiles of random bytes, written with the raw SDK in the repository layout.
    const packs: Pack[] = [];
    for (let i = 0; i < count; i++) {
      const mac = randomBytes(32);
      const data = randomBytes(packBytes);
      const key = `${prefix}/${objectName('packfile', mac)}`;
      await new Upload({ client: direct, params: { Bucket: bucket, Key: key, Body: data }, partSize: 16 * MiB, queueSize: 4 }).done();
      packs.push({ mac, key, data, ranges: readPattern(packBytes, random) });
    }
    // A check walks packfiles in MAC order; restores read them in the order the snapshot needs them.
    packs.sort((a, b) => Buffer.compare(a.mac, b.mac));
    // The Go host compares every reply with a local copy of the packfile, loaded before its clock starts.
    if (host.kind === 'go') for (const p of packs) await writeFile(packPath(host, p), p.data);
    const setup = await launchPlugin({ manifest: MANIFEST, kind: 'storage' });
    await setup.host.init('storage', 's3', configFor(server, bucket, prefix));
    await setup.host.create(Buffer.from('_KLOSET_bench_readahead'));
    await setup.dispose();

    const sizes = packs.flatMap((p) => p.ranges.map((r) => r.length));
    const ascending = packs.reduce((n, p) => n + p.ranges.filter((r, i) => i > 0 && r.offset > (p.ranges[i - 1] as Range).offset).length, 0);
    say(
      `read pattern: ${sizes.length} Gets over ${count} × ${packBytes / MiB} MiB packfiles; size median ${percentile(sizes, 0.5)} B, ` +
        `p90 ${percentile(sizes, 0.9)} B, max ${Math.max(...sizes)} B; ${((100 * ascending) / (sizes.length - count)).toFixed(0)}% ascending`,
    );

    rows.push(
      '| latency | read path | seconds | MB/s | ratio vs raw | speed-up vs cache off | median Get | plugin CPU per Get | host CPU per Get |',
      '|---|---|---|---|---|---|---|---|---|',
    );
    let warm: Warm | undefined;
    for (const latency of [0, delayMs]) {
      const proxy = latency > 0 ? await delayProxy(rgw.endpoint, latency) : undefined;
      const target = { ...server, endpoint: proxy?.endpoint ?? rgw.endpoint };
      const sdk = sdkClient(target);
      try {
        const label = latency > 0 ? `+${latency} ms per request` : 'loopback';
        say(`${label}: raw AWS SDK whole downloads…`);
        const raw = await rawWhole(sdk, bucket, packs);
        say(`${label}: replay with the cache on…`);
        const cacheOn = await replay(host, configFor(target, bucket, prefix), packs, 0, latency === 0);
        const on = cacheOn.result;
        warm ??= cacheOn.warm;
        say(`${label}: replay with the cache off${offSample > 0 ? ` (first ${offSample} Gets of each packfile)` : ''}…`);
        const off = (await replay(host, configFor(target, bucket, prefix, { cache: 'false' }), packs, offSample, false)).result;
        const mbps = (r: Result): string => (r.bytes / 1e6 / r.seconds).toFixed(1);
        const cpu = (r: Result): string => (r.cpuPerGet === undefined ? '—' : `${r.cpuPerGet.toFixed(3)} ms`);
        const hostCpu = (r: Result): string => (r.hostCpuPerGet === undefined ? '—' : `${r.hostCpuPerGet.toFixed(3)} ms`);
        const median = (r: Result): string => (r.medianGetMs === undefined ? '—' : `${r.medianGetMs.toFixed(2)} ms`);
        const offNote = off.extrapolatedFrom
          ? ` (**extrapolated** from ${off.extrapolatedFrom.gets} of ${off.gets} Gets in ${off.extrapolatedFrom.seconds.toFixed(1)} s)`
          : '';
        rows.push(
          `| ${label} | raw AWS SDK, ${count} whole GetObject | ${raw.seconds.toFixed(2)} | ${mbps(raw)} | 1.00 | — | — | — | — |`,
          `| ${label} | s3 executable via ${host.label}, cache on (${on.gets} ranged Gets) | ${on.seconds.toFixed(2)} | ${mbps(on)} | ${(on.seconds / raw.seconds).toFixed(2)} | ${(off.seconds / on.seconds).toFixed(1)}× | ${median(on)} | ${cpu(on)} | ${hostCpu(on)} |`,
          `| ${label} | s3 executable via ${host.label}, cache off (${off.gets} ranged Gets${offNote}) | ${off.seconds.toFixed(2)} | ${mbps(off)} | ${(off.seconds / raw.seconds).toFixed(2)} | 1.0× | ${median(off)} | ${cpu(off)} | ${hostCpu(off)} |`,
        );
        const rate = (r: Result): number => r.bytes / 1e6 / r.seconds;
        const what = `restore read pattern, ${count} × ${packBytes / MiB} MiB packfiles, ${label}, ${host.label}`;
        printFigure({ integration: 's3', measure: `${what}, read-ahead cache on`, value: rate(on), unit: 'MB/s', limit: rate(raw), target: 'within 2× of raw' });
        printFigure({
          integration: 's3',
          measure: `${what}, cache off${off.extrapolatedFrom ? ' (extrapolated from a sample)' : ''}`,
          value: rate(off),
          unit: 'MB/s',
          limit: rate(raw),
          target: latency > 0 ? 'cache on ≥ 10× faster' : undefined,
        });
        printFigure({ integration: 's3', measure: `plugin CPU per Get, cache on, ${label} (downloads included), ${host.label}`, value: on.cpuPerGet as number, unit: 'ms', target: '< 0.4 ms' });
        printFigure({ integration: 's3', measure: `host CPU per Get, cache on, ${label}, ${host.label}`, value: on.hostCpuPerGet as number, unit: 'ms' });
        const ratio = on.seconds / raw.seconds;
        figures.push({ name: `cache on vs raw whole download, ${label}, ${host.label} (time ratio)`, value: ratio, unit: '×', target: '≤ 2', ok: ratio <= 2 });
        const speedup = off.seconds / on.seconds;
        figures.push({
          name: `speed-up of the cache vs cache off, ${label}, ${host.label}${off.extrapolatedFrom ? ' (cache off extrapolated)' : ''}`,
          value: speedup,
          unit: '×',
          target: latency > 0 ? '≥ 10' : undefined,
          ok: latency > 0 ? speedup >= 10 : undefined,
        });
        figures.push({ name: `plugin CPU per Get, cache on, ${label} (downloads included), ${host.label}`, value: on.cpuPerGet as number, unit: 'ms', target: '< 0.4 ms', ok: (on.cpuPerGet as number) < 0.4 });
        figures.push({ name: `host CPU per Get, cache on, ${label}, ${host.label}`, value: on.hostCpuPerGet as number, unit: 'ms' });
      } finally {
        sdk.destroy();
        await proxy?.close();
      }
    }
    if (warm) {
      printFigure({ integration: 's3', measure: `plugin CPU per Get served from a warm read-ahead cache, ${host.label}`, value: warm.cpuPerGet, unit: 'ms', target: '< 0.4 ms' });
      figures.push({ name: `plugin CPU per Get served from a warm cache (${warm.gets} Gets), ${host.label}`, value: warm.cpuPerGet, unit: 'ms', target: '< 0.4 ms', ok: warm.cpuPerGet < 0.4 });
    }
  } finally {
    direct.destroy();
    await rgw.stop();
    if (host.kind === 'go') await rm(host.dir, { recursive: true, force: true });
  }
  return { table: `Replays driven by the ${host.detail}.\n\n${rows.join('\n')}`, figures };
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const { table, figures } = await benchReadAhead({
    packfiles: env('READAHEAD_PACKFILES', 4),
    packMiB: env('READAHEAD_PACKFILE_MIB', 64),
    delayMs: env('READAHEAD_DELAY_MS', 20),
    seed: env('READAHEAD_SEED', 1),
    offSample: env('READAHEAD_OFF_SAMPLE', 0),
  });
  process.stdout.write(`${table}\n\n${figuresTable(figures)}\n`);
}
