// caldav benchmark on real servers, the connector spawned over two pipes like Plakar does: a 5,000-event calendar
// backed up from Radicale (listing with getlastmodified, multiget read-ahead) and from Xandikos (one query while
// listing), backed up again, then restored; each step next to a raw client doing the same HTTP work without Plakar.
// Prints a table: objects/s, wall time, the connector's CPU and peak RSS; the headline figures also as `BENCH` lines
// (bench/report.ts), each backup and restore beside the raw client's rate for the same work.
// Run: npx tsx bench/caldav.ts  (CALDAV_BENCH_EVENTS, CALDAV_BENCH_RESTORE change the sizes;
//   CALDAV_BENCH_EXE=dist/caldav/caldav uses the built executable instead of the TypeScript sources)
//   --smoke (or KLOSET_TS_BENCH_SMOKE=1) checks that everything runs with small sizes (200 events, 50 restored).
import os from 'node:os';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { launchPlugin, type ExportEntry, type ImportOptions, type LaunchedPlugin } from '../test/harness/index.ts';
import { Account } from '../test/integrations/caldav/dav-util.ts';
import { benchEvent } from '../test/integrations/caldav/fixtures.ts';
import { files, snapshot, type Backup } from '../test/integrations/caldav/host.ts';
import { seedRadicale, seedXandikos, startRadicale, startXandikos } from '../test/integrations/caldav/servers.ts';
import { MB, printFigure, processUsage, smokeMode } from './report.ts';

const ROOT = join(import.meta.dirname, '..');
const SMOKE = smokeMode();
/** Events in the big calendar. */
const EVENTS = Number(process.env.CALDAV_BENCH_EVENTS ?? (SMOKE ? 200 : 5000));
/** Events restored (both servers spend 20–150 ms per PUT, Radicale more as the calendar grows). */
const RESTORE = Math.min(EVENTS, Number(process.env.CALDAV_BENCH_RESTORE ?? (SMOKE ? 50 : 500)));
/** The host's maxconcurrency, and the raw client's parallel requests. */
const PARALLEL = 4;

const name = (i: number): string => `event-${String(i).padStart(6, '0')}.ics`;
const events = (n: number): Array<[string, string]> => Array.from({ length: n }, (_, i) => [name(i), benchEvent(i)]);

interface Row {
  server: string;
  step: string;
  objects: number;
  wall: number;
  /** Connector CPU seconds (undefined for the raw client, which runs in this process). */
  cpu?: number;
  rss?: number;
}
const rows: Row[] = [];

/** The row the last step recorded. */
const lastRow = (): Row => rows[rows.length - 1] as Row;

/**
 * Prints a connector step's rate as a `BENCH` line, beside the raw client's rate for the same work when there is one;
 * for a backup, the importer's peak RSS too.
 */
function printStep(measure: string, step: Row, raw?: Row): void {
  const limit = raw ? { limit: raw.objects / raw.wall } : {};
  printFigure({ integration: 'caldav', measure: `${measure}, ${step.server}`, value: step.objects / step.wall, unit: 'objects/s', ...limit });
  if (measure.startsWith('backup') && step.rss !== undefined) {
    printFigure({ integration: 'caldav', measure: `importer peak RSS, ${measure}, ${step.server}`, value: step.rss / MB, unit: 'MB' });
  }
}

/** Spawns one connector (built executable with CALDAV_BENCH_EXE, else the sources through tsx) and sends Init. */
async function connector(kind: 'importer' | 'exporter', config: Record<string, string>): Promise<{ p: LaunchedPlugin; init: Backup['init'] }> {
  const exe = process.env.CALDAV_BENCH_EXE;
  const p = exe
    ? await launchPlugin({ executable: join(ROOT, exe), args: [kind] })
    : await launchPlugin(
        { executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/caldav'), kind] },
        { settingsTimeoutMs: 90_000 },
      );
  const init = await p.host.init(kind, 'caldav', config, { maxConcurrency: PARALLEL });
  return { p, init };
}

/** Runs one connector step and records its row; CPU counts from after Init (not the start-up or tsx's compilation). */
async function step<T>(
  server: string,
  label: string,
  objects: number,
  kind: 'importer' | 'exporter',
  config: Record<string, string>,
  run: (p: LaunchedPlugin, init: Backup['init']) => Promise<T>,
): Promise<T> {
  const { p, init } = await connector(kind, config);
  try {
    const before = processUsage(p.process.pid).cpu;
    const t = performance.now();
    const v = await run(p, init);
    const wall = (performance.now() - t) / 1000;
    const after = processUsage(p.process.pid);
    rows.push({ server, step: label, objects, wall, cpu: after.cpu - before, rss: after.rss });
    process.stderr.write(`  ${server}: ${label}: ${wall.toFixed(1)} s\n`);
    return v;
  } finally {
    await p.host.close().catch(() => undefined);
    await p.dispose();
  }
}

/** Times a raw-client step (plain fetch in this process, no Plakar protocol, no parsing). */
async function raw(server: string, label: string, objects: number, run: () => Promise<void>): Promise<void> {
  const t = performance.now();
  await run();
  const wall = (performance.now() - t) / 1000;
  rows.push({ server, step: label, objects, wall });
  process.stderr.write(`  ${server}: ${label}: ${wall.toFixed(1)} s\n`);
}

/** A full or partial backup through a spawned importer; every object must succeed. */
function backup(server: string, label: string, objects: number, config: Record<string, string>, options: ImportOptions = {}): Promise<Backup> {
  return step(server, label, objects, 'importer', config, async (p, init) => {
    const out = await p.host.importAll({ maxConcurrency: PARALLEL, ...options });
    if (out.errors.length + out.itemErrors.length > 0) throw new Error(`${label}: ${out.errors.length + out.itemErrors.length} errors`);
    return { init, ...out };
  });
}

/** A restore through a spawned exporter; every object must succeed. */
async function restore(server: string, label: string, config: Record<string, string>, entries: ExportEntry[]): Promise<void> {
  const objects = entries.filter((e) => e.path.endsWith('.ics')).length;
  await step(server, label, objects, 'exporter', config, async (p) => {
    const out = await p.host.exportTree(entries, { endTimeoutMs: 3_600_000 });
    if (out.itemErrors.length > 0) throw new Error(`${label}: ${out.itemErrors.length} errors, first: ${out.itemErrors[0]?.error}`);
  });
}

function check(b: Backup, want: number): void {
  if (files(b).size !== want) throw new Error(`backup: ${files(b).size} files (want ${want})`);
}

/** Basic-auth fetch for the raw client. */
function client(user?: string): typeof fetch {
  const auth = user ? `Basic ${Buffer.from(`${user}:${user}pw`).toString('base64')}` : undefined;
  return (input, init = {}) => {
    const headers = new Headers(init.headers ?? {});
    if (auth) headers.set('authorization', auth);
    return fetch(input, { ...init, headers });
  };
}

const XMLNS = 'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"';

/** Raw backup by listing + calendar-multiget batches of 100, `PARALLEL` at a time; returns the objects received. */
async function rawMultiget(f: typeof fetch, collection: string): Promise<number> {
  const listing = await f(collection, {
    method: 'PROPFIND',
    headers: { depth: '1', 'content-type': 'application/xml' },
    body: `<?xml version="1.0"?><d:propfind ${XMLNS}><d:prop><d:getetag/><d:getlastmodified/></d:prop></d:propfind>`,
  });
  const text = await listing.text();
  const base = new URL(collection).pathname;
  const hrefs = [...text.matchAll(/<(?:\w+:)?href>([^<]+)<\/(?:\w+:)?href>/g)].map((m) => m[1] as string).filter((h) => h !== base && h.endsWith('.ics'));
  const limit = pLimit(PARALLEL);
  let got = 0;
  const batches: string[][] = [];
  for (let i = 0; i < hrefs.length; i += 100) batches.push(hrefs.slice(i, i + 100));
  await Promise.all(
    batches.map((batch) =>
      limit(async () => {
        const res = await f(collection, {
          method: 'REPORT',
          headers: { depth: '1', 'content-type': 'application/xml' },
          body: `<?xml version="1.0"?><c:calendar-multiget ${XMLNS}><d:prop><d:getetag/><c:calendar-data/></d:prop>${batch.map((h) => `<d:href>${h}</d:href>`).join('')}</c:calendar-multiget>`,
        });
        const n = ((await res.text()).match(/BEGIN:VCALENDAR/g) ?? []).length;
        got += n;
      }),
    ),
  );
  return got;
}

/** Raw backup with one calendar-query returning every object's data. */
async function rawQuery(f: typeof fetch, collection: string): Promise<number> {
  const res = await f(collection, {
    method: 'REPORT',
    headers: { depth: '1', 'content-type': 'application/xml' },
    body: `<?xml version="1.0"?><c:calendar-query ${XMLNS}><d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"/></c:filter></c:calendar-query>`,
  });
  return ((await res.text()).match(/BEGIN:VCALENDAR/g) ?? []).length;
}

/** Raw restore: MKCALENDAR, then one conditional PUT per object, `PARALLEL` at a time. */
async function rawRestore(f: typeof fetch, collection: string, objects: Array<[string, string]>): Promise<void> {
  const mk = await f(collection, { method: 'MKCALENDAR' });
  await mk.arrayBuffer();
  if (mk.status !== 201) throw new Error(`MKCALENDAR ${collection}: ${mk.status}`);
  const limit = pLimit(PARALLEL);
  await Promise.all(
    objects.map(([n, body]) =>
      limit(async () => {
        const res = await f(new URL(n, collection), { method: 'PUT', headers: { 'content-type': 'text/calendar; charset=utf-8', 'if-none-match': '*' }, body });
        await res.arrayBuffer();
        if (res.status >= 300) throw new Error(`PUT ${n}: ${res.status}`);
      }),
    ),
  );
}

function expectCount(got: number, want: number, what: string): void {
  if (got !== want) throw new Error(`${what}: ${got} objects (want ${want})`);
}

async function radicale(): Promise<void> {
  const srv = await startRadicale();
  const S = 'Radicale 3';
  try {
    const host = new URL(srv.url).host;
    const cfg = (user: string, path = `/${user}/`): Record<string, string> => ({ location: `caldav://${host}${path}`, username: user, password: `${user}pw`, use_tls: 'false' });
    await new Account(srv.url, 'alice', 'alicepw').collections('/alice/', 'calendar'); // creates alice's home
    seedRadicale(srv, 'alice', 'big', `Big (${EVENTS} events)`, events(EVENTS));
    process.stderr.write(`${S}: ${EVENTS} events\n`);
    await backup(S, 'listing only, cold (Radicale parses every object once)', EVENTS, cfg('alice'), { openContent: false });
    const b = await backup(S, 'backup, every object read (multiget read-ahead)', EVENTS, cfg('alice'));
    check(b, EVENTS + 1);
    const full = lastRow();
    await raw(S, 'raw client: PROPFIND + multiget batches of 100', EVENTS, async () => expectCount(await rawMultiget(client('alice'), `${srv.url}alice/big/`), EVENTS, 'raw multiget'));
    printStep(`backup of a ${EVENTS}-event calendar`, full, lastRow());
    await backup(S, 'incremental backup, nothing changed', EVENTS, cfg('alice'), { openContent: false });
    printStep(`incremental backup of a ${EVENTS}-event calendar, nothing changed`, lastRow());
    await backup(S, 'incremental backup, 1% read', EVENTS, cfg('alice'), {
      openContent: (r) => Number(/(\d+)\.ics$/.exec(r.pathname)?.[1] ?? 1) % 100 === 0,
    });
    const keep = new Set(['/', '/big', '/big/.collection.json', ...events(RESTORE).map(([n]) => `/big/${n}`)]);
    const entries = snapshot(b).filter((e) => keep.has(e.path));
    await restore(S, 'restore into an empty account', cfg('bob'), entries);
    const restored = lastRow();
    await restore(S, 'the same restore again (nothing written)', cfg('bob'), entries);
    await raw(S, 'raw client: MKCALENDAR + PUT If-None-Match', RESTORE, () => rawRestore(client('carol'), `${srv.url}carol/big/`, events(RESTORE)));
    printStep(`restore of ${RESTORE} events into an empty calendar`, restored, lastRow());
  } finally {
    await srv.stop();
  }
}

async function xandikos(): Promise<void> {
  const [src, dst] = await Promise.all([startXandikos(), startXandikos()]);
  const S = 'Xandikos 0.2';
  try {
    const cfg = (url: string, path: string): Record<string, string> => ({ location: `caldav://${new URL(url).host}${path}`, use_tls: 'false' });
    await new Account(src.url).mkcalendar('/user/calendars/big/', { displayName: `Big (${EVENTS} events)` });
    seedXandikos(src, '/user/calendars/big/', events(EVENTS));
    process.stderr.write(`${S}: ${EVENTS} events\n`);
    const b = await backup(S, 'backup (one calendar-query while listing)', EVENTS, cfg(src.url, '/user/calendars/big/'));
    check(b, EVENTS + 1);
    const full = lastRow();
    await raw(S, 'raw client: one calendar-query', EVENTS, async () => expectCount(await rawQuery(client(), `${src.url}user/calendars/big/`), EVENTS, 'raw query'));
    printStep(`backup of a ${EVENTS}-event calendar`, full, lastRow());
    await backup(S, 'incremental backup, nothing changed (the query again)', EVENTS, cfg(src.url, '/user/calendars/big/'), { openContent: false });
    const keep = new Set(['/', '/.collection.json', ...events(RESTORE).map(([n]) => `/${n}`)]);
    await restore(S, 'restore into an empty server', cfg(dst.url, '/user/calendars/restored/'), snapshot(b).filter((e) => keep.has(e.path)));
    const restored = lastRow();
    await raw(S, 'raw client: MKCALENDAR + PUT If-None-Match', RESTORE, () => rawRestore(client(), `${dst.url}user/calendars/raw/`, events(RESTORE)));
    printStep(`restore of ${RESTORE} events into an empty calendar`, restored, lastRow());
  } finally {
    await Promise.all([src.stop(), dst.stop()]);
  }
}

function table(): string {
  const lines = ['| server | step | objects | wall | objects/s | connector CPU | connector peak RSS |', '|---|---|---:|---:|---:|---:|---:|'];
  let last = '';
  for (const r of rows) {
    const cpu = r.cpu === undefined ? '—' : `${r.cpu.toFixed(1)} s`;
    const rss = r.rss === undefined ? '—' : `${(r.rss / MB).toFixed(0)} MB`;
    lines.push(`| ${r.server === last ? '' : r.server} | ${r.step} | ${r.objects} | ${r.wall.toFixed(1)} s | ${(r.objects / r.wall).toFixed(0)} | ${cpu} | ${rss} |`);
    last = r.server;
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  const started = new Date().toISOString();
  await radicale();
  await xandikos();
  process.stdout.write(
    `caldav bench — ${started}, ${os.cpus().length} CPUs, load at start ${load}, now ${os.loadavg()[0]?.toFixed(1)}; ` +
      `${EVENTS} events, ${RESTORE} restored; connector ${process.env.CALDAV_BENCH_EXE ?? 'from sources (tsx)'}, host maxconcurrency ${PARALLEL}\n\n${table()}\n`,
  );
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
