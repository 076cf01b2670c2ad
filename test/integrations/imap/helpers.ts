// Shared helpers of the imap tests: connectors in-process through the host harness, seeding and reading accounts with imapflow.
import { createHash } from 'node:crypto';
import { ImapFlow } from 'imapflow';
import { serveOnDuplex } from '../../../shared/transport/serve.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GrpcConnection, isDir, launchPlugin, MODE, PluginHost, type ExportEntry, type ImportOutcome } from '../../harness/index.ts';
import { integration } from '../../../integrations/imap/index.ts';
import type { Dovecot } from './dovecot.ts';

/** A connector served in this process, with the harness host driving it. */
export interface Connector {
  host: PluginHost;
  close(): void;
}

let socketCounter = 0;

const MANIFEST = join(import.meta.dirname, '..', '..', '..', 'dist', 'imap', 'manifest.yaml');

/** True when the tests drive the built executable (KLOSET_TS_SPAWN=1, as `npm test` does), false for in-process runs. */
export const SPAWNED = process.env.KLOSET_TS_SPAWN === '1';

/**
 * Opens a connector of the imap integration and sends Init. With KLOSET_TS_SPAWN=1 the built executable is spawned
 * from dist/imap/manifest.yaml, its stderr copied to this process's stderr (tests that look for leaked secrets read
 * it there). Otherwise the connector is served in this process over a unix socket (real sockets on both sides:
 * Node's HTTP/2 over an in-memory JS stream can hit a native assertion under load).
 */
export async function connector(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>, proto = 'imap'): Promise<Connector> {
  if (SPAWNED) {
    if (!existsSync(MANIFEST)) throw new Error(`${MANIFEST} is missing: build first (npx tsx scripts/build.ts --only imap)`);
    const p = await launchPlugin({ manifest: MANIFEST, kind, protocol: proto }, { passStderr: true, settingsTimeoutMs: 60_000 });
    try {
      await p.host.init(kind, proto, config, { maxConcurrency: 4 });
    } catch (err) {
      await p.dispose();
      throw err;
    }
    return { host: p.host, close: () => void p.dispose() };
  }
  const path = join(tmpdir(), `kts-imap-${process.pid}-${socketCounter++}.sock`);
  let served: { close(): void } | undefined;
  const server = createServer((sock) => {
    sock.on('error', () => undefined);
    served = serveOnDuplex(integration, kind, sock);
    server.close();
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const sock = connect(path);
  sock.on('error', () => undefined);
  await once(sock, 'connect');
  const connection = new GrpcConnection(sock, {});
  const host = new PluginHost(connection, {});
  const close = (): void => {
    connection.close();
    served?.close();
    sock.destroy();
    server.close();
    rmSync(path, { force: true });
  };
  try {
    await host.init(kind, proto, config, { maxConcurrency: 4 });
  } catch (err) {
    close();
    throw err;
  }
  return { host, close };
}

/** Config for an account of a Dovecot: plain IMAP on its port unless told otherwise. */
export function accountConfig(d: Dovecot, user: string, extra: Record<string, string> = {}): Record<string, string> {
  const u = d.users.find((x) => x.user === user);
  if (!u) throw new Error(`no user ${user}`);
  return { location: `imap://${d.host}:${d.port}`, username: u.user, password: u.password, tls: 'no-tls', ...extra };
}

/** Runs a full backup and returns the harness outcome (contents as bytes). */
export async function backup(config: Record<string, string>, proto = 'imap'): Promise<ImportOutcome> {
  const c = await connector('importer', config, proto);
  try {
    const outcome = await c.host.importAll({ maxConcurrency: 2 });
    if (outcome.status.code !== 0) throw new Error(`import failed: ${outcome.status.details}`);
    return outcome;
  } finally {
    c.close();
  }
}

/** The export entries of an imported snapshot (what a restore of `/` sends). */
export function snapshotEntries(outcome: ImportOutcome): ExportEntry[] {
  const entries: ExportEntry[] = [{ path: '/', info: { name: '/', mode: (MODE.DIR | 0o700) >>> 0 } }];
  for (const r of outcome.records) {
    if (r.isXattr || r.error || !r.fileInfo || r.pathname === '/') continue;
    const content = outcome.contents.get(r.pathname);
    entries.push({
      path: r.pathname,
      info: { ...r.fileInfo },
      xattrs: r.extendedAttributes,
      content: isDir(r.fileInfo.mode) ? undefined : (content as Buffer | undefined) ?? Buffer.alloc(0),
    });
  }
  return entries;
}

/** Restores entries through the exporter; throws when the export fails as a whole. */
export async function restore(entries: ExportEntry[], config: Record<string, string>) {
  const c = await connector('exporter', config);
  try {
    // The SDK accepts every small file before the slow APPENDs finish (see the report): allow time after the half-close.
    const outcome = await c.host.exportTree(entries, { endTimeoutMs: 600_000 });
    if (outcome.status.code !== 0) throw new Error(`export failed: ${outcome.status.details}`);
    return outcome;
  } finally {
    c.close();
  }
}

/** An imapflow client logged in to a test account. */
export async function client(d: Dovecot, user: string): Promise<ImapFlow> {
  const u = d.users.find((x) => x.user === user);
  if (!u) throw new Error(`no user ${user}`);
  const c = new ImapFlow({ host: d.host, port: d.port, secure: false, doSTARTTLS: false, auth: { user: u.user, pass: u.password }, logger: false });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/** A deterministic pseudo-random generator (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One message to seed. */
export interface SeedMessage {
  mailbox: string;
  raw: Buffer;
  flags: string[];
  date: Date;
}

const SUBJECTS = ['Quarterly report', 'Re: lunch?', 'Ünïcödé – naïve café', 'todo-2024 follow-up', '日本語の件名', '', 'a/b\\c "quoted" <tag>'];
const KEYWORDS = ['todo-2024', '$Label1', 'project-x', 'Work', '$Forwarded', 'multi-part-keyword-here'];

/** Builds `count` messages spread over `mailboxes`, with random flags, keywords, sizes and INTERNALDATEs over 20 years. */
export function makeMessages(count: number, mailboxes: string[], seed = 1, options: { bigEvery?: number } = {}): SeedMessage[] {
  const rnd = prng(seed);
  const out: SeedMessage[] = [];
  const from = Date.UTC(2005, 0, 1);
  const to = Date.UTC(2025, 11, 31);
  for (let i = 0; i < count; i++) {
    const mailbox = mailboxes[Math.floor(rnd() * mailboxes.length)] as string;
    const subject = `${SUBJECTS[i % SUBJECTS.length]} #${i}`;
    const date = new Date(Math.floor((from + rnd() * (to - from)) / 1000) * 1000);
    const flags: string[] = [];
    for (const f of ['\\Seen', '\\Answered', '\\Flagged', '\\Draft', '\\Deleted']) if (rnd() < 0.3) flags.push(f);
    for (const k of KEYWORDS) if (rnd() < 0.2) flags.push(k);
    const big = options.bigEvery && i % options.bigEvery === options.bigEvery - 1;
    const bodySize = big ? 2_500_000 + Math.floor(rnd() * 200_000) : 200 + Math.floor(rnd() * 8000);
    const line = `line ${i} ${'x'.repeat(60)}\r\n`;
    const body = line.repeat(Math.ceil(bodySize / line.length));
    const headers = [
      `From: "Sender ${i}" <sender${i}@example.com>`,
      `To: alice@example.com`,
      `Subject: =?UTF-8?B?${Buffer.from(subject).toString('base64')}?=`,
      `Date: ${date.toUTCString()}`,
      // Every tenth message has no Message-ID (restores must still deduplicate it).
      ...(i % 10 === 3 ? [] : [`Message-ID: <msg-${seed}-${i}@example.com>`]),
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
    ];
    out.push({ mailbox, raw: Buffer.from(`${headers.join('\r\n')}\r\n\r\n${body}`), flags, date });
  }
  return out;
}

/** Creates the mailboxes and appends the messages (a few connections in parallel). */
export async function seed(d: Dovecot, user: string, mailboxes: string[], messages: SeedMessage[]): Promise<void> {
  const setup = await client(d, user);
  for (const m of mailboxes) {
    try {
      await setup.mailboxCreate(m);
    } catch (err) {
      if (!/ALREADYEXISTS/i.test(String((err as { serverResponseCode?: string }).serverResponseCode))) throw err;
    }
  }
  await setup.logout();
  const workers = 4;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const c = await client(d, user);
      for (let i = w; i < messages.length; i += workers) {
        const m = messages[i] as SeedMessage;
        await c.append(m.mailbox, m.raw, m.flags, m.date);
      }
      await c.logout();
    }),
  );
}

/** One message as compared across accounts. */
export interface Seen {
  sha256: string;
  flags: string[];
  date: number;
  size: number;
}

/** Every mailbox of an account with its messages (sorted), for comparisons. */
export async function inspect(d: Dovecot, user: string): Promise<Map<string, { delimiter: string; specialUse?: string; messages: Seen[] }>> {
  const c = await client(d, user);
  const out = new Map<string, { delimiter: string; specialUse?: string; messages: Seen[] }>();
  try {
    for (const box of await c.list()) {
      const flags = [...box.flags].map((f) => f.toLowerCase());
      const messages: Seen[] = [];
      if (!flags.includes('\\noselect') && !flags.includes('\\nonexistent')) {
        const mb = await c.mailboxOpen(box.path, { readOnly: true });
        if (mb.exists > 0) {
          for await (const m of c.fetch('1:*', { uid: true, flags: true, internalDate: true, size: true, source: true })) {
            messages.push({
              sha256: createHash('sha256').update(m.source as Buffer).digest('hex'),
              flags: [...(m.flags ?? [])].filter((f) => f !== '\\Recent').sort(),
              date: new Date(m.internalDate as Date).getTime(),
              size: m.size as number,
            });
          }
        }
      }
      messages.sort((a, b) => (a.sha256 + a.date + a.flags.join()).localeCompare(b.sha256 + b.date + b.flags.join()));
      out.set(box.path, { delimiter: box.delimiter, specialUse: box.specialUse, messages });
    }
  } finally {
    await c.logout();
  }
  return out;
}

/** The expected state of a mailbox after a restore of `messages` (`\Deleted` dropped unless kept). */
export function expectedMessages(messages: SeedMessage[], keepDeleted: boolean): Seen[] {
  return messages
    .map((m) => ({
      sha256: createHash('sha256').update(m.raw).digest('hex'),
      flags: m.flags.filter((f) => keepDeleted || f !== '\\Deleted').sort(),
      date: m.date.getTime(),
      size: m.raw.length,
    }))
    .sort((a, b) => (a.sha256 + a.date + a.flags.join()).localeCompare(b.sha256 + b.date + b.flags.join()));
}

/**
 * Writes `count` messages straight into a mailbox's maildir (`cur/`, INTERNALDATE = file mtime), far faster than APPEND:
 * for memory tests and benchmarks with tens of thousands of messages. Dovecot assigns UIDs on the next SELECT.
 */
export async function seedMaildir(d: Dovecot, user: string, mailbox: string, count: number, seedValue = 3): Promise<void> {
  const c = await client(d, user);
  await c.mailboxCreate(mailbox).catch(() => undefined);
  await c.logout();
  const dir = join(d.dir, 'mail', user, 'Maildir', ...mailbox.split('/'));
  for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(dir, sub), { recursive: true });
  const rnd = prng(seedValue);
  const letters = ['S', 'R', 'F', 'D'];
  for (let i = 0; i < count; i++) {
    const date = new Date(Date.UTC(2010, 0, 1) + Math.floor(rnd() * 15 * 365 * 86400) * 1000);
    const raw = Buffer.from(
      `From: bulk${i}@example.com\r\nTo: ${user}@example.com\r\nSubject: Bulk message ${i}\r\nMessage-ID: <bulk-${i}@example.com>\r\nDate: ${date.toUTCString()}\r\n\r\n${`payload ${i} `.repeat(20 + Math.floor(rnd() * 200))}\r\n`,
    );
    const flags = letters.filter(() => rnd() < 0.3).sort().join('');
    const file = join(dir, 'cur', `${1_700_000_000 + i}.M${i}P1.kloset,S=${raw.length}:2,${flags}`);
    writeFileSync(file, raw);
    utimesSync(file, date, date);
  }
  execFileSync('chown', ['-R', '65534:65534', join(d.dir, 'mail', user)]);
}
