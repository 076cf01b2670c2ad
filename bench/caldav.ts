// caldav benchmark on a real Radicale: N events (default 5,000) backed up, re-listed, restored and re-restored; prints timings.
// Run: npx tsx bench/caldav.ts [events]  (CALDAV_BENCH_EVENTS also sets the count)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Account } from '../test/integrations/caldav/dav-util.ts';
import { benchEvent } from '../test/integrations/caldav/fixtures.ts';
import { backup, files, restore, snapshot } from '../test/integrations/caldav/host.ts';
import { startRadicale, type RunningServer } from '../test/integrations/caldav/servers.ts';

/** Writes `n` events straight into Radicale's storage folder (a PUT each would take minutes on Radicale). */
export function seedRadicaleCalendar(srv: RunningServer, user: string, name: string, n: number): void {
  const dir = join(srv.dir, 'collections', 'collection-root', user, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '.Radicale.props'), JSON.stringify({ tag: 'VCALENDAR', 'D:displayname': `${name} (${n} events)`, 'C:supported-calendar-component-set': 'VEVENT' }));
  for (let i = 0; i < n; i++) writeFileSync(join(dir, `event-${String(i).padStart(6, '0')}.ics`), benchEvent(i));
}

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const v = await fn();
  process.stdout.write(`${label.padEnd(44)} ${((performance.now() - t) / 1000).toFixed(2)} s\n`);
  return v;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? process.env.CALDAV_BENCH_EVENTS ?? 5000);
  const srv = await startRadicale();
  try {
    const host = new URL(srv.url).host;
    const cfg = (user: string, extra: Record<string, string> = {}): Record<string, string> => ({
      location: `caldav://${host}/${user}/`,
      username: user,
      password: `${user}pw`,
      use_tls: 'false',
      ...extra,
    });
    await new Account(srv.url, 'alice', 'alicepw').collections('/alice/', 'calendar'); // creates alice's home
    seedRadicaleCalendar(srv, 'alice', 'big', n);
    process.stdout.write(`caldav bench: ${n} events on Radicale 3 (${host})\n`);
    await timed('first listing (Radicale builds its cache)', () => backup('caldav', cfg('alice'), { openContent: false }));
    const b = await timed('backup, every object fetched (multiget)', () => backup('caldav', cfg('alice')));
    if (files(b).size !== n + 1 || b.errors.length + b.itemErrors.length > 0) throw new Error(`backup: ${files(b).size} files, ${b.errors.length + b.itemErrors.length} errors`);
    await timed('incremental backup (nothing opened)', () => backup('caldav', cfg('alice'), { openContent: false }));
    await timed('incremental backup, 1% changed (opened)', () =>
      backup('caldav', cfg('alice'), { openContent: (r) => Number(/(\d+)\.ics$/.exec(r.pathname)?.[1] ?? 1) % 100 === 0 }),
    );
    const out = await timed('restore into an empty account (PUTs)', () => restore('caldav', cfg('bob'), snapshot(b), 4));
    if (out.itemErrors.length > 0) throw new Error(`restore: ${out.itemErrors.length} errors, first: ${out.itemErrors[0]?.error}`);
    const again = await timed('restore again (no duplicates, no writes)', () => restore('caldav', cfg('bob'), snapshot(b), 4));
    if (again.itemErrors.length > 0) throw new Error(`re-restore: ${again.itemErrors.length} errors`);
    process.stdout.write(`peak RSS of this process ${(process.memoryUsage().rss / 1024 / 1024).toFixed(0)} MiB\n`);
  } finally {
    await srv.stop();
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
