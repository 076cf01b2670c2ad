// imap benchmark on a real Dovecot, the connectors spawned over two pipes like Plakar does: backup and restore of a
// 5,000-message account (messages/s, connector peak RSS and CPU per message), the same backup with prefetch_size=0 (one
// FETCH per message, as before batches), an idempotent second restore, and a 50,000-message mailbox backed up whole
// under the 200 MB target. Prints a table.
// Run: npx tsx bench/imap.ts
//   IMAP_BENCH_MESSAGES (default 5000), IMAP_BENCH_BIG (default 50000; 0 skips it), IMAP_BENCH_CONCURRENCY (default 4)
//   change the sizes; IMAP_BENCH_EXE=dist/imap/imap uses the built executable instead of the TypeScript sources.
//   --smoke (or KLOSET_TS_BENCH_SMOKE=1) checks that everything runs with small sizes (200 messages, 1,000 in the big
//   mailbox). Every figure is also printed as a `BENCH` line (bench/report.ts); the raw client's limits are imapflow
//   alone against the same Dovecot: APPEND on 4 connections (the seeding) for restores, FETCH BODY[] for backups.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { launchPlugin, type ExportEntry, type LaunchedPlugin, type WireRecord } from '../test/harness/index.ts';
import { MB, printFigure, processUsage, smokeMode } from './report.ts';
import { startDovecot } from '../test/integrations/imap/dovecot.ts';
import { inspect, makeMessages, seed, seedMaildir } from '../test/integrations/imap/helpers.ts';

const ROOT = join(import.meta.dirname, '..');
const SMOKE = smokeMode();
const MESSAGES = Number(process.env.IMAP_BENCH_MESSAGES ?? (SMOKE ? 200 : 5000));
const BIG = Number(process.env.IMAP_BENCH_BIG ?? (SMOKE ? 1000 : 50_000));
const CONCURRENCY = String(Number(process.env.IMAP_BENCH_CONCURRENCY ?? 4));
const RSS_TARGET = 200 * MB;

interface Row {
  step: string;
  messages: number;
  bytes: number;
  seconds: number;
  /** Connector peak RSS, when a connector ran. */
  rss?: number;
  /** Connector CPU seconds (user + system). */
  cpu?: number;
  note?: string;
}

const rows: Row[] = [];

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Spawns one connector (built executable when IMAP_BENCH_EXE is set, else the sources through tsx) and sends Init. */
async function connector(kind: 'importer' | 'exporter', config: Record<string, string>): Promise<LaunchedPlugin> {
  const exe = process.env.IMAP_BENCH_EXE;
  // A generous SETTINGS deadline: on a loaded machine tsx alone can take longer than the harness's default 20 s.
  const options = { settingsTimeoutMs: 120_000 };
  const p = exe
    ? await launchPlugin({ executable: join(ROOT, exe), args: [kind] }, options)
    : await launchPlugin({ executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/imap'), kind] }, options);
  await p.host.init(kind, 'imap', config, { maxConcurrency: 4 });
  return p;
}

/** Runs `fn` with a spawned connector and records a row with its wall time, peak RSS and CPU. */
async function measured(step: string, kind: 'importer' | 'exporter', config: Record<string, string>, fn: (p: LaunchedPlugin) => Promise<{ messages: number; bytes: number; note?: string }>): Promise<void> {
  const p = await connector(kind, config);
  try {
    const t = performance.now();
    const r = await fn(p);
    const row: Row = { step, ...r, seconds: (performance.now() - t) / 1000, ...processUsage(p.process.pid) };
    rows.push(row);
    say(`${step}: ${row.seconds.toFixed(1)} s, ${(row.messages / row.seconds).toFixed(0)} msg/s, peak RSS ${mb(row.rss ?? NaN)}`);
  } finally {
    await p.dispose();
  }
}

const mb = (n: number): string => `${(n / MB).toFixed(0)} MB`;

/** A writable that counts bytes and keeps nothing. */
function counter(total: { bytes: number }): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      total.bytes += chunk.length;
      done();
    },
  });
}

function table(): string {
  const head = ['step', 'messages', 'MB', 'seconds', 'msg/s', 'connector peak RSS', 'connector CPU ms/msg', 'note'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    lines.push(
      `| ${[
        r.step,
        r.messages.toLocaleString('en-US'),
        Number.isNaN(r.bytes) ? '—' : (r.bytes / 1e6).toFixed(1),
        r.seconds.toFixed(1),
        (r.messages / r.seconds).toFixed(0),
        r.rss === undefined ? '—' : mb(r.rss),
        r.cpu === undefined ? '—' : ((r.cpu * 1000) / r.messages).toFixed(2),
        r.note ?? '',
      ].join(' | ')} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const d = await startDovecot({ users: ['alice', 'bob', 'carol'].map((user) => ({ user, password: `${user}pw` })) });
  const cfg = (user: string, extra: Record<string, string> = {}): Record<string, string> => ({
    location: `imap://${d.host}:${d.port}`,
    username: user,
    password: `${user}pw`,
    tls: 'no-tls',
    concurrency: CONCURRENCY,
    ...extra,
  });
  try {
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
    say(`imap bench: Dovecot on 127.0.0.1 (plain IMAP), ${MESSAGES} messages, concurrency ${CONCURRENCY}, ${process.env.IMAP_BENCH_EXE ? 'built executable' : 'sources through tsx'}, load average ${load}`);
    const boxes = ['INBOX', 'Archive/2023', 'Archive/2024', 'Projects/Alpha', 'Sent'];
    const seeded = makeMessages(MESSAGES, boxes, 99);
    const seededBytes = seeded.reduce((n, m) => n + m.raw.length, 0);
    let t = performance.now();
    await seed(d, 'alice', boxes, seeded);
    const seedSeconds = (performance.now() - t) / 1000;
    rows.push({ step: 'seed the account (raw imapflow: APPEND, 4 connections)', messages: MESSAGES, bytes: seededBytes, seconds: seedSeconds });
    t = performance.now();
    await inspect(d, 'alice');
    const rawFetchSeconds = (performance.now() - t) / 1000;
    rows.push({ step: 'read the account (raw imapflow: FETCH BODY[] per mailbox, 1 connection)', messages: MESSAGES, bytes: seededBytes, seconds: rawFetchSeconds });

    // Backup: every message opened and read, as a first backup does.
    let snap: Awaited<ReturnType<LaunchedPlugin['host']['importAll']>> | undefined;
    await measured('backup (every message read)', 'importer', cfg('alice'), async (p) => {
      snap = await p.host.importAll({ maxConcurrency: 2 });
      if (snap.status.code !== 0 || snap.itemErrors.length > 0) throw new Error(`backup failed: ${snap.status.details} ${JSON.stringify(snap.itemErrors.slice(0, 3))}`);
      return { messages: MESSAGES, bytes: seededBytes };
    });
    const out = snap as NonNullable<typeof snap>;

    // The same backup without batches: every Open is one partial FETCH of its own; the bodies must be the same bytes.
    await measured('backup, prefetch_size=0 (one FETCH per message)', 'importer', cfg('alice', { prefetch_size: '0' }), async (p) => {
      const res = await p.host.importAll({ maxConcurrency: 2, content: 'sha256' });
      if (res.status.code !== 0 || res.itemErrors.length > 0) throw new Error(`backup failed: ${res.status.details} ${JSON.stringify(res.itemErrors.slice(0, 3))}`);
      for (const [key, bytes] of out.contents) {
        if (res.contents.get(key) !== createHash('sha256').update(bytes).digest('hex')) throw new Error(`${key}: the two backups differ`);
      }
      return { messages: MESSAGES, bytes: seededBytes };
    });

    // Restore into an empty account, then again (idempotent: everything skipped).
    const entries: ExportEntry[] = [
      { path: '/', info: { name: '/', mode: 0x800001c0 } },
      ...out.records
        .filter((r): r is WireRecord & { fileInfo: NonNullable<WireRecord['fileInfo']> } => !r.isXattr && !!r.fileInfo && r.pathname !== '/')
        .map((r) => ({ path: r.pathname, info: r.fileInfo, xattrs: r.extendedAttributes, content: out.contents.get(r.pathname) as Buffer | undefined })),
    ];
    for (const step of ['restore into an empty account', 'restore again (skip_existing: nothing appended)']) {
      await measured(step, 'exporter', cfg('bob', { restore_deleted: 'true' }), async (p) => {
        const res = await p.host.exportTree(entries, { endTimeoutMs: 3_600_000 });
        if (res.status.code !== 0 || res.itemErrors.length > 0) throw new Error(`restore failed: ${res.status.details} ${JSON.stringify(res.itemErrors.slice(0, 3))}`);
        return { messages: MESSAGES, bytes: seededBytes };
      });
    }
    const a = await inspect(d, 'alice');
    const b = await inspect(d, 'bob');
    for (const box of boxes) {
      const key = (m: { sha256: string; date: number; flags: string[] }) => `${m.sha256} ${m.date} ${m.flags.join(',')}`;
      if (JSON.stringify(a.get(box)?.messages.map(key)) !== JSON.stringify(b.get(box)?.messages.map(key))) throw new Error(`restored ${box} differs`);
    }
    say('restored account compared with the source (sha256, flags, INTERNALDATE per message): identical');
    const rate = (step: string): number => {
      const r = rows.find((x) => x.step === step) as Row;
      return r.messages / r.seconds;
    };
    const rssOf = (step: string): number => ((rows.find((x) => x.step === step) as Row).rss ?? NaN) / MB;
    const n = MESSAGES.toLocaleString('en-US');
    printFigure({ integration: 'imap', measure: `backup of a ${n}-message account`, value: rate('backup (every message read)'), unit: 'messages/s', limit: MESSAGES / rawFetchSeconds });
    printFigure({ integration: 'imap', measure: `backup of a ${n}-message account, prefetch_size=0`, value: rate('backup, prefetch_size=0 (one FETCH per message)'), unit: 'messages/s', limit: MESSAGES / rawFetchSeconds });
    printFigure({ integration: 'imap', measure: `restore of a ${n}-message account`, value: rate('restore into an empty account'), unit: 'messages/s', limit: MESSAGES / seedSeconds });
    printFigure({ integration: 'imap', measure: `restore again (skip_existing), ${n} messages`, value: rate('restore again (skip_existing: nothing appended)'), unit: 'messages/s' });
    printFigure({ integration: 'imap', measure: `importer peak RSS, ${n}-message backup`, value: Math.round(rssOf('backup (every message read)')), unit: 'MB' });
    printFigure({ integration: 'imap', measure: `exporter peak RSS, ${n}-message restore`, value: Math.round(rssOf('restore into an empty account')), unit: 'MB' });

    if (BIG > 0) {
      t = performance.now();
      await seedMaildir(d, 'carol', 'Big', BIG);
      rows.push({ step: `seed a ${BIG.toLocaleString('en-US')}-message mailbox (maildir files)`, messages: BIG, bytes: NaN, seconds: (performance.now() - t) / 1000 });
      await measured(`backup of the ${BIG.toLocaleString('en-US')}-message mailbox (every message read)`, 'importer', cfg('carol', { include: 'Big' }), async (p) => {
        const total = { bytes: 0 };
        const res = await p.host.importAll({ maxConcurrency: 4, readAhead: 64, content: () => counter(total) });
        if (res.status.code !== 0 || res.itemErrors.length > 0) throw new Error(`backup failed: ${res.status.details}`);
        if (res.records.filter((r) => r.pathname.endsWith('.eml')).length !== BIG) throw new Error('records missing');
        return { messages: BIG, bytes: total.bytes, note: `max unacked ${res.stats.maxUnacked}` };
      });
      const big = rows[rows.length - 1] as Row;
      big.note = `${big.note}; RSS target 200 MB ${(big.rss ?? Infinity) < RSS_TARGET ? 'met' : 'MISSED'}`;
      const nb = BIG.toLocaleString('en-US');
      printFigure({ integration: 'imap', measure: `backup of a ${nb}-message mailbox`, value: big.messages / big.seconds, unit: 'messages/s' });
      printFigure({ integration: 'imap', measure: `importer peak RSS, ${nb}-message backup`, value: Math.round((big.rss ?? NaN) / MB), unit: 'MB', target: '< 200 MB' });
    }
  } finally {
    await d.stop();
  }
  say('');
  say(table());
}

await main();
