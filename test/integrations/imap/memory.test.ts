// imap importer memory: a 50,000-message mailbox backed up through a spawned importer (two pipes, like Plakar) stays under
// 200 MB RSS, read from /proc of the spawned process. With KLOSET_TS_SPAWN=1 and a build in dist/imap, the built executable runs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEMORY_LIMIT, memoryPeak } from '../../conformance/index.ts';
import { launchPlugin } from '../../harness/index.ts';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { seedMaildir } from './helpers.ts';

/** Messages in the big mailbox (IMAP_MEMORY_MESSAGES overrides). */
const COUNT = Number(process.env.IMAP_MEMORY_MESSAGES ?? 50_000);
/**
 * Every n-th message is opened and read (IMAP_MEMORY_OPEN_EVERY; 1 reads all, as bench/imap.ts does). Every record is
 * listed, with its metadata fetched in UID batches; reading a tenth of the bodies keeps the test within minutes on a
 * shared two-core machine while still streaming thousands of bodies through the pool.
 */
const OPEN_EVERY = Math.max(1, Number(process.env.IMAP_MEMORY_OPEN_EVERY ?? 10));
const ROOT = join(import.meta.dirname, '..', '..', '..');
const MANIFEST = join(ROOT, 'dist', 'imap', 'manifest.yaml');
const BUILT = process.env.KLOSET_TS_SPAWN === '1' && existsSync(MANIFEST);

let d: Dovecot;
beforeAll(async () => {
  d = await startDovecot();
  // Written straight into the maildir: 50,000 APPENDs would take minutes.
  await seedMaildir(d, 'alice', 'Big', COUNT);
}, 600_000);
afterAll(async () => {
  await d?.stop();
});

describe('imap importer: memory', () => {
  it(`backs up a ${COUNT}-message mailbox (${BUILT ? 'built executable' : 'sources'}) in UID batches, reading every ${OPEN_EVERY === 1 ? '' : `${OPEN_EVERY}th `}body, with peak RSS under 200 MB`, async () => {
    // tsx alone can take longer than the harness's 20 s SETTINGS deadline on a loaded machine.
    const options = { settingsTimeoutMs: 120_000 };
    const p = BUILT
      ? await launchPlugin({ manifest: MANIFEST, kind: 'importer' }, options)
      : await launchPlugin({ executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/imap'), 'importer'] }, options);
    try {
      await p.host.init('importer', 'imap', { location: `imap://${d.host}:${d.port}`, username: 'alice', password: 'alicepw', tls: 'no-tls', include: 'Big' }, { maxConcurrency: 4 });
      // Bodies are read as in a first backup (the bytes are counted, not kept); the others are acked like cached files.
      let bytes = 0;
      let expectedBytes = 0;
      let n = 0;
      const out = await p.host.importAll({
        maxConcurrency: 4,
        readAhead: 64,
        openContent: (r) => {
          if (!r.pathname.endsWith('.eml') || n++ % OPEN_EVERY !== 0) return false;
          expectedBytes += Number(r.fileInfo?.size ?? 0);
          return true;
        },
        content: () => new Writable({ write: (chunk: Buffer, _enc, done) => void ((bytes += chunk.length), done()) }),
      });
      expect(out.status.code).toBe(0);
      expect(out.records.filter((r) => r.pathname.endsWith('.eml')).length).toBe(COUNT);
      expect(out.itemErrors).toEqual([]);
      expect(out.stats.opens).toBe(Math.ceil(COUNT / OPEN_EVERY));
      expect(bytes).toBe(expectedBytes);
      const memory = memoryPeak(p.process.pid);
      process.stderr.write(`imap memory: ${COUNT} messages, every ${OPEN_EVERY === 1 ? '' : `${OPEN_EVERY}th `}body read, importer ${memory.text}\n`);
      expect(memory.peak).toBeGreaterThan(0);
      expect(memory.peak, `importer ${memory.text}`).toBeLessThan(MEMORY_LIMIT);
    } finally {
      await p.dispose();
    }
  }, 1_200_000);
});
