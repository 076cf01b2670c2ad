// imap importer memory: a large mailbox listed through a spawned importer (two pipes, like Plakar) stays under 200 MB RSS.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchPlugin } from '../../harness/index.ts';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { seedMaildir } from './helpers.ts';

/** Messages in the big mailbox (IMAP_MEMORY_MESSAGES overrides; `npx tsx bench/imap.ts` backs up 50,000). */
const COUNT = Number(process.env.IMAP_MEMORY_MESSAGES ?? 5000);
const ROOT = join(import.meta.dirname, '..', '..', '..');

let d: Dovecot;
beforeAll(async () => {
  d = await startDovecot();
  await seedMaildir(d, 'alice', 'Big', COUNT);
});
afterAll(async () => {
  await d?.stop();
});

describe('imap importer: memory', () => {
  it(`lists a ${COUNT}-message mailbox in UID batches with peak RSS under 200 MB, opening a sample of bodies`, async () => {
    const p = await launchPlugin({
      executable: process.execPath,
      args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/imap'), 'importer'],
    });
    try {
      await p.host.init('importer', 'imap', { location: `imap://${d.host}:${d.port}`, username: 'alice', password: 'alicepw', tls: 'no-tls', include: 'Big' }, { maxConcurrency: 4 });
      // Every 50th message is opened (a later backup opens only what changed); the rest is acked like a cached file.
      let n = 0;
      const out = await p.host.importAll({ maxConcurrency: 2, readAhead: 64, openContent: (r) => r.pathname.endsWith('.eml') && n++ % 50 === 0, content: () => undefined });
      expect(out.status.code).toBe(0);
      expect(out.records.filter((r) => r.pathname.endsWith('.eml')).length).toBe(COUNT);
      expect(out.itemErrors).toEqual([]);
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.process.pid}/status`, 'utf8'));
      const rss = Number(m?.[1]) * 1024;
      expect(rss).toBeGreaterThan(0);
      expect(rss).toBeLessThan(200 * 1024 * 1024);
    } finally {
      await p.dispose();
    }
  }, 600_000);
});
