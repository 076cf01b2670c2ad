// s3 benchmark against Ceph radosgw, each connector spawned over two pipes like Plakar does, side by side with the raw
// AWS SDK doing the same transfers directly (the practical limit): storage Put/Get throughput and ratio, small-object
// Puts, importer and exporter objects/s, and the connector's peak RSS while a huge object is imported and exported.
// Storage Puts and Gets are driven by the Go host stand-in (bench/go-host: grpc-go over two pipes, like plakar) when Go
// and grpc-go are installed (scripts/install-bench-tools.sh), else by the Node harness; the figures name the host.
// Importer and exporter figures always go through the Node harness (test/harness).
// Run: npx tsx bench/s3.ts [--big-mib 256] [--objects 3000] [--huge-mib 2048] [--rounds 2]
//   (build first: npm run build -- --only s3). --huge-mib 0 skips the memory case.
//   --smoke (or KLOSET_TS_BENCH_SMOKE=1) checks that everything runs with small sizes (16 MiB, 100 objects, 64 MiB,
//   one round) in about a minute; its figures say nothing about the targets.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createLimiter } from '../shared/index.ts';
import { launchPlugin, RESOURCE, type LaunchedPlugin } from '../test/harness/index.ts';
import { decodeMessage, encodeMessage } from '../test/harness/messages.ts';
import { startRadosgw } from '../test/servers/radosgw.ts';
import { restoreEntries } from '../test/integrations/s3/bucket-fixture.ts';
import { configFor, sdkClient } from '../test/integrations/s3/servers.ts';
import { MB, printFigure, processUsage } from './report.ts';
import { figuresTable, type Figure } from './sdk.ts';
import { goHost, storageExecutable, type GoHost, type GoHostOutput } from './support/go-host.ts';

const ROOT = join(import.meta.dirname, '..');
const MANIFEST = join(ROOT, 'dist', 's3', 'manifest.yaml');
const MiB = 1024 * 1024;

/** Small sizes that only check the benchmark runs. */
const SMOKE = process.argv.includes('--smoke') || process.env.KLOSET_TS_BENCH_SMOKE === '1';

function arg(name: string, fallback: number, smoke: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0) {
    const v = Number(process.argv[i + 1]);
    if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} expects a number, got ${JSON.stringify(process.argv[i + 1])}`);
    return v;
  }
  return SMOKE ? smoke : fallback;
}

/** The 1-minute load average (figures taken on a busy machine are pessimistic). */
function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Bytes of a synthetic object: a fixed random block with a counter, so it neither compresses nor costs CPU. */
async function* synthetic(size: number): AsyncGenerator<Buffer> {
  const block = randomBytes(MiB);
  for (let sent = 0, n = 0; sent < size; sent += MiB, n++) {
    const piece = Buffer.from(block.subarray(0, Math.min(MiB, size - sent)));
    piece.writeUInt32LE(n, 0);
    yield piece;
  }
}

async function connector(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>): Promise<LaunchedPlugin> {
  const p = await launchPlugin({ manifest: MANIFEST, kind });
  await p.host.init(kind, 's3', config, kind === 'storage' ? undefined : { maxConcurrency: 4 });
  return p;
}

async function seconds<T>(fn: () => Promise<T>): Promise<{ value: T; s: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, s: (performance.now() - t0) / 1000 };
}

const best = (xs: number[]): number => Math.max(...xs);

/** The Go host when available (else undefined: the Node harness drives storage), said once on stderr. */
async function storageHost(): Promise<{ go?: GoHost; label: string }> {
  const go = await goHost();
  if (go.available) {
    say(`storage host: ${go.label} (bench/go-host)`);
    return { go, label: 'Go host' };
  }
  say(`storage host: Node harness (test/harness), because the Go host is not available: ${go.reason}`);
  return { label: 'Node host' };
}

/** Runs a storage job through the Go host on a fresh repository (Init, Create, then `steps`). */
async function goStorage(go: GoHost, config: Record<string, string>, steps: Parameters<GoHost['run']>[0]['steps']): Promise<GoHostOutput> {
  return go.run({ ...storageExecutable(MANIFEST), proto: 's3', config, steps: [{ op: 'create', config: '_KLOSET_bench' }, ...steps] });
}

/** Storage Put/Get of one big object, through the executable and with the raw SDK (same part size and concurrency). */
async function bigTransfers(
  sdk: S3Client,
  rgwConfig: (bucket: string, prefix: string) => Record<string, string>,
  bytes: number,
  rounds: number,
  host: { go?: GoHost; label: string },
): Promise<Figure[]> {
  const bucket = `bench-big-${Date.now().toString(36)}`;
  await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
  const raw = { put: [] as number[], get: [] as number[] };
  const plugin = { put: [] as number[], get: [] as number[] };
  // Plugin and host CPU seconds per GB moved (Go host only: it measures both per step).
  const cpu = { putPlugin: [] as number[], getPlugin: [] as number[], putHost: [] as number[], getHost: [] as number[] };
  let goRss = 0;
  const store = host.go ? undefined : await connector('storage', rgwConfig(bucket, 'repo'));
  await store?.host.create(Buffer.from('_KLOSET_bench'));
  for (let r = 0; r < rounds; r++) {
    const key = `raw/${r}`;
    const up = await seconds(() =>
      new Upload({ client: sdk, params: { Bucket: bucket, Key: key, Body: Readable.from(synthetic(bytes)) }, partSize: 8 * MiB, queueSize: 4 }).done(),
    );
    raw.put.push(bytes / 1e6 / up.s);
    const down = await seconds(async () => {
      const g = await sdk.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      let n = 0;
      for await (const c of g.Body as AsyncIterable<Buffer>) n += c.length;
      return n;
    });
    raw.get.push(bytes / 1e6 / down.s);
    await sdk.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));

    if (host.go) {
      // One instance per round on its own prefix: Init, Create, Put, Get (whole), Delete, like the Node path below.
      const out = await goStorage(host.go, rgwConfig(bucket, `repo${r}`), [
        { op: 'put', count: 1, size: bytes, concurrency: 1 },
        { op: 'get', concurrency: 1 },
        { op: 'delete' },
      ]);
      const [, put, get] = out.steps;
      if (!put || !get) throw new Error('go-host returned no put/get result');
      plugin.put.push(put.bytes / 1e6 / put.seconds);
      plugin.get.push(get.bytes / 1e6 / get.seconds);
      cpu.putPlugin.push((put.pluginCpu * 1e9) / put.bytes);
      cpu.getPlugin.push((get.pluginCpu * 1e9) / get.bytes);
      cpu.putHost.push((put.hostCpu * 1e9) / put.bytes);
      cpu.getHost.push((get.hostCpu * 1e9) / get.bytes);
      goRss = Math.max(goRss, out.plugin.peakRssBytes);
    } else if (store) {
      const mac = randomBytes(32);
      const put = await seconds(() => store.host.put(RESOURCE.PACKFILE, mac, synthetic(bytes)));
      plugin.put.push(bytes / 1e6 / put.s);
      const get = await seconds(async () => {
        const call = await store.host.connection.serverStream('/store.Store/Get', encodeMessage('store.GetRequest', { mac, type: RESOURCE.PACKFILE }));
        let n = 0;
        for (;;) {
          const msg = await call.read();
          if (msg === undefined) break;
          n += (decodeMessage('store.GetResponse', msg).chunk as Uint8Array).length;
        }
        if (n !== bytes) throw new Error(`Get returned ${n} bytes, expected ${bytes}`);
      });
      plugin.get.push(bytes / 1e6 / get.s);
      await store.host.delete(RESOURCE.PACKFILE, mac);
    }
    const cpuNote = host.go
      ? ` (plugin CPU ${cpu.putPlugin[r]?.toFixed(2)} / ${cpu.getPlugin[r]?.toFixed(2)} s per GB, host ${cpu.putHost[r]?.toFixed(2)} / ${cpu.getHost[r]?.toFixed(2)})`
      : '';
    say(
      `round ${r + 1}: raw put ${raw.put[r]?.toFixed(1)} get ${raw.get[r]?.toFixed(1)} MB/s; s3 via ${host.label} put ${plugin.put[r]?.toFixed(1)} get ${plugin.get[r]?.toFixed(1)} MB/s${cpuNote}`,
    );
  }
  const rss = store ? processUsage(store.process.pid).rss : goRss;
  await store?.dispose();
  const label = `${bytes / MiB} MiB`;
  const putRatio = best(plugin.put) / best(raw.put);
  const getRatio = best(plugin.get) / best(raw.get);
  const least = (xs: number[]): number => Math.min(...xs);
  printFigure({ integration: 's3', measure: `storage Put throughput (${bytes / MiB} MiB), ${host.label}`, value: best(plugin.put), unit: 'MB/s', limit: best(raw.put), target: 'ratio ≥ 0.9' });
  printFigure({ integration: 's3', measure: `storage Get throughput (${bytes / MiB} MiB), ${host.label}`, value: best(plugin.get), unit: 'MB/s', limit: best(raw.get), target: 'ratio ≥ 0.9' });
  const cpuFigures: Figure[] = host.go
    ? [
        { name: `s3 storage Put, plugin CPU per GB stored (${label}, ${host.label})`, value: least(cpu.putPlugin), unit: 's' },
        { name: `s3 storage Put, host CPU per GB stored (${label}, ${host.label})`, value: least(cpu.putHost), unit: 's' },
        { name: `s3 storage Get, plugin CPU per GB read (${label}, ${host.label})`, value: least(cpu.getPlugin), unit: 's' },
        { name: `s3 storage Get, host CPU per GB read (${label}, ${host.label})`, value: least(cpu.getHost), unit: 's' },
      ]
    : [];
  return [
    { name: `raw AWS SDK Upload (${label}, 8 MiB × 4)`, value: best(raw.put), unit: 'MB/s' },
    { name: `s3 storage Put through the executable (${label}, ${host.label})`, value: best(plugin.put), unit: 'MB/s' },
    { name: `Put ratio (s3 via ${host.label} / raw SDK)`, value: putRatio, unit: '×', target: '≥ 0.9', ok: putRatio >= 0.9 },
    { name: `raw AWS SDK GetObject (${label})`, value: best(raw.get), unit: 'MB/s' },
    { name: `s3 storage Get through the executable (${label}, ${host.label})`, value: best(plugin.get), unit: 'MB/s' },
    { name: `Get ratio (s3 via ${host.label} / raw SDK)`, value: getRatio, unit: '×', target: '≥ 0.9', ok: getRatio >= 0.9 },
    ...cpuFigures,
    { name: `storage peak RSS (big Put + Get, ${host.label})`, value: rss / MB, unit: 'MB', target: '≤ 200 MB', ok: rss <= 200 * MB },
  ];
}

/** Many small packfiles, two Puts at a time like the host, against the same PUTs from the raw SDK. */
async function smallPuts(
  sdk: S3Client,
  rgwConfig: (bucket: string, prefix: string) => Record<string, string>,
  count: number,
  host: { go?: GoHost; label: string },
): Promise<Figure[]> {
  const bucket = `bench-small-${Date.now().toString(36)}`;
  await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
  const sizes = Array.from({ length: 7 }, (_, k) => 64 * 1024 + k * 4096);
  const bodies = Array.from({ length: count }, (_, i) => randomBytes(sizes[i % 7] as number));
  const two = createLimiter(2);
  const raw = await seconds(() =>
    Promise.all(bodies.map((b, i) => two(() => sdk.send(new PutObjectCommand({ Bucket: bucket, Key: `raw/${i}`, Body: b, ContentLength: b.length }))))),
  );
  let pluginSeconds: number;
  if (host.go) {
    const out = await goStorage(host.go, rgwConfig(bucket, 'repo'), [{ op: 'put', count, size: 0, sizes, concurrency: 2 }]);
    pluginSeconds = out.steps[1]?.seconds ?? NaN;
  } else {
    const store = await connector('storage', rgwConfig(bucket, 'repo'));
    await store.host.create(Buffer.from('_KLOSET_bench'));
    pluginSeconds = (await seconds(() => Promise.all(bodies.map((b) => two(() => store.host.put(RESOURCE.PACKFILE, randomBytes(32), b)))))).s;
    await store.dispose();
  }
  const ratio = count / pluginSeconds / (count / raw.s);
  printFigure({ integration: 's3', measure: `storage Put of ${count} × ~64 KiB, 2 at a time, ${host.label}`, value: count / pluginSeconds, unit: 'objects/s', limit: count / raw.s, target: 'ratio ≥ 0.9' });
  return [
    { name: `raw AWS SDK PutObject, ${count} × ~64 KiB, 2 at a time`, value: count / raw.s, unit: 'objects/s' },
    { name: `s3 storage Put, ${count} × ~64 KiB, 2 at a time, ${host.label}`, value: count / pluginSeconds, unit: 'objects/s' },
    { name: `small Put ratio (s3 via ${host.label} / raw SDK)`, value: ratio, unit: '×', target: '≥ 0.9', ok: ratio >= 0.9 },
  ];
}

/** Importer and exporter objects/s over a bucket of `count` small objects with metadata. */
async function objectsPerSecond(sdk: S3Client, rgwConfig: (bucket: string, prefix: string) => Record<string, string>, count: number): Promise<Figure[]> {
  const bucket = `bench-objs-${Date.now().toString(36)}`;
  await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
  const limit = createLimiter(32);
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      limit(() =>
        sdk.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: `src/d${i % 10}/o${i}.txt`,
            Body: `object ${i}`,
            ContentType: 'text/plain',
            Metadata: { i: String(i) },
            Tagging: i % 4 === 0 ? 'k=v' : undefined,
          }),
        ),
      ),
    ),
  );
  const importer = await connector('importer', rgwConfig(bucket, 'src'));
  const imported = await seconds(() => importer.host.importAll({ maxConcurrency: 4, content: 'bytes' }));
  await importer.dispose();
  const metadataOnly = await connector('importer', rgwConfig(bucket, 'src'));
  const listed = await seconds(() => metadataOnly.host.importAll({ maxConcurrency: 4, openContent: false }));
  await metadataOnly.dispose();
  const exporter = await connector('exporter', rgwConfig(`${bucket}-dst`, 'restored'));
  const exported = await seconds(() => exporter.host.exportTree(restoreEntries(imported.value, '/src')));
  if (exported.value.status.code !== 0 || exported.value.itemErrors.length > 0) throw new Error('export failed');
  await exporter.dispose();
  return [
    { name: `importer, ${count} small objects with metadata (list + HEAD + tags + GET)`, value: count / imported.s, unit: 'objects/s' },
    { name: `importer, ${count} unchanged objects (list + HEAD + tags, no GET)`, value: count / listed.s, unit: 'objects/s' },
    { name: `exporter, ${count} small objects with metadata and tags`, value: count / exported.s, unit: 'objects/s' },
  ];
}

/** Import and export of one huge object: the connector's peak RSS. */
async function hugeObject(sdk: S3Client, rgwConfig: (bucket: string, prefix: string) => Record<string, string>, bytes: number): Promise<Figure[]> {
  const bucket = `bench-huge-${Date.now().toString(36)}`;
  await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
  const hash = createHash('sha256');
  const source = (async function* () {
    for await (const piece of synthetic(bytes)) {
      hash.update(piece);
      yield piece;
    }
  })();
  await new Upload({ client: sdk, params: { Bucket: bucket, Key: 'src/huge.bin', Body: Readable.from(source) }, partSize: 16 * MiB, queueSize: 4 }).done();
  const digest = hash.digest('hex');
  say(`huge object uploaded (${bytes / MiB} MiB)`);
  const importer = await connector('importer', rgwConfig(bucket, 'src'));
  const seen = createHash('sha256');
  const imp = await seconds(() =>
    importer.host.importAll({
      maxConcurrency: 2,
      content: (r) => (r.isXattr ? undefined : new Writable({ write: (c: Buffer, _e, cb) => (seen.update(c), cb()) })),
    }),
  );
  if (seen.digest('hex') !== digest) throw new Error('imported bytes differ');
  const importRss = processUsage(importer.process.pid).rss;
  await importer.dispose();
  say(`huge object imported in ${imp.s.toFixed(1)} s`);
  const exporter = await connector('exporter', rgwConfig(bucket, 'restored'));
  const exp = await seconds(() =>
    exporter.host.exportTree([
      { path: '/', info: { name: 'src', mode: (0x80000000 | 0o755) >>> 0 } },
      { path: '/huge.bin', info: { name: 'huge.bin', mode: 0o644, size: bytes, modTime: { seconds: 1_700_000_000, nanos: 0 } }, content: async function* () { yield* synthetic(bytes); } },
    ]),
  );
  if (exp.value.status.code !== 0 || exp.value.itemErrors.length > 0) throw new Error('huge export failed');
  const exportRss = processUsage(exporter.process.pid).rss;
  await exporter.dispose();
  say(`huge object exported in ${exp.s.toFixed(1)} s`);
  await sdk.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'src/huge.bin' }));
  await sdk.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'restored/huge.bin' }));
  const label = `${(bytes / 1024 ** 3).toFixed(bytes % 1024 ** 3 === 0 ? 0 : 2)} GiB`;
  return [
    { name: `importer, one ${label} object`, value: bytes / 1e6 / imp.s, unit: 'MB/s' },
    { name: `importer peak RSS (${label} object)`, value: importRss / MB, unit: 'MB', target: '< 200 MB', ok: importRss < 200 * MB },
    { name: `exporter, one ${label} object`, value: bytes / 1e6 / exp.s, unit: 'MB/s' },
    { name: `exporter peak RSS (${label} object)`, value: exportRss / MB, unit: 'MB', target: '< 200 MB', ok: exportRss < 200 * MB },
  ];
}

/** Runs the s3 benchmark and returns its figures. */
export async function benchS3(options: { bigMiB?: number; objects?: number; hugeMiB?: number; rounds?: number } = {}): Promise<Figure[]> {
  if (!existsSync(MANIFEST)) throw new Error(`${MANIFEST} missing: run npm run build -- --only s3 first`);
  const rgw = await startRadosgw();
  const sdk = sdkClient(rgw);
  const rgwConfig = (bucket: string, prefix: string): Record<string, string> => configFor({ ...rgw, stop: async () => undefined }, bucket, prefix);
  const figures: Figure[] = [];
  const loadBefore = loadAverage();
  const host = await storageHost();
  try {
    figures.push(...(await bigTransfers(sdk, rgwConfig, (options.bigMiB ?? 256) * MiB, options.rounds ?? 2, host)));
    figures.push(...(await smallPuts(sdk, rgwConfig, 300, host)));
    figures.push(...(await objectsPerSecond(sdk, rgwConfig, options.objects ?? 3000)));
    if ((options.hugeMiB ?? 2048) > 0) figures.push(...(await hugeObject(sdk, rgwConfig, (options.hugeMiB ?? 2048) * MiB)));
    figures.push({ name: 'machine load average (1 min) at the start', value: loadBefore, unit: '' });
    figures.push({ name: 'machine load average (1 min) at the end', value: loadAverage(), unit: '' });
  } finally {
    sdk.destroy();
    await rgw.stop();
  }
  return figures;
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const options = { bigMiB: arg('big-mib', 256, 16), objects: arg('objects', 3000, 100), hugeMiB: arg('huge-mib', 2048, 64), rounds: arg('rounds', 2, 1) };
  if (SMOKE) say(`smoke run (${JSON.stringify(options)}): the figures only show that the benchmark works`);
  const figures = await benchS3(options);
  process.stdout.write(`${figuresTable(figures)}\n`);
}
