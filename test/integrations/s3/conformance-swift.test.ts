// The storage conformance suite for s3 against OpenStack Swift's S3 layer (s3api), a second, differently-behaving server.
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll } from 'vitest';
import { integration } from '../../../integrations/s3/index.ts';
import { runStorageConformance } from '../../conformance/index.ts';
import { bucketName, configFor, sdkClient, swift } from './servers.ts';

const target = { integration, packageDir: join(import.meta.dirname, '..', '..', '..', 'dist', 's3') };
const server = await swift();
const sdk = sdkClient(server);

afterAll(async () => {
  sdk.destroy();
  await server.stop();
});

runStorageConformance({
  target,
  freshConfig: async () => configFor(server, bucketName('swift-store'), 'plakar'),
  secrets: [server.secretKey],
  plantForeign: async (config) => {
    const [, , , bucket, ...rest] = (config.location as string).split('/');
    for (const name of ['packfiles/zz/not-a-mac', `packfiles/ab/${'ab'.repeat(32)}.partial-1-0`, 'locks/nested/x', 'README.txt']) {
      await sdk.send(new PutObjectCommand({ Bucket: bucket, Key: `${rest.join('/')}/${name}`, Body: 'junk' }));
    }
  },
  // Swift's proxy is CPU-bound here (a few dozen PUTs/s on two cores): fewer objects, a smaller big object.
  manyObjects: Number(process.env.KLOSET_TS_S3_SWIFT_MANY ?? 100),
  bigObjectBytes: Number(process.env.KLOSET_TS_S3_SWIFT_BIG_MIB ?? 16) * 1024 * 1024,
});
