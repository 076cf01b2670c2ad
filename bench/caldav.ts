// caldav benchmark on real servers: a 5,000-event calendar backed up from Radicale (multiget read-ahead) and from
// Xandikos (one query while listing), listed again, then restored; prints wall time and this process's CPU.
// Run: npx tsx bench/caldav.ts  (CALDAV_BENCH_EVENTS, CALDAV_BENCH_RESTORE change the sizes)
import os from 'node:os';
import { Account } from '../test/integrations/caldav/dav-util.ts';
import { benchEvent } from '../test/integrations/caldav/fixtures.ts';
import { backup, files, restore, snapshot, type Backup } from '../test/integrations/caldav/host.ts';
import { seedRadicale, seedXandikos, startRadicale, startXandikos } from '../test/integrations/caldav/servers.ts';

/** Events in the big calendar. */
const EVENTS = Number(process.env.CALDAV_BENCH_EVENTS ?? 5000);
/** Events restored (both servers spend 20–150 ms per PUT, Radicale more as the calendar grows). */
const RESTORE = Math.min(EVENTS, Number(process.env.CALDAV_BENCH_RESTORE ?? 500));

const name = (i: number): string => `event-${String(i).padStart(6, '0')}.ics`;
const events = (n: number): Array<[string, string]> => Array.from({ length: n }, (_, i) => [name(i), benchEvent(i)]);

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const cpu = process.cpuUsage();
  const v = await fn();
  const used = process.cpuUsage(cpu);
  process.stdout.write(
    `  ${label.padEnd(52)} ${((performance.now() - t) / 1000).toFixed(2).padStart(7)} s wall ${((used.user + used.system) / 1e6).toFixed(2).padStart(6)} s CPU\n`,
  );
  return v;
}

function check(b: Backup, want: number): void {
  if (files(b).size !== want || b.errors.length + b.itemErrors.length > 0) {
    throw new Error(`backup: ${files(b).size} files (want ${want}), ${b.errors.length + b.itemErrors.length} errors`);
  }
}

async function radicale(): Promise<void> {
  const srv = await startRadicale();
  try {
    const host = new URL(srv.url).host;
    const cfg = (user: string): Record<string, string> => ({ location: `caldav://${host}/${user}/`, username: user, password: `${user}pw`, use_tls: 'false' });
    await new Account(srv.url, 'alice', 'alicepw').collections('/alice/', 'calendar'); // creates alice's home
    seedRadicale(srv, 'alice', 'big', `Big (${EVENTS} events)`, events(EVENTS));
    process.stdout.write(`Radicale 3 (getlastmodified listed: objects read on demand, multiget read-ahead), ${EVENTS} events\n`);
    await timed('first listing (Radicale parses every object once)', () => backup('caldav', cfg('alice'), { openContent: false }));
    const b = await timed('first backup, every object read', () => backup('caldav', cfg('alice')));
    check(b, EVENTS + 1);
    await timed('incremental backup, nothing changed', () => backup('caldav', cfg('alice'), { openContent: false }));
    await timed('incremental backup, 1% changed', () =>
      backup('caldav', cfg('alice'), { openContent: (r) => Number(/(\d+)\.ics$/.exec(r.pathname)?.[1] ?? 1) % 100 === 0 }),
    );
    const keep = new Set(['/', '/big', '/big/.collection.json', ...events(RESTORE).map(([n]) => `/big/${n}`)]);
    const entries = snapshot(b).filter((e) => keep.has(e.path));
    const out = await timed(`restore of ${RESTORE} into an empty account`, () => restore('caldav', cfg('bob'), entries, 4));
    if (out.itemErrors.length > 0) throw new Error(`restore: ${out.itemErrors.length} errors, first: ${out.itemErrors[0]?.error}`);
    const again = await timed(`restore of the same ${RESTORE} again (nothing written)`, () => restore('caldav', cfg('bob'), entries, 4));
    if (again.itemErrors.length > 0) throw new Error(`re-restore: ${again.itemErrors.length} errors`);
  } finally {
    await srv.stop();
  }
}

async function xandikos(): Promise<void> {
  const [src, dst] = await Promise.all([startXandikos(), startXandikos()]);
  try {
    const cfg = (url: string, path: string): Record<string, string> => ({ location: `caldav://${new URL(url).host}${path}`, use_tls: 'false' });
    await new Account(src.url).mkcalendar('/user/calendars/big/', { displayName: `Big (${EVENTS} events)` });
    seedXandikos(src, '/user/calendars/big/', events(EVENTS));
    process.stdout.write(`Xandikos 0.2 (no getlastmodified: the calendar is read with one query while listing), ${EVENTS} events\n`);
    const b = await timed('backup', () => backup('caldav', cfg(src.url, '/user/calendars/big/')));
    check(b, EVENTS + 1);
    await timed('incremental backup, nothing changed', () => backup('caldav', cfg(src.url, '/user/calendars/big/'), { openContent: false }));
    const keep = new Set(['/', '/.collection.json', ...events(RESTORE).map(([n]) => `/${n}`)]);
    const out = await timed(`restore of ${RESTORE} into an empty server`, () =>
      restore('caldav', cfg(dst.url, '/user/calendars/restored/'), snapshot(b).filter((e) => keep.has(e.path)), 4),
    );
    if (out.itemErrors.length > 0) throw new Error(`restore: ${out.itemErrors.length} errors, first: ${out.itemErrors[0]?.error}`);
  } finally {
    await Promise.all([src.stop(), dst.stop()]);
  }
}

async function main(): Promise<void> {
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  process.stdout.write(`caldav bench — ${new Date().toISOString()}, ${os.cpus().length} CPUs, load ${load}; host and connector in this process (CPU includes both)\n`);
  await radicale();
  await xandikos();
  process.stdout.write(`peak RSS of this process ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB\n`);
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
