// The s3 round trip of issue 3: a generated bucket backed up and restored to another bucket, compared key by key.
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { keyToPath, markerToPath, selfPath } from '../../../integrations/s3/map.ts';
import type { OpenConnector } from '../../conformance/index.ts';
import { AWKWARD_KEYS, MARKER_KEYS, restoreEntries, seedBucket, type BucketFixture } from './bucket-fixture.ts';
import { s3Connectors } from './connect.ts';
import { describeBucket } from './inspect.ts';
import { bucketName, configFor, radosgw, sdkClient } from './servers.ts';

/**
 * Objects in the generated bucket. Issue 3 asks for 3,000 and a 200 MiB object; on the two-core test machines
 * radosgw serves about 200 requests/s and 10 MB/s of uploads, which makes that run take about 3.5 minutes on its own,
 * so the suite runs 400 objects and 32 MiB, and `KLOSET_TS_S3_OBJECTS=3000 KLOSET_TS_S3_LARGE_MIB=200` the full size.
 */
const OBJECTS = Number(process.env.KLOSET_TS_S3_OBJECTS ?? (process.env.KLOSET_TS_FULL_SCALE ? 3000 : 400));
/** Size of the large object in MiB. */
const LARGE_MIB = Number(process.env.KLOSET_TS_S3_LARGE_MIB ?? (process.env.KLOSET_TS_FULL_SCALE ? 200 : 32));

const rgw = await radosgw();
const sdk: S3Client = sdkClient(rgw);
const connectors = s3Connectors([rgw.secretKey]);

afterAll(async () => {
  await connectors.disposeAll();
  sdk.destroy();
  await rgw.stop();
});

function connector(kind: 'importer' | 'exporter', config: Record<string, string>): Promise<OpenConnector> {
  return connectors.open(kind, config, { maxConcurrency: 8 });
}

describe('s3 importer and exporter: round trip of a generated bucket', () => {
  let fixture: BucketFixture;

  it(
    `backs up ${OBJECTS} objects (awkward keys, metadata, tags, markers, a ${LARGE_MIB} MiB object) and restores them identically`,
    async () => {
      const t0 = Date.now();
      const lap = (what: string): void => {
        if (process.env.KLOSET_TS_S3_TIMINGS) process.stderr.write(`s3 round trip: ${what} after ${Date.now() - t0} ms\n`);
      };
      fixture = await seedBucket(sdk, bucketName('rt-src'), 'source/', OBJECTS, LARGE_MIB * 1024 * 1024);
      lap('seeded');
      const importer = await connector('importer', configFor(rgw, fixture.bucket, 'source'));
      expect(importer.host.initResult).toMatchObject({ origin: `${rgw.endpoint.slice(7)}/${fixture.bucket}`, type: 's3', root: '/source' });
      const imported = await importer.host.importAll({ maxConcurrency: 4, content: 'bytes' });
      lap('imported');
      expect(imported.status.code).toBe(0);
      expect(imported.errors).toEqual([]);
      expect(imported.itemErrors).toEqual([]);
      expect(imported.violations).toEqual([]);

      // Every object is one file record, at the lossless path of its key.
      const files = new Map(imported.records.filter((r) => !r.isXattr && r.hasReader).map((r) => [r.pathname, r]));
      const expectedFiles = [...fixture.digests.keys()].filter((k) => !MARKER_KEYS.includes(k));
      expect(files.size).toBe(expectedFiles.length);
      const pathOf = (key: string): string => (key === 'awkward/both-file-and-dir' ? selfPath(`source/${key}`) : keyToPath(`source/${key}`));
      for (const key of expectedFiles) expect(files.has(pathOf(key)), key).toBe(true);
      // Markers are directories flagged as such; every prefix is a directory record.
      const dirs = new Map(imported.records.filter((r) => !r.isXattr && !r.hasReader).map((r) => [r.pathname, r]));
      for (const m of MARKER_KEYS) expect(dirs.get(markerToPath(`source/${m}`))?.extendedAttributes).toContain('s3.v1.directory-marker=true');
      expect(dirs.has('/source/top-1/level0-1')).toBe(true);
      // Metadata travels as names carrying values, and as xattr records with the raw values.
      const sample = files.get(keyToPath('source/top-0/object-0.dat'));
      expect(sample?.extendedAttributes).toEqual(
        expect.arrayContaining(['s3.v1.content-type=text%2Fplain', 's3.v1.meta.index=0', 's3.v1.tag.team=team-0', 's3.v1.cache-control=max-age%3D3600%2C%20public']),
      );
      const xattr = imported.records.find((r) => r.isXattr && r.pathname === sample?.pathname && r.xattrName.startsWith('s3.v1.cache-control='));
      expect(imported.contents.get(`xattr:${xattr?.pathname}:${xattr?.xattrName}`)?.toString()).toBe('max-age=3600, public');
      // X-Amz-Meta-Mtime wins over Last-Modified.
      expect(files.get(keyToPath('source/top-0/object-0.dat'))?.fileInfo?.modTime?.seconds).toBe(1_600_000_000);

      const dst = bucketName('rt-dst');
      const exporter = await connector('exporter', configFor(rgw, dst, 'restored'));
      const exported = await exporter.host.exportTree(restoreEntries(imported, '/source'));
      lap('exported');
      expect(exported.status.code, exported.status.details).toBe(0);
      expect(exported.itemErrors).toEqual([]);

      const [before, after] = await Promise.all([describeBucket(sdk, fixture.bucket, 'source/'), describeBucket(sdk, dst, 'restored/')]);
      lap('described');
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
      for (const [key, src] of before) {
        const got = after.get(key);
        expect(got, key).toBeDefined();
        if (!got) continue;
        expect(got.sha256, key).toBe(src.sha256);
        expect({ ...got, metadata: undefined }, key).toEqual({ ...src, metadata: undefined });
        const { mtime: srcMtime, ...srcMeta } = src.metadata;
        const { mtime: gotMtime, ...gotMeta } = got.metadata;
        expect(gotMeta, key).toEqual(srcMeta);
        if (srcMtime !== undefined) expect(gotMtime, key).toBe(srcMtime);
        else expect(gotMtime, key).toMatch(/^\d+(?:\.\d+)?$/);
      }
      for (const key of AWKWARD_KEYS) expect(after.has(key), JSON.stringify(key)).toBe(true);
      expect(after.get(fixture.largeKey)?.sha256).toBe(fixture.digests.get(fixture.largeKey));
    },
    900_000,
  );
});
