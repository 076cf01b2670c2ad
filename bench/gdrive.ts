// gdrive benchmark against the Drive emulator, each connector spawned over two pipes like Plakar does: a large file
// restored and backed up (throughput, connector peak RSS and CPU), a huge file under 200 MB of connector memory, and a
// repository of many objects (Put, List, ranged Gets with and without the read-ahead cache). Prints one table.
// Run: npx tsx bench/gdrive.ts [--big-mib 300] [--huge-mib 2048] [--objects 5000] [--latency-ms 0]
//   GDRIVE_BENCH_EXE=dist/gdrive/gdrive uses the built executable instead of the TypeScript sources.
//   --smoke (or KLOSET_TS_BENCH_SMOKE=1) checks that everything runs with small sizes (16 MiB, 64 MiB, 100 objects).
// The large file is also uploaded and downloaded by googleapis itself in this process (the practical limit of the
// client library against the same emulator); every figure is printed as a `BENCH` line too (bench/report.ts).
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { OAuth2Client } from 'google-auth-library';
import { drive_v3 } from 'googleapis/build/src/apis/drive/v3.js';
import { launchPlugin, RESOURCE, type LaunchedPlugin, type WireRecord } from '../test/harness/index.ts';
import { DriveEmulator } from '../test/servers/drive-emulator.ts';
import { MB, mbps, printFigure, processUsage, sizeArg } from './report.ts';

const ROOT = join(import.meta.dirname, '..');
const MiB = 1024 * 1024;
const MEMORY_TARGET = 200 * MB;
const CLIENT_ID = 'bench.apps.googleusercontent.com';
const CLIENT_SECRET = 'GOCSPX-bench';

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Progress notes go to stderr; the figures are printed as one table at the end. */
function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

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

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(0)} MiB`;

/** Spawns one connector (the built executable when GDRIVE_BENCH_EXE is set, else the sources through tsx) and sends Init. */
async function connector(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>): Promise<LaunchedPlugin> {
  const exe = process.env.GDRIVE_BENCH_EXE;
  const p = exe
    ? await launchPlugin({ executable: join(ROOT, exe), args: [kind] })
    : await launchPlugin({ executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/gdrive'), kind] });
  await p.host.init(kind, 'gdrive', config, { maxConcurrency: 4 });
  return p;
}

/** A fixed random block repeated with a counter: incompressible and cheap to produce. */
async function* synthetic(size: number): AsyncGenerator<Uint8Array> {
  const block = randomBytes(MiB);
  for (let sent = 0, n = 0; sent < size; sent += MiB, n++) {
    const piece = Buffer.from(block.subarray(0, Math.min(MiB, size - sent)));
    piece.writeUInt32LE(n, 0);
    yield piece;
  }
}

interface Run {
  seconds: number;
  cpu: number;
  rss: number;
  sha256: string;
  bytes: number;
}

/** Restores one file of `size` bytes through a spawned exporter. */
async function restoreBig(config: Record<string, string>, size: number): Promise<Run> {
  const hash = createHash('sha256');
  const p = await connector('exporter', config);
  try {
    const cpu0 = processUsage(p.process.pid).cpu;
    const started = performance.now();
    const out = await p.host.exportTree([
      { path: '/', info: { name: 'bench', mode: 0x800001ed } },
      {
        path: '/big.bin',
        info: { name: 'big.bin', mode: 0o644, size, modTime: { seconds: 1_700_000_000, nanos: 0 } },
        content: async function* () {
          for await (const piece of synthetic(size)) {
            hash.update(piece);
            yield piece;
          }
        },
      },
    ]);
    const seconds = (performance.now() - started) / 1000;
    if (out.itemErrors.length > 0) throw new Error(`restore failed: ${out.itemErrors[0]?.error}`);
    const used = processUsage(p.process.pid);
    return { seconds, cpu: used.cpu - cpu0, rss: used.rss, sha256: hash.digest('hex'), bytes: size };
  } finally {
    await p.dispose();
  }
}

/** Backs up the folder holding big.bin through a spawned importer, hashing what arrives. */
async function backupBig(config: Record<string, string>): Promise<Run> {
  const p = await connector('importer', config);
  try {
    const hash = createHash('sha256');
    let bytes = 0;
    const cpu0 = processUsage(p.process.pid).cpu;
    const started = performance.now();
    const out = await p.host.importAll({
      content: (r: WireRecord) =>
        !r.isXattr && r.pathname.endsWith('/big.bin')
          ? new Writable({
              write(chunk: Buffer, _enc, cb) {
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
    return { seconds, cpu: used.cpu - cpu0, rss: used.rss, sha256: hash.digest('hex'), bytes };
  } finally {
    await p.dispose();
  }
}

/** A restore then a backup of one file; the bytes must come back identical. */
async function bigFile(
  config: (location: string, extra?: Record<string, string>) => Record<string, string>,
  size: number,
  chunk: string,
  target?: number,
  limit?: { up: number; down: number },
): Promise<void> {
  note(`file of ${mib(size)}, ${chunk} chunks`);
  const location = `gdrive:///bench-${size}`;
  const r = await restoreBig(config(location, { chunk_size: chunk }), size);
  const b = await backupBig(config(location));
  if (b.sha256 !== r.sha256 || b.bytes !== size) throw new Error(`the backed-up bytes of the ${mib(size)} file differ from the restored ones`);
  printFigure({ integration: 'gdrive', measure: `exporter restore throughput (${mib(size)}, ${chunk} chunks)`, value: mbps(size, r.seconds), unit: 'MB/s', limit: limit?.up });
  printFigure({ integration: 'gdrive', measure: `importer backup throughput (${mib(size)}, MD5 checked)`, value: mbps(size, b.seconds), unit: 'MB/s', limit: limit?.down });
  const t = target ? `< ${(target / 1e6).toFixed(0)} MB` : undefined;
  printFigure({ integration: 'gdrive', measure: `exporter peak RSS (${mib(size)} restore)`, value: r.rss / 1e6, unit: 'MB', ...(t ? { target: t } : {}) });
  printFigure({ integration: 'gdrive', measure: `importer peak RSS (${mib(size)} backup)`, value: b.rss / 1e6, unit: 'MB', ...(t ? { target: t } : {}) });
  const memTarget = target ? `< ${mib(target)}` : '—';
  row(`restore ${mib(size)} (resumable, ${chunk} chunks): throughput`, `${mbps(size, r.seconds).toFixed(1)} MB/s (${r.seconds.toFixed(1)} s)`);
  row(`restore ${mib(size)}: exporter CPU per GiB`, `${((r.cpu / size) * 1024 * MiB).toFixed(1)} s`);
  row(`restore ${mib(size)}: exporter peak RSS`, mib(r.rss), memTarget);
  row(`backup ${mib(size)} (media download, MD5 checked): throughput`, `${mbps(size, b.seconds).toFixed(1)} MB/s (${b.seconds.toFixed(1)} s)`);
  row(`backup ${mib(size)}: importer CPU per GiB`, `${((b.cpu / size) * 1024 * MiB).toFixed(1)} s`);
  row(`backup ${mib(size)}: importer peak RSS`, mib(b.rss), memTarget);
  if (target !== undefined && (r.rss >= target || b.rss >= target)) process.exitCode = 1;
}

/** Put, List and ranged Gets on a repository of `objects` packfiles. */
async function repository(config: Record<string, string>, objects: number, label: string): Promise<void> {
  note(`repository of ${objects} objects, ${label}`);
  const p = await connector('storage', config);
  try {
    await p.host.create(Buffer.from('_KLOSET_bench'));
    const macs = Array.from({ length: objects }, () => randomBytes(32));
    const body = randomBytes(64 * 1024);
    let started = performance.now();
    // The real host runs at most two Puts at once (PROTOCOL.md §9).
    for (let i = 0; i < macs.length; i += 2) await Promise.all(macs.slice(i, i + 2).map((m) => p.host.put(RESOURCE.PACKFILE, m, body)));
    let s = (performance.now() - started) / 1000;
    row(`${label}: Put ${objects} packfiles of 64 KiB (2 at a time)`, `${s.toFixed(1)} s (${((s / objects) * 1000).toFixed(1)} ms each)`);
    printFigure({ integration: 'gdrive', measure: `storage Put of 64 KiB packfiles, 2 at a time (${label})`, value: objects / s, unit: 'objects/s' });
    started = performance.now();
    const listed = await p.host.list(RESOURCE.PACKFILE);
    if (listed.length !== objects) throw new Error(`listed ${listed.length} of ${objects}`);
    row(`${label}: List ${objects} packfiles`, `${((performance.now() - started) / 1000).toFixed(1)} s`);
    started = performance.now();
    const gets = Math.min(objects, 2000);
    const cpu0 = processUsage(p.process.pid).cpu;
    for (let i = 0; i < gets; i++) {
      const mac = macs[i] as Buffer;
      for (const off of [16, 1000, 30_000]) await p.host.get(RESOURCE.PACKFILE, mac, { offset: off, length: 720 });
    }
    s = (performance.now() - started) / 1000;
    const used = processUsage(p.process.pid);
    row(`${label}: ranged Get of 720 B (${gets * 3}, one at a time)`, `${((s / (gets * 3)) * 1000).toFixed(2)} ms each, connector CPU ${(((used.cpu - cpu0) / (gets * 3)) * 1000).toFixed(2)} ms`);
    printFigure({ integration: 'gdrive', measure: `storage ranged Get of 720 B, one at a time (${label})`, value: (s / (gets * 3)) * 1000, unit: 'ms' });
    row(`${label}: storage connector peak RSS`, mib(used.rss));
  } finally {
    await p.dispose();
  }
}

/**
 * The practical limit: googleapis itself (in this process, no gRPC, no chunking of ours) uploads `size` bytes in one
 * streamed media request and downloads them again, against the same emulator.
 */
async function rawLimit(emu: DriveEmulator, size: number): Promise<{ up: number; down: number }> {
  note(`googleapis alone, ${mib(size)}`);
  const auth = new OAuth2Client();
  auth.setCredentials({ access_token: emu.issueAccessToken('alice@example.com', 24 * 3600) });
  const api = new drive_v3.Drive({ auth, rootUrl: emu.url } as unknown as ConstructorParameters<typeof drive_v3.Drive>[0]);
  const mo = { rootUrl: emu.url, retry: false };
  const sent = createHash('sha256');
  let started = performance.now();
  const created = await api.files.create(
    {
      requestBody: { name: `raw-${size}.bin` },
      media: {
        mimeType: 'application/octet-stream',
        body: Readable.from(
          (async function* () {
            for await (const piece of synthetic(size)) {
              sent.update(piece);
              yield piece;
            }
          })(),
        ),
      },
      fields: 'id,size',
    },
    mo,
  );
  const up = mbps(size, (performance.now() - started) / 1000);
  started = performance.now();
  const res = await api.files.get({ fileId: created.data.id as string, alt: 'media' }, { ...mo, responseType: 'stream' });
  const got = createHash('sha256');
  for await (const c of res.data as unknown as AsyncIterable<Buffer>) got.update(c);
  const down = mbps(size, (performance.now() - started) / 1000);
  if (got.digest('hex') !== sent.digest('hex')) throw new Error('googleapis downloaded other bytes than it uploaded');
  row(`googleapis alone, ${mib(size)} upload (one streamed request)`, `${up.toFixed(1)} MB/s`);
  row(`googleapis alone, ${mib(size)} download`, `${down.toFixed(1)} MB/s`);
  return { up, down };
}

async function main(): Promise<void> {
  const big = sizeArg('big-mib', 300, 16) * MiB;
  const huge = sizeArg('huge-mib', 2048, 64) * MiB;
  const objects = sizeArg('objects', 5000, 100);
  const loadBefore = os.loadavg()[0] ?? 0;
  const emu = await DriveEmulator.start({ latencyMs: sizeArg('latency-ms', 0, 0) });
  emu.addClient(CLIENT_ID, CLIENT_SECRET);
  const refreshToken = emu.issueRefreshToken(CLIENT_ID);
  const config = (location: string, extra: Record<string, string> = {}): Record<string, string> => ({
    location,
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    refresh_token: refreshToken,
    api_url: emu.url,
    token_url: emu.tokenUrl,
    ...extra,
  });
  try {
    if (big > 0) await bigFile(config, big, '8MiB', undefined, await rawLimit(emu, big));
    if (huge > 0) await bigFile(config, huge, '16MiB', MEMORY_TARGET);
    if (objects > 0) {
      await repository(config('gdrive:///bench-repo', { cache: 'false' }), objects, 'read-ahead cache off');
      await repository(config('gdrive:///bench-repo-cached'), objects, 'read-ahead cache on');
    }
    row('emulator requests (max in flight)', `${emu.stats.requests} (${emu.stats.maxInFlight})`);
  } finally {
    await emu.close();
  }
  say(`gdrive through the Drive emulator, connectors spawned over two pipes (${process.env.GDRIVE_BENCH_EXE ? `executable ${process.env.GDRIVE_BENCH_EXE}` : 'sources through tsx'})`);
  say(`Node ${process.version}, ${os.availableParallelism()} CPUs, load average ${loadBefore.toFixed(1)} at start and ${(os.loadavg()[0] ?? 0).toFixed(1)} at the end`);
  say('');
  say('| measure | result | target |');
  say('|---|---|---|');
  for (const r of rows) say(`| ${r.measure} | ${r.result} | ${r.target} |`);
}

await main();
