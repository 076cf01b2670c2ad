// s3 under faults: connections reset mid-transfer, bursts of 503 SlowDown / 500, failing listings, and the Init/Open
// errors of a wrong secret, a missing bucket and a bad endpoint — with no secret ever in stderr or a message.
import { join } from 'node:path';
import { CreateBucketCommand, ListMultipartUploadsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { createLimiter } from '../../../shared/index.ts';
import { assertNoSecrets, type OpenConnector } from '../../conformance/index.ts';
import { pseudoRandom, randomMac, sha256 } from '../../conformance/data.ts';
import { RESOURCE } from '../../harness/index.ts';
import { restoreEntries, seedBucket, type BucketFixture } from './bucket-fixture.ts';
import { s3Connectors } from './connect.ts';
import { describeBucket, listAll } from './inspect.ts';
import { bursts, startFlakyProxy, startResetProxy, startTlsProxy, type Proxy } from './proxies.ts';
import { bucketName, configFor, hostOf, radosgw, sdkClient } from './servers.ts';

const MiB = 1024 * 1024;
const rgw = await radosgw();
const sdk: S3Client = sdkClient(rgw);
const connectors = s3Connectors([rgw.secretKey]);
const proxies: Proxy[] = [];
const messages: string[] = [];
/** Small parts so that large objects are multipart uploads whose parts get cut. */
const tuning = { part_size: '5MiB', upload_cutoff: '5MiB', upload_concurrency: '2' };

afterAll(async () => {
  await connectors.disposeAll();
  for (const m of messages) assertNoSecrets(m, [rgw.secretKey], 'a status message');
  for (const p of proxies) await p.close();
  sdk.destroy();
  await rgw.stop();
});

function open(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>, env?: NodeJS.ProcessEnv): Promise<OpenConnector> {
  return connectors.open(kind, config, { env });
}

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const text = (err as Error).message;
    messages.push(text);
    return text;
  }
  throw new Error('expected a failure');
}

/** Points a config at a proxy instead of the server. */
function via(proxy: Proxy, config: Record<string, string>): Record<string, string> {
  return { ...config, location: (config.location as string).replace(hostOf(rgw), hostOf(proxy)) };
}

/** Backup through `proxy`, restore through it, and compare both buckets and every byte. */
async function roundTripThrough(proxy: Proxy, fixture: BucketFixture): Promise<void> {
  const importer = await open('importer', via(proxy, configFor(rgw, fixture.bucket, 'source')));
  const imported = await importer.host.importAll({ maxConcurrency: 4, content: 'bytes' });
  expect(imported.status.code).toBe(0);
  expect(imported.errors).toEqual([]);
  expect(imported.itemErrors).toEqual([]);
  const dst = bucketName('fault-dst');
  const exporter = await open('exporter', via(proxy, configFor(rgw, dst, 'restored', tuning)));
  const exported = await exporter.host.exportTree(restoreEntries(imported, '/source'));
  expect(exported.status.code, exported.status.details).toBe(0);
  expect(exported.itemErrors).toEqual([]);
  const [before, after] = await Promise.all([describeBucket(sdk, fixture.bucket, 'source/'), describeBucket(sdk, dst, 'restored/')]);
  expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
  for (const [key, src] of before) expect(after.get(key)?.sha256, key).toBe(src.sha256);
}

/** Puts packfiles (small and multipart) through `proxy` and reads them back whole and in ranges. */
async function storageThrough(proxy: Proxy): Promise<void> {
  const store = await open('storage', via(proxy, configFor(rgw, bucketName('fault-repo'), 'repo', tuning)));
  await store.host.create(Buffer.from('_KLOSET_faults'));
  const items = [3, 700_000, 6 * MiB + 5].map((size, i) => ({ mac: randomMac(), data: pseudoRandom(size, 100 + i) }));
  await Promise.all(items.map((x) => store.host.put(RESOURCE.PACKFILE, x.mac, x.data)));
  for (const x of items) {
    expect(sha256(await store.host.get(RESOURCE.PACKFILE, x.mac))).toBe(sha256(x.data));
    const offset = Math.floor(x.data.length / 3);
    const length = Math.min(2 * MiB, x.data.length - offset);
    expect((await store.host.get(RESOURCE.PACKFILE, x.mac, { offset, length })).equals(x.data.subarray(offset, offset + length))).toBe(true);
  }
  expect((await store.host.list(RESOURCE.PACKFILE)).length).toBe(items.length);
  expect((await store.host.open()).toString()).toBe('_KLOSET_faults');
}

describe('s3: transfers survive faults', () => {
  let fixture: BucketFixture;
  const seeded = async (): Promise<BucketFixture> => (fixture ??= await seedBucket(sdk, bucketName('fault-src'), 'source/', 20, 8 * MiB));

  it(
    'connections reset in the middle of uploads and downloads: complete, byte-identical backup, restore and storage',
    async () => {
      const f = await seeded();
      // Each reset lands after 6 MiB more traffic: more than one 5 MiB part, so every retried part can get through.
      const proxy = await startResetProxy(rgw.endpoint, { everyBytes: 6 * MiB });
      proxies.push(proxy);
      await roundTripThrough(proxy, f);
      await storageThrough(proxy);
      expect(proxy.stats.resets).toBeGreaterThanOrEqual(4);
    },
    600_000,
  );

  it(
    'bursts of 503 SlowDown and 500 InternalError: complete, byte-identical backup, restore and storage',
    async () => {
      const f = await seeded();
      const proxy = await startFlakyProxy(rgw.endpoint, bursts(7, 2));
      proxies.push(proxy);
      await roundTripThrough(proxy, f);
      await storageThrough(proxy);
      expect(proxy.stats.byStatus[503]).toBeGreaterThan(10);
      expect(proxy.stats.byStatus[500]).toBeGreaterThan(10);
    },
    600_000,
  );

  it('a listing that keeps failing fails List and the import with the cause, never a short list', async () => {
    const bucket = bucketName('fault-list');
    // Pages of 25 keys (list_chunk) make a many-page listing out of 60 objects.
    const config = configFor(rgw, bucket, 'repo', { max_retries: '3', list_chunk: '25' });
    const store = await open('storage', config);
    await store.host.create(Buffer.from('_KLOSET_list'));
    const limit = createLimiter(32);
    await Promise.all(
      Array.from({ length: 60 }, () => randomMac()).map((mac) =>
        limit(() => sdk.send(new PutObjectCommand({ Bucket: bucket, Key: `repo/locks/${mac.toString('hex')}`, Body: 'l' }))),
      ),
    );
    expect((await store.host.list(RESOURCE.LOCK)).length).toBe(60);
    // Every request for a second listing page fails: the first page alone must not pass for the whole listing.
    const proxy = await startFlakyProxy(rgw.endpoint, (_n, req) => (req.url.includes('continuation-token') ? 500 : 'pass'));
    proxies.push(proxy);
    const flaky = await open('storage', via(proxy, config));
    const text = await failure(flaky.host.list(RESOURCE.LOCK));
    expect(text).toMatch(/^failed to list lock: s3 storage: cannot list s3:\/\/[^ ]+\/repo\/locks\/: gave up after 3 attempts over [\d.]+s: InternalError \(HTTP 500\)/);
    const importer = await open('importer', via(proxy, configFor(rgw, bucket, 'repo', { max_retries: '3', list_chunk: '25' })));
    expect(await failure(importer.host.importAll({ openContent: false }))).toMatch(
      /^rpc error: code = Unknown desc = s3 importer: cannot list s3:\/\/[^ ]+\/repo\/: gave up after 3 attempts over [\d.]+s: InternalError \(HTTP 500\)/,
    );
  }, 120_000);
});

describe('s3: failures that end one item', () => {
  it('a multipart upload whose part keeps failing is aborted: the item (or Put) fails, no upload is left behind', async () => {
    const bucket = bucketName('fault-abort');
    await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
    // Every attempt at part 2 of any upload fails; everything else (including the abort) goes through.
    const proxy = await startFlakyProxy(rgw.endpoint, (_n, req) => (req.method === 'PUT' && /[?&]partNumber=2(&|$)/.test(req.url) ? 500 : 'pass'));
    proxies.push(proxy);
    const config = via(proxy, configFor(rgw, bucket, 'out', { ...tuning, max_retries: '2' }));
    const big = pseudoRandom(12 * MiB, 7);
    const exporter = await open('exporter', config);
    const out = await exporter.host.exportTree([
      { path: '/', info: { mode: (0x80000000 | 0o755) >>> 0 } },
      { path: '/big.bin', info: { mode: 0o644, size: big.length }, content: big },
      { path: '/small.txt', info: { mode: 0o644, size: 5 }, content: Buffer.from('small') },
    ]);
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors.map((e) => e.pathname)).toEqual(['/big.bin']);
    expect(out.itemErrors[0]?.error).toMatch(/cannot write s3:\/\/[^ ]+\/out\/big\.bin \(part 2\): gave up after 2 attempts .*InternalError \(HTTP 500\)/);
    const store = await open('storage', { ...config, location: `${config.location as string}-repo` });
    await store.host.create(Buffer.from('_KLOSET_abort'));
    expect(await failure(store.host.put(RESOURCE.PACKFILE, randomMac(), big))).toMatch(/\(part 2\): gave up after 2 attempts/);
    expect(proxy.stats.byStatus[500]).toBe(4);
    const uploads = await sdk.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(uploads.Uploads ?? []).toEqual([]);
    expect((await listAll(sdk, bucket)).map((o) => o.key).sort()).toEqual(['out-repo/CONFIG', 'out/small.txt']);
  });

  it('an archived (GLACIER) object that cannot be read is an item error naming it; the backup goes on', async () => {
    const bucket = bucketName('fault-cold');
    await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
    for (const key of ['src/warm.txt', 'src/cold/archived.bin', 'src/z.txt']) await sdk.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
    // What AWS answers a GET of a GLACIER or DEEP_ARCHIVE object that has not been restored (HEAD still works).
    const archived = { status: 403, code: 'InvalidObjectState', message: 'The operation is not valid for the object\'s storage class' };
    const proxy = await startFlakyProxy(rgw.endpoint, (_n, req) => (req.method === 'GET' && req.url.includes('/cold/archived.bin') ? archived : 'pass'));
    proxies.push(proxy);
    const importer = await open('importer', via(proxy, configFor(rgw, bucket, 'src')));
    const imported = await importer.host.importAll({ maxConcurrency: 2, content: 'bytes' });
    expect(imported.status.code).toBe(0);
    expect(imported.itemErrors.map((e) => e.pathname)).toEqual(['/src/cold/archived.bin']);
    expect(imported.itemErrors[0]?.message).toMatch(
      /s3:\/\/[^ ]+\/src\/cold\/archived\.bin: the object is archived \(GLACIER or DEEP_ARCHIVE\) and must be restored before it can be read \(InvalidObjectState\)/,
    );
    expect(imported.contents.get('/src/warm.txt')?.toString()).toBe('src/warm.txt');
    expect(imported.contents.get('/src/z.txt')?.toString()).toBe('src/z.txt');
    // Refused at once: an archived object is not retried.
    expect(proxy.stats.byStatus[403]).toBe(1);
  });
});

describe('s3: Init and Open fail with a clear message', () => {
  it('a wrong secret', async () => {
    const bucket = bucketName('auth');
    const good = configFor(rgw, bucket, 'data');
    await (await open('storage', good)).host.create(Buffer.from('_KLOSET_'));
    const bad = { ...good, secret_access_key: `${rgw.secretKey.slice(0, -4)}XXXX` };
    const hint = /the request signature does not match \(hint: check secret_access_key, and region for services outside AWS\) \(SignatureDoesNotMatch\)$/;
    const importer = await connectors.launch('importer', { KLOSET_TS_LOG: 'debug' });
    const i = await failure(importer.host.init('importer', 's3', bad));
    expect(i).toMatch(/^s3 importer: cannot back up s3:\/\/[^ ]+\/data: /);
    expect(i).toMatch(hint);
    const exporter = await connectors.launch('exporter', { KLOSET_TS_LOG: 'debug' });
    expect(await failure(exporter.host.init('exporter', 's3', bad))).toMatch(/^s3 exporter: cannot reach bucket s3:\/\/[^ ]+: /);
    const store = await open('storage', bad, { KLOSET_TS_LOG: 'debug' });
    const o = await failure(store.host.open());
    expect(o).toMatch(/^s3 storage: cannot open the repository at s3:\/\/[^ ]+\/data: /);
    expect(o).toMatch(hint);
    expect(await failure(store.host.ping())).toMatch(/SignatureDoesNotMatch/);
    const unknownKey = { ...good, access_key: 'NOSUCHKEY0000000' };
    expect(await failure((await open('storage', unknownKey)).host.open())).toMatch(/the access key is not known to the service \(hint: check access_key\) \(InvalidAccessKeyId\)$/);
  });

  it('a missing bucket', async () => {
    const config = configFor(rgw, bucketName('missing'), 'data');
    const bucket = (config.location as string).split('/')[3] as string;
    const importer = await connectors.launch('importer');
    expect(await failure(importer.host.init('importer', 's3', config))).toBe(
      `s3 importer: cannot back up ${config.location}: bucket "${bucket}" does not exist (NoSuchBucket) (hint: check the location, or create the bucket)`,
    );
    const store = await open('storage', config);
    expect(await failure(store.host.open())).toBe(
      `s3 storage: no repository at ${config.location}: bucket "${bucket}" does not exist (hint: check the location, or run plakar create)`,
    );
    const empty = await open('storage', configFor(rgw, bucketName('nocfg'), 'data'));
    await empty.host.create(Buffer.from('_KLOSET_'));
    const other = await open('storage', { ...configFor(rgw, (empty.host.initResult?.root ?? '').split('/')[1] as string, 'elsewhere') });
    expect(await failure(other.host.open())).toMatch(/^s3 storage: no repository at s3:\/\/[^ ]+\/elsewhere \(no CONFIG object\)/);
  });

  it('a bad endpoint fails in seconds, not after a full backoff', async () => {
    const refused = configFor(rgw, 'bucket', 'data');
    refused.location = 's3://127.0.0.1:1/bucket/data';
    const started = Date.now();
    const importer = await connectors.launch('importer');
    expect(await failure(importer.host.init('importer', 's3', refused))).toMatch(
      /^s3 importer: cannot back up s3:\/\/127\.0\.0\.1:1\/bucket\/data: .*connection refused by 127\.0\.0\.1:1 \(hint: check location, endpoint, port and use_tls\)/,
    );
    const store = await open('storage', refused);
    expect(await failure(store.host.open())).toMatch(/^s3 storage: cannot open the repository at s3:\/\/127\.0\.0\.1:1\/bucket\/data: .*connection refused/);
    expect(Date.now() - started).toBeLessThan(15_000);
    const unresolvable = { ...refused, location: 's3://no-such-host.invalid/bucket' };
    const exporter = await connectors.launch('exporter');
    expect(await failure(exporter.host.init('exporter', 's3', unresolvable))).toMatch(/cannot resolve host "no-such-host\.invalid" \(hint: check location and endpoint\)/);
    const tls = { ...configFor(rgw, 'bucket', 'data'), use_tls: 'true' };
    expect(await failure((await open('storage', tls)).host.open())).toMatch(/does not seem to speak TLS there \(hint: use_tls=false/);
  }, 60_000);
});

describe('s3: TLS and credentials', () => {
  it('HTTPS by default: an untrusted certificate fails with a hint, tls_insecure_no_verify accepts it', async () => {
    const proxy = await startTlsProxy(rgw.endpoint);
    proxies.push(proxy);
    const base = via(proxy, configFor(rgw, bucketName('tls'), 'data'));
    delete base.use_tls;
    const refused = await open('storage', base);
    expect(await failure(refused.host.create(Buffer.from('_KLOSET_')))).toMatch(
      /the TLS certificate of 127\.0\.0\.1:\d+ is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\) \(hint: fix the certificate, or tls_insecure_no_verify=true for testing\)/,
    );
    const accepted = await open('storage', { ...base, tls_insecure_no_verify: 'true' });
    await accepted.host.create(Buffer.from('_KLOSET_tls'));
    expect((await accepted.host.open()).toString()).toBe('_KLOSET_tls');
  });

  it('without keys, the AWS credential chain: environment variables, then a profile of a shared credentials file', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'kts-s3-aws-'));
    const credentials = join(dir, 'credentials');
    await writeFile(credentials, `[backup]\naws_access_key_id = ${rgw.accessKey}\naws_secret_access_key = ${rgw.secretKey}\n`);
    const { access_key: _a, secret_access_key: _s, ...keyless } = configFor(rgw, bucketName('chain'), 'data', { requester_pays: 'true' });
    const fromEnv = { AWS_ACCESS_KEY_ID: rgw.accessKey, AWS_SECRET_ACCESS_KEY: rgw.secretKey };
    const fromProfile = { AWS_SHARED_CREDENTIALS_FILE: credentials, AWS_CONFIG_FILE: join(dir, 'none'), AWS_EC2_METADATA_DISABLED: 'true' };
    try {
      for (const [env, config] of [
        [fromEnv, keyless],
        [fromProfile, { ...keyless, profile: 'backup' }],
      ] as const) {
        // In-process runs read this process's environment; spawned ones get it as theirs.
        const saved = { ...process.env };
        Object.assign(process.env, env);
        try {
          const c = await open('storage', { ...config }, { ...process.env, ...env });
          if (env === fromEnv) await c.host.create(Buffer.from('_KLOSET_chain'));
          expect((await c.host.open()).toString()).toBe('_KLOSET_chain');
        } finally {
          for (const k of Object.keys(env)) delete process.env[k];
          Object.assign(process.env, saved);
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
