// imap benchmark on a real Dovecot, connectors spawned over two pipes like Plakar does: backup and restore of an account
// (messages per second, connector peak RSS), an idempotent second restore, and a large mailbox backed up under 200 MB.
// Run: npx tsx bench/imap.ts [--messages 5000] [--big 50000] [--concurrency 4]
//   IMAP_BENCH_EXE=dist/imap/imap uses the built executable instead of the TypeScript sources.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchPlugin, type LaunchedPlugin, type WireRecord } from '../test/harness/index.ts';
import { startDovecot } from '../test/integrations/imap/dovecot.ts';
import { inspect, makeMessages, seed, seedMaildir } from '../test/integrations/imap/helpers.ts';

const ROOT = join(import.meta.dirname, '..');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function peakRss(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(0)} MB`;

/** CPU seconds (user + system) a process has used so far: load-independent, unlike wall time on a shared machine. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** `connector peak RSS …, CPU … ms/msg` for a connector about to be disposed. */
function usage(p: LaunchedPlugin, count: number): string {
  return `connector peak RSS ${mb(peakRss(p.process.pid))}, CPU ${((cpuSeconds(p.process.pid) * 1000) / count).toFixed(2)} ms/msg`;
}

/** Spawns one connector (built executable when IMAP_BENCH_EXE is set, else the sources through tsx) and sends Init. */
async function connector(kind: 'importer' | 'exporter', config: Record<string, string>): Promise<LaunchedPlugin> {
  const exe = process.env.IMAP_BENCH_EXE;
  const p = exe
    ? await launchPlugin({ executable: join(ROOT, exe), args: [kind] })
    : await launchPlugin({ executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/imap'), kind] });
  await p.host.init(kind, 'imap', config, { maxConcurrency: 4 });
  return p;
}

async function main(): Promise<void> {
  const messages = arg('messages', 5000);
  const big = arg('big', 50_000);
  const concurrency = String(arg('concurrency', 4));
  const d = await startDovecot();
  const cfg = (user: string, extra: Record<string, string> = {}): Record<string, string> => ({
    location: `imap://${d.host}:${d.port}`,
    username: user,
    password: `${user}pw`,
    tls: 'no-tls',
    concurrency,
    ...extra,
  });
  try {
    say(`imap bench: Dovecot 2.3 on 127.0.0.1, ${messages} messages, concurrency ${concurrency}, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
    const boxes = ['INBOX', 'Archive/2023', 'Archive/2024', 'Projects/Alpha', 'Sent'];
    const seeded = makeMessages(messages, boxes, 99);
    const bytes = seeded.reduce((n, m) => n + m.raw.length, 0);
    let t = performance.now();
    await seed(d, 'alice', boxes, seeded);
    say(`seed (APPEND with imapflow, 4 connections)   ${((performance.now() - t) / 1000).toFixed(1)} s, ${mb(bytes)}`);

    // Backup: every message opened and read, as a first backup does.
    const imp = await connector('importer', cfg('alice'));
    t = performance.now();
    const snap = await imp.host.importAll({ maxConcurrency: 2 });
    let s = (performance.now() - t) / 1000;
    say(`backup                                        ${s.toFixed(1)} s, ${(messages / s).toFixed(0)} msg/s, ${usage(imp, messages)}`);
    await imp.dispose();

    // Restore into an empty account, then again (idempotent: nothing appended).
    const files = snap.records.filter((r) => !r.isXattr && r.fileInfo && !((r.fileInfo.mode >>> 0) & 0x80000000));
    const entries = [
      { path: '/', info: { name: '/', mode: 0x800001c0 } },
      ...snap.records
        .filter((r): r is WireRecord & { fileInfo: NonNullable<WireRecord['fileInfo']> } => !r.isXattr && !!r.fileInfo && r.pathname !== '/')
        .map((r) => ({ path: r.pathname, info: r.fileInfo, xattrs: r.extendedAttributes, content: snap.contents.get(r.pathname) as Buffer | undefined })),
    ];
    for (const run of ['restore', 'restore again (skip_existing)']) {
      const exp = await connector('exporter', cfg('bob'));
      t = performance.now();
      const out = await exp.host.exportTree(entries, { endTimeoutMs: 3_600_000 });
      s = (performance.now() - t) / 1000;
      if (out.itemErrors.length > 0) throw new Error(`restore errors: ${JSON.stringify(out.itemErrors.slice(0, 3))}`);
      say(`${run.padEnd(46)}${s.toFixed(1)} s, ${(files.length / s).toFixed(0)} msg/s, ${usage(exp, files.length)}`);
      await exp.dispose();
    }
    const a = await inspect(d, 'alice');
    const b = await inspect(d, 'bob');
    for (const box of boxes) if (JSON.stringify(a.get(box)?.messages.map((m) => m.sha256).sort()) !== JSON.stringify(b.get(box)?.messages.map((m) => m.sha256).sort())) throw new Error(`restored ${box} differs`);
    say('restored account compared: identical');

    if (big > 0) {
      t = performance.now();
      await seedMaildir(d, 'bob', 'Big', big);
      say(`seed ${big} messages into one maildir            ${((performance.now() - t) / 1000).toFixed(1)} s`);
      const imp2 = await connector('importer', cfg('bob', { include: 'Big' }));
      t = performance.now();
      const out = await imp2.host.importAll({ maxConcurrency: 2, content: () => undefined });
      s = (performance.now() - t) / 1000;
      say(`backup of a ${big}-message mailbox            ${s.toFixed(1)} s, ${(big / s).toFixed(0)} msg/s, ${usage(imp2, big)} (max unacked ${out.stats.maxUnacked})`);
      await imp2.dispose();
      if (out.records.filter((r) => r.pathname.endsWith('.eml')).length !== big) throw new Error('records missing');
    }
  } finally {
    await d.stop();
  }
}

await main();
