// onedrive memory: a 2 GiB file restored (upload session streamed from the snapshot) and backed up again (verified
// ranged download) through the spawned executable, each connector staying under 200 MB of resident memory.
// With KLOSET_TS_SPAWN=1 and a build in dist/, the built executable runs; otherwise the sources run through tsx.
// ONEDRIVE_MEMORY_MIB sets the file size (default 2048, the figure of issue #8).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEMORY_LIMIT, memoryPeak, type MemoryPeak } from '../../conformance/index.ts';
import { launchPlugin, type LaunchedPlugin } from '../../harness/index.ts';
import type { GraphEmulator } from '../../servers/graph-emulator.ts';
import { emulator, itemAt } from './helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const MANIFEST = join(ROOT, 'dist', 'onedrive', 'manifest.yaml');
const BUILT = process.env.KLOSET_TS_SPAWN === '1' && existsSync(MANIFEST);
const MiB = 1024 * 1024;
const SIZE = Number(process.env.ONEDRIVE_MEMORY_MIB ?? (process.env.KLOSET_TS_FULL_SCALE ? 2048 : 512)) * MiB;

async function launch(kind: 'importer' | 'exporter'): Promise<LaunchedPlugin> {
  if (BUILT) return launchPlugin({ manifest: MANIFEST, kind });
  return launchPlugin({ executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/onedrive'), kind] });
}

/** The file: one random MiB repeated with a counter in each MiB, so that no two fragments are alike. */
function* synthetic(size: number, block: Buffer): Generator<Buffer> {
  for (let sent = 0, n = 0; sent < size; sent += MiB, n++) {
    const piece = Buffer.from(block.subarray(0, Math.min(MiB, size - sent)));
    piece.writeUInt32LE(n, 0);
    yield piece;
  }
}

let emu: GraphEmulator;
beforeAll(async () => {
  emu = await emulator();
});
afterAll(async () => {
  await emu?.close();
});

describe(`onedrive memory (${BUILT ? 'built executable' : 'sources'})`, () => {
  it(`restores and backs up a ${Math.round(SIZE / MiB)} MiB file with each connector under 200 MB of RSS`, async () => {
    const block = randomBytes(MiB);
    const sent = createHash('sha256');
    const exp = await launch('exporter');
    let exporterRss: MemoryPeak;
    try {
      await exp.host.init('exporter', 'onedrive', emu.config('onedrive:///Memory'), { maxConcurrency: 4 });
      const out = await exp.host.exportTree(
        [
          { path: '/', info: { name: 'Memory', mode: 0x800001ed } },
          {
            path: '/huge.bin',
            info: { name: 'huge.bin', mode: 0o644, size: SIZE, modTime: { seconds: 1_700_000_000, nanos: 0 } },
            content: async function* () {
              for (const piece of synthetic(SIZE, block)) {
                sent.update(piece);
                yield piece;
              }
            },
          },
        ],
        { endTimeoutMs: 1_200_000 },
      );
      expect(out.itemErrors).toEqual([]);
      exporterRss = memoryPeak(exp.process.pid);
    } finally {
      expect((await exp.dispose()).code).toBe(0);
    }
    const digest = sent.digest('hex');
    const stored = itemAt(emu, emu.me, '/Memory/huge.bin');
    expect(stored?.size).toBe(SIZE);
    expect(stored?.hashes?.sha256Hash).toBe(digest.toUpperCase());

    const imp = await launch('importer');
    let importerRss: MemoryPeak;
    const received = createHash('sha256');
    let bytes = 0;
    try {
      await imp.host.init('importer', 'onedrive', emu.config('onedrive:///Memory'), { maxConcurrency: 4 });
      const out = await imp.host.importAll({
        content: (r) =>
          !r.isXattr && r.pathname === '/Memory/huge.bin'
            ? new Writable({
                write(chunk: Buffer, _encoding, cb) {
                  received.update(chunk);
                  bytes += chunk.length;
                  cb();
                },
              })
            : undefined,
        endTimeoutMs: 1_200_000,
      });
      expect(out.itemErrors).toEqual([]);
      importerRss = memoryPeak(imp.process.pid);
    } finally {
      expect((await imp.dispose()).code).toBe(0);
    }
    expect(bytes).toBe(SIZE);
    expect(received.digest('hex')).toBe(digest);
    console.info(`onedrive memory: ${Math.round(SIZE / MiB)} MiB file, exporter ${exporterRss.text}, importer ${importerRss.text}`);
    expect(exporterRss.peak).toBeGreaterThan(0);
    expect(importerRss.peak).toBeGreaterThan(0);
    expect(exporterRss.peak, `exporter ${exporterRss.text}`).toBeLessThan(MEMORY_LIMIT);
    expect(importerRss.peak, `importer ${importerRss.text}`).toBeLessThan(MEMORY_LIMIT);
  }, 3_600_000);
});
