// s3 memory (issue 3): a 2 GiB object exported into radosgw and imported back, each connector a separate process
// spawned over two pipes like Plakar spawns it, keeps that process's peak RSS (VmHWM in /proc) under 200 MB.
// The bytes are generated and hashed on the fly: nothing of the object is ever held in the test or on disk.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DeleteObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { MEMORY_LIMIT, memoryPeak } from '../../conformance/index.ts';
import { launchPlugin, type LaunchedPlugin } from '../../harness/index.ts';
import { bucketName, configFor, radosgw, sdkClient } from './servers.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const MiB = 1024 * 1024;
/**
 * Size of the object in MiB. Issue 3 asks for 2 GiB: `KLOSET_TS_S3_MEMORY_MIB=2048` (about 90 s on a loaded two-core
 * machine; on 2026-12-07 it passed with peak RSS 181–193 MB exporting and 149–162 MB importing, 73 MB of each being
 * the executable's own pages as the build left them in the page cache: docs/BENCHMARKS.md, S3 section).
 * The suite uses 512 MiB, which fails just the same for a connector that holds a whole object (512 MiB > 200 MB) or
 * a fixed share of it, in a quarter of the time; bench/s3.ts measures the 2 GiB case by default.
 */
const SIZE_MIB = Number(process.env.KLOSET_TS_S3_MEMORY_MIB ?? (process.env.KLOSET_TS_FULL_SCALE ? 2048 : 512));
const SIZE = SIZE_MIB * MiB;
/** With KLOSET_TS_SPAWN=1 the built single executable (dist/s3/s3); otherwise the sources run by Node through tsx. */
const BUILT = process.env.KLOSET_TS_SPAWN === '1';
const MANIFEST = join(ROOT, 'dist', 's3', 'manifest.yaml');

const rgw = await radosgw();
const sdk: S3Client = sdkClient(rgw);
const launched: LaunchedPlugin[] = [];

afterAll(async () => {
  for (const p of launched) await p.dispose();
  sdk.destroy();
  await rgw.stop();
});

async function spawn(kind: 'importer' | 'exporter', config: Record<string, string>): Promise<LaunchedPlugin> {
  if (BUILT && !existsSync(MANIFEST)) throw new Error(`${MANIFEST} is missing: build first (npx tsx scripts/build.ts --only s3)`);
  const p = await launchPlugin(
    BUILT
      ? { manifest: MANIFEST, kind }
      : { executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/s3'), kind] },
  );
  launched.push(p);
  await p.host.init(kind, 's3', config, { maxConcurrency: 4 });
  return p;
}

/** `size` bytes that neither compress nor repeat at part boundaries: a random block with a counter, in 1 MiB chunks. */
async function* generate(size: number, hash: ReturnType<typeof createHash>): AsyncGenerator<Uint8Array> {
  const block = randomBytes(MiB);
  for (let sent = 0, n = 0; sent < size; n++) {
    const piece = Buffer.from(block.subarray(0, Math.min(MiB, size - sent)));
    piece.writeUInt32BE(n, 0);
    hash.update(piece);
    sent += piece.length;
    yield piece;
  }
}

describe('s3: memory', () => {
  it(
    `exporting then importing a ${SIZE_MIB} MiB object keeps each connector process under 200 MB RSS (${BUILT ? 'built executable' : 'sources under tsx'})`,
    async () => {
      const bucket = bucketName('memory');
      const key = 'huge/object.bin';
      try {
        // Export: the host streams the file in 1 MiB chunks; the exporter uploads it as a multipart upload.
        const exporter = await spawn('exporter', configFor(rgw, bucket, 'huge'));
        const sent = createHash('sha256');
        const exported = await exporter.host.exportTree([
          { path: '/', info: { name: 'huge', mode: (0x80000000 | 0o755) >>> 0 } },
          {
            path: '/object.bin',
            info: { mode: 0o644, size: SIZE, modTime: { seconds: 1_700_000_000, nanos: 0 } },
            content: () => generate(SIZE, sent),
          },
        ], { endTimeoutMs: 120_000 });
        expect(exported.status.code, exported.status.details).toBe(0);
        expect(exported.itemErrors).toEqual([]);
        const exportMemory = memoryPeak(exporter.process.pid);
        const head = await sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        expect(head.ContentLength).toBe(SIZE);

        // Import: the importer streams the object back; the host reads it as fast as it comes and hashes it.
        const importer = await spawn('importer', configFor(rgw, bucket, 'huge'));
        const received = createHash('sha256');
        let bytes = 0;
        const imported = await importer.host.importAll({
          maxConcurrency: 2,
          content: (r) =>
            r.isXattr || !r.pathname.endsWith('/object.bin')
              ? undefined
              : new Writable({
                  write(chunk: Buffer, _encoding, done) {
                    received.update(chunk);
                    bytes += chunk.length;
                    done();
                  },
                }),
        });
        expect(imported.status.code).toBe(0);
        expect(imported.itemErrors).toEqual([]);
        const importMemory = memoryPeak(importer.process.pid);
        expect(bytes).toBe(SIZE);
        expect(received.digest('hex')).toBe(sent.digest('hex'));

        process.stderr.write(`s3 memory: ${SIZE_MIB} MiB object, exporter ${exportMemory.text}, importer ${importMemory.text}\n`);
        expect(exportMemory.peak, `exporter ${exportMemory.text}`).toBeLessThan(MEMORY_LIMIT);
        expect(importMemory.peak, `importer ${importMemory.text}`).toBeLessThan(MEMORY_LIMIT);
      } finally {
        // radosgw keeps objects in RAM (memstore): free the space for the other tests of the run.
        await sdk.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined);
      }
    },
    1_200_000,
  );
});
