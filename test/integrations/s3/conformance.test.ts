// The conformance suites for the s3 connectors against Ceph radosgw: storage, importer and exporter.
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll } from 'vitest';
import { integration } from '../../../integrations/s3/index.ts';
import { keyToPath } from '../../../integrations/s3/map.ts';
import { runExporterConformance, runImporterConformance, runStorageConformance, standardTree } from '../../conformance/index.ts';
import { bucketName, configFor, radosgw, sdkClient } from './servers.ts';
import { listAll, readObject } from './inspect.ts';

const target = { integration, packageDir: join(import.meta.dirname, '..', '..', '..', 'dist', 's3') };
// Started while the file is collected: the suites need the (random) secret when they register their cases.
const rgw = await radosgw({ sseOverHttp: true });
const sdk: S3Client = sdkClient(rgw);
const secrets = [rgw.secretKey];

afterAll(async () => {
  sdk.destroy();
  await rgw.stop();
});

async function seedTree(bucket: string, prefix: string, options: { brokenKey?: string } = {}): Promise<Array<{ path: string; content: Buffer }>> {
  await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
  const expected: Array<{ path: string; content: Buffer }> = [];
  for (const f of standardTree()) {
    const key = `${prefix}/${f.path}`;
    await sdk.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: f.content, ContentLength: f.content.length }));
    expected.push({ path: keyToPath(key), content: f.content });
  }
  if (options.brokenKey) {
    // Encrypted with a customer key the importer does not have: HEAD and GET fail for this object only.
    const ssecKey = Buffer.alloc(32, 7);
    await sdk.send(
      new PutObjectCommand({ Bucket: bucket, Key: options.brokenKey, Body: Buffer.from('sealed'), SSECustomerAlgorithm: 'AES256', SSECustomerKey: ssecKey as unknown as string }),
    );
  }
  return expected;
}

runStorageConformance({
  target,
  freshConfig: async () => {
    return configFor(rgw, bucketName('conf-store'), 'repo/inner');
  },
  secrets,
  plantForeign: async (config) => {
    const [, , , bucket, ...rest] = config.location!.split('/');
    const prefix = rest.join('/');
    for (const name of ['packfiles/zz/not-a-mac', `packfiles/ab/${'ab'.repeat(32)}.partial-1-0`, `packfiles/ab/${'AB'.repeat(32)}`, 'locks/nested/x', 'README.txt', `states/cd/${'ab'.repeat(32)}`]) {
      await sdk.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/${name}`, Body: 'junk' }));
    }
  },
  badConfig: { config: { location: 's3://127.0.0.1:1/b', part_size: '1KiB' }, key: 'part_size' },
  // Sized for the two-core test machines (radosgw stores about 10 MB/s there); KLOSET_TS_S3_BIG_MIB=256 and
  // KLOSET_TS_S3_MANY=2000 give the suite's defaults.
  manyObjects: Number(process.env.KLOSET_TS_S3_MANY ?? 600),
  bigObjectBytes: Number(process.env.KLOSET_TS_S3_BIG_MIB ?? 64) * 1024 * 1024,
});

runImporterConformance({
  target,
  seed: async () => {
    const bucket = bucketName('conf-src');
    const expected = await seedTree(bucket, 'backup me');
    return { config: configFor(rgw, bucket, 'backup me'), expected };
  },
  seedBroken: async () => {
    const bucket = bucketName('conf-broken');
    const brokenKey = 'data/sealed.bin';
    const expected = await seedTree(bucket, 'data', { brokenKey });
    return { config: configFor(rgw, bucket, 'data'), expected, brokenPath: keyToPath(brokenKey) };
  },
  secrets,
  badConfig: { config: { location: 's3://127.0.0.1:1/b', concurrency: 'many' }, key: 'concurrency' },
});

runExporterConformance({
  target,
  freshConfig: async () => configFor(rgw, bucketName('conf-dst'), 'restore/here'),
  inspect: async (config) => {
    const [, , , bucket, ...rest] = config.location!.split('/');
    const prefix = `${rest.join('/')}/`;
    const out = new Map<string, Buffer>();
    for (const o of await listAll(sdk, bucket as string, prefix)) out.set(`/${o.key.slice(prefix.length)}`, await readObject(sdk, bucket as string, o.key));
    return out;
  },
  secrets,
  badConfig: { config: { location: 's3://127.0.0.1:1/b', storage_class: 'COLD' }, key: 'storage_class' },
});

