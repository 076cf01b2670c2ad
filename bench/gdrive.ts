// gdrive benchmark against the Drive emulator, each connector spawned over two pipes like Plakar does: a large file
// restored and backed up (throughput, connector peak RSS), a huge file under 200 MB of connector memory, and a
// repository of many objects (Put, List, ranged Gets with and without the read-ahead cache).
// Run: npx tsx bench/gdrive.ts [--big-mib 300] [--huge-mib 2048] [--objects 5000] [--latency-ms 0]
//   GDRIVE_BENCH_EXE=dist/gdrive/gdrive uses the built executable instead of the TypeScript sources.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { launchPlugin, RESOURCE, type LaunchedPlugin, type WireRecord } from '../test/harness/index.ts';
import { DriveEmulator } from '../test/servers/drive-emulator.ts';

const ROOT = join(import.meta.dirname, '..');
const MiB = 1024 * 1024;
const CLIENT_ID = 'bench.apps.googleusercontent.com';
const CLIENT_SECRET = 'GOCSPX-bench';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

const mb = (bytes: number): string => `${(bytes / MiB).toFixed(0)} MiB`;

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

async function restoreBig(config: Record<string, string>, size: number): Promise<{ seconds: number; rss: number; sha256: string }> {
  const hash = createHash('sha256');
  const p = await connector('exporter', config);
  try {
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
    return { seconds, rss: peakRss(p.process.pid), sha256: hash.digest('hex') };
  } finally {
    await p.dispose();
  }
}

async function backupBig(config: Record<string, string>): Promise<{ seconds: number; rss: number; sha256: string; bytes: number }> {
  const p = await connector('importer', config);
  try {
    const hash = createHash('sha256');
    let bytes = 0;
    const started = performance.now();
    const out = await p.host.importAll({
      content: (r: WireRecord) =>
        r.pathname.endsWith('/big.bin')
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
    return { seconds, rss: peakRss(p.process.pid), sha256: hash.digest('hex'), bytes };
  } finally {
    await p.dispose();
  }
}

async function repository(config: Record<string, string>, objects: number): Promise<void> {
  const p = await connector('storage', config);
  try {
    await p.host.create(Buffer.from('_KLOSET_bench'));
    const macs = Array.from({ length: objects }, () => randomBytes(32));
    const body = randomBytes(64 * 1024);
    let started = performance.now();
    // The real host runs at most two Puts at once (PROTOCOL.md §9).
    for (let i = 0; i < macs.length; i += 2) await Promise.all(macs.slice(i, i + 2).map((m) => p.host.put(RESOURCE.PACKFILE, m, body)));
    say(`  put ${objects} packfiles of 64 KiB (2 at a time)        ${((performance.now() - started) / 1000).toFixed(1)} s`);
    started = performance.now();
    const listed = await p.host.list(RESOURCE.PACKFILE);
    say(`  list ${listed.length} packfiles                              ${((performance.now() - started) / 1000).toFixed(1)} s`);
    if (listed.length !== objects) throw new Error(`listed ${listed.length} of ${objects}`);
    started = performance.now();
    const gets = Math.min(objects, 2000);
    for (let i = 0; i < gets; i++) {
      const mac = macs[i] as Buffer;
      for (const off of [16, 1000, 30_000]) await p.host.get(RESOURCE.PACKFILE, mac, { offset: off, length: 720 });
    }
    const s = (performance.now() - started) / 1000;
    say(`  ${gets * 3} ranged Gets of 720 B, in order (one at a time)  ${s.toFixed(1)} s  (${((s / (gets * 3)) * 1000).toFixed(2)} ms each)`);
    say(`  storage connector peak RSS                          ${mb(peakRss(p.process.pid))}`);
  } finally {
    await p.dispose();
  }
}

async function main(): Promise<void> {
  const big = arg('big-mib', 300) * MiB;
  const huge = arg('huge-mib', 2048) * MiB;
  const objects = arg('objects', 5000);
  const emu = await DriveEmulator.start({ latencyMs: arg('latency-ms', 0) });
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
  say(`gdrive bench against the Drive emulator (${process.env.GDRIVE_BENCH_EXE ?? 'sources through tsx'}), node ${process.version}`);
  try {
    if (big > 0) {
      const r = await restoreBig(config('gdrive:///bench-big', { chunk_size: '8MiB' }), big);
      say(`restore ${mb(big)} (resumable, 8 MiB chunks)  ${r.seconds.toFixed(1)} s  ${(big / MiB / r.seconds).toFixed(0)} MiB/s  peak RSS ${mb(r.rss)}`);
      const b = await backupBig(config('gdrive:///bench-big'));
      say(`backup  ${mb(b.bytes)} (ranged media, MD5 checked)  ${b.seconds.toFixed(1)} s  ${(b.bytes / MiB / b.seconds).toFixed(0)} MiB/s  peak RSS ${mb(b.rss)}`);
      if (b.sha256 !== r.sha256) throw new Error('the backed-up bytes differ from the restored ones');
    }
    if (huge > 0) {
      const r = await restoreBig(config('gdrive:///bench-huge', { chunk_size: '16MiB' }), huge);
      say(`restore ${mb(huge)} (16 MiB chunks)  ${r.seconds.toFixed(1)} s  peak RSS ${mb(r.rss)}  ${r.rss < 200 * MiB ? 'under' : 'OVER'} 200 MB`);
      const b = await backupBig(config('gdrive:///bench-huge'));
      say(`backup  ${mb(b.bytes)}  ${b.seconds.toFixed(1)} s  peak RSS ${mb(b.rss)}  ${b.rss < 200 * MiB ? 'under' : 'OVER'} 200 MB`);
      if (b.sha256 !== r.sha256) throw new Error('the backed-up bytes differ from the restored ones');
      if (r.rss >= 200 * MiB || b.rss >= 200 * MiB) process.exitCode = 1;
    }
    if (objects > 0) {
      say(`repository of ${objects} objects, read-ahead cache off:`);
      await repository(config('gdrive:///bench-repo', { cache: 'false' }), objects);
      say(`repository of ${objects} objects, read-ahead cache on:`);
      await repository(config('gdrive:///bench-repo-cached'), objects);
    }
    say(`emulator: ${emu.stats.requests} requests, max ${emu.stats.maxInFlight} in flight`);
  } finally {
    await emu.close();
  }
}

await main();
