// s3 storage beyond conformance: the official layout both ways, single vs multipart uploads, aborts, size, SSE-C, Glacier mode.
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESOURCE } from '../../harness/index.ts';
import { encodeMessage, decodeMessage } from '../../harness/messages.ts';
import type { OpenConnector } from '../../conformance/index.ts';
import { pseudoRandom, randomMac, sha256 } from '../../conformance/data.ts';
import { createHash } from 'node:crypto';
import { s3Connectors } from './connect.ts';
import { bucketName, configFor, radosgw, radosgwWithClasses, sdkClient } from './servers.ts';
import { listAll, readObject } from './inspect.ts';

const MiB = 1024 * 1024;
const rgw = await radosgw({ sseOverHttp: true });
const sdk: S3Client = sdkClient(rgw);
const connectors = s3Connectors([rgw.secretKey]);
// Adding storage classes restarts radosgw: the Glacier cases get a private one, set up while the other cases run.
const coldServer = (async () => {
  const own = await radosgwWithClasses(['GLACIER', 'STANDARD_IA']);
  const client = sdkClient(own);
  // radosgw is slow to create its first bucket after a restart: pay that here, in the background.
  await client.send(new CreateBucketCommand({ Bucket: bucketName('warm-up') }));
  return { own, client };
})();
coldServer.catch(() => undefined);

afterAll(async () => {
  await connectors.disposeAll();
  sdk.destroy();
  await rgw.stop();
  const cold = await coldServer.catch(() => undefined);
  cold?.client.destroy();
  await cold?.own.stop();
});

function store(config: Record<string, string>): Promise<OpenConnector> {
  return connectors.open('storage', config);
}

function bucketOf(config: Record<string, string>): string {
  return (config.location as string).split('/')[3] as string;
}

const hex = (mac: Buffer): string => mac.toString('hex');

describe('s3 storage: layout and compatibility with the official connector', () => {
  it('objects are laid out exactly like the official connector, ECC under their own prefixes', async () => {
    const config = configFor(rgw, bucketName('layout'), 'plakar/repo');
    const c = await store(config);
    await c.host.create(Buffer.from('_KLOSET_layout'));
    const macs = { packfile: randomMac(), state: randomMac(), lock: randomMac(), ecc1: randomMac(), ecc2: randomMac() };
    await c.host.put(RESOURCE.PACKFILE, macs.packfile, Buffer.from('p'));
    await c.host.put(RESOURCE.STATE, macs.state, Buffer.from('s'));
    await c.host.put(RESOURCE.LOCK, macs.lock, Buffer.from('l'));
    await c.host.put(RESOURCE.ECC_PACKFILE, macs.ecc1, Buffer.from('e'));
    await c.host.put(RESOURCE.ECC_STATE, macs.ecc2, Buffer.from('f'));
    const keys = (await listAll(sdk, bucketOf(config))).map((o) => o.key).sort();
    expect(keys).toEqual(
      [
        'plakar/repo/CONFIG',
        `plakar/repo/packfiles/${hex(macs.packfile).slice(0, 2)}/${hex(macs.packfile)}`,
        `plakar/repo/states/${hex(macs.state).slice(0, 2)}/${hex(macs.state)}`,
        `plakar/repo/locks/${hex(macs.lock)}`,
        `plakar/repo/ecc-packfiles/${hex(macs.ecc1).slice(0, 2)}/${hex(macs.ecc1)}`,
        `plakar/repo/ecc-states/${hex(macs.ecc2).slice(0, 2)}/${hex(macs.ecc2)}`,
      ].sort(),
    );
    expect((await readObject(sdk, bucketOf(config), 'plakar/repo/CONFIG')).toString()).toBe('_KLOSET_layout');
    expect(c.host.initResult).toMatchObject({ origin: rgw.endpoint.slice(7), type: 's3', root: `/${bucketOf(config)}/plakar/repo` });
  });

  it('a repository written by the official connector (bucket root, .frozen copies) opens and reads', async () => {
    const bucket = bucketName('official');
    await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
    const pack = randomMac();
    const frozenOnly = randomMac();
    const state = randomMac();
    const lock = randomMac();
    const put = (Key: string, Body: string | Buffer): Promise<unknown> => sdk.send(new PutObjectCommand({ Bucket: bucket, Key, Body }));
    await put('CONFIG', '_KLOSET_official');
    await put(`packfiles/${hex(pack).slice(0, 2)}/${hex(pack)}`, 'packfile bytes');
    await put(`packfiles/${hex(frozenOnly).slice(0, 2)}/${hex(frozenOnly)}.frozen`, 'cold packfile');
    await put(`states/${hex(state).slice(0, 2)}/${hex(state)}`, 'state bytes');
    await put(`locks/${hex(lock)}`, 'lock bytes');
    const c = await store(configFor(rgw, bucket));
    expect((await c.host.open()).toString()).toBe('_KLOSET_official');
    expect((await c.host.list(RESOURCE.PACKFILE)).map(hex).sort()).toEqual([hex(pack), hex(frozenOnly)].sort());
    expect((await c.host.list(RESOURCE.STATE)).map(hex)).toEqual([hex(state)]);
    expect((await c.host.list(RESOURCE.LOCK)).map(hex)).toEqual([hex(lock)]);
    expect((await c.host.get(RESOURCE.PACKFILE, pack, { offset: 9, length: 5 })).toString()).toBe('bytes');
    expect((await c.host.get(RESOURCE.PACKFILE, frozenOnly)).toString()).toBe('cold packfile');
    expect((await c.host.get(RESOURCE.LOCK, lock)).toString()).toBe('lock bytes');
    await c.host.delete(RESOURCE.PACKFILE, frozenOnly);
    expect((await c.host.list(RESOURCE.PACKFILE)).map(hex)).toEqual([hex(pack)]);
  });

  it('small objects go up in one PUT, larger ones as multipart uploads of part_size', async () => {
    const config = configFor(rgw, bucketName('parts'), 'r', { part_size: '5MiB', upload_cutoff: '5MiB', upload_concurrency: '2' });
    const c = await store(config);
    await c.host.create(Buffer.from('_KLOSET_'));
    const small = pseudoRandom(5 * MiB, 1);
    const large = pseudoRandom(11 * MiB + 3, 2);
    const [ms, ml] = [randomMac(), randomMac()];
    expect(await c.host.put(RESOURCE.PACKFILE, ms, small)).toBe(small.length);
    expect(await c.host.put(RESOURCE.PACKFILE, ml, large)).toBe(large.length);
    const etag = async (mac: Buffer): Promise<string> =>
      (await sdk.send(new HeadObjectCommand({ Bucket: bucketOf(config), Key: `r/packfiles/${hex(mac).slice(0, 2)}/${hex(mac)}` }))).ETag as string;
    expect(await etag(ms)).toBe(`"${createHash('md5').update(small).digest('hex')}"`);
    expect(await etag(ml)).toMatch(/-3"$/);
    expect(sha256(await c.host.get(RESOURCE.PACKFILE, ml))).toBe(sha256(large));
  });

  // Known SDK bug: a Put call the host cancels reaches put() as a normal end of stream, so the truncated bytes are
  // stored (the fixture storage does the same). Fails until shared/protocol/storage-server.ts fails the content on
  // 'cancelled'; then drop `.fails`.
  it.fails('a Put cut off by the host leaves no object and no multipart upload behind', async () => {
    const config = configFor(rgw, bucketName('abort'), '', { part_size: '5MiB', upload_cutoff: '5MiB' });
    const c = await store(config);
    await c.host.create(Buffer.from('_KLOSET_'));
    const mac = randomMac();
    async function* failing(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 12; i++) yield pseudoRandom(MiB, i);
      throw new Error('the host lost its source');
    }
    await expect(c.host.put(RESOURCE.PACKFILE, mac, failing())).rejects.toThrow();
    const uploads = async (): Promise<number> => (await sdk.send(new ListMultipartUploadsCommand({ Bucket: bucketOf(config) }))).Uploads?.length ?? 0;
    for (let i = 0; i < 100 && (await uploads()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await uploads()).toBe(0);
    expect(await c.host.list(RESOURCE.PACKFILE)).toEqual([]);
  });

  it('size is the total of the objects under the prefix', async () => {
    const config = configFor(rgw, bucketName('size'), 'p');
    const c = await store(config);
    await c.host.create(Buffer.from('_KLOSET_size'));
    await c.host.put(RESOURCE.PACKFILE, randomMac(), pseudoRandom(100_000, 3));
    await c.host.put(RESOURCE.STATE, randomMac(), pseudoRandom(2_345, 4));
    const total = (await listAll(sdk, bucketOf(config), 'p/')).reduce((n, o) => n + o.size, 0);
    expect(total).toBe(100_000 + 2_345 + 12);
    expect(await c.host.size()).toBe(total);
  });

  it('an SSE-C repository is written and read with the customer key only', async () => {
    const key = Buffer.alloc(32, 42).toString('base64');
    const config = configFor(rgw, bucketName('ssec'), 'enc', { sse_customer_key: key });
    const c = await store(config);
    await c.host.create(Buffer.from('_KLOSET_sealed'));
    const mac = randomMac();
    const data = pseudoRandom(3 * MiB, 5);
    await c.host.put(RESOURCE.PACKFILE, mac, data);
    expect(sha256(await c.host.get(RESOURCE.PACKFILE, mac))).toBe(sha256(data));
    expect((await c.host.get(RESOURCE.PACKFILE, mac, { offset: 2 * MiB, length: 10 })).equals(data.subarray(2 * MiB, 2 * MiB + 10))).toBe(true);
    expect((await c.host.open()).toString()).toBe('_KLOSET_sealed');
    await expect(sdk.send(new GetObjectCommand({ Bucket: bucketOf(config), Key: 'enc/CONFIG' }))).rejects.toThrow();
    const other = await store({ ...config, sse_customer_key: Buffer.alloc(32, 1).toString('base64') });
    await expect(other.host.open()).rejects.toThrow(/^s3 storage: cannot open the repository at s3:\/\//);
    expect(c.stderr()).not.toContain(key);
  });
});

describe('s3 storage: Glacier mode and storage classes', () => {
  let rgw: Awaited<ReturnType<typeof radosgwWithClasses>>;
  let sdk: S3Client;
  beforeAll(async () => {
    ({ own: rgw, client: sdk } = await coldServer);
  }, 180_000);


  const classOf = async (bucket: string, key: string): Promise<string> =>
    (await sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).StorageClass ?? 'STANDARD';

  it('GLACIER: write-only, CONFIG and states hot with cold copies, packfiles cold, locks hot', async () => {
    const config = configFor(rgw, bucketName('glacier'), 'cold', { storage_class: 'glacier' });
    const bucket = bucketOf(config);
    const c = await store(config);
    await c.host.create(Buffer.from('_KLOSET_cold'));
    expect(await c.host.mode()).toBe(2);
    const [pack, state, lock] = [randomMac(), randomMac(), randomMac()];
    await c.host.put(RESOURCE.PACKFILE, pack, Buffer.from('packfile'));
    await c.host.put(RESOURCE.STATE, state, Buffer.from('state'));
    await c.host.put(RESOURCE.LOCK, lock, Buffer.from('lock'));
    const p = `cold/packfiles/${hex(pack).slice(0, 2)}/${hex(pack)}`;
    const s = `cold/states/${hex(state).slice(0, 2)}/${hex(state)}`;
    const classes: Record<string, string> = {};
    for (const o of await listAll(sdk, bucket)) classes[o.key] = await classOf(bucket, o.key);
    expect(classes).toEqual({
      'cold/CONFIG': 'STANDARD',
      'cold/CONFIG.frozen': 'GLACIER',
      [`${p}.frozen`]: 'GLACIER',
      [s]: 'STANDARD',
      [`${s}.frozen`]: 'GLACIER',
      [`cold/locks/${hex(lock)}`]: 'STANDARD',
    });
    expect((await c.host.list(RESOURCE.PACKFILE)).map(hex)).toEqual([hex(pack)]);
    expect((await c.host.list(RESOURCE.STATE)).map(hex)).toEqual([hex(state)]);
    // Once restored outside Plakar, the cold copy is read in place of the missing hot one.
    expect((await c.host.get(RESOURCE.PACKFILE, pack)).toString()).toBe('packfile');
    await c.host.delete(RESOURCE.STATE, state);
    await c.host.delete(RESOURCE.PACKFILE, pack);
    expect((await listAll(sdk, bucket)).map((o) => o.key).sort()).toEqual(['cold/CONFIG', 'cold/CONFIG.frozen', `cold/locks/${hex(lock)}`]);
  });

  it('GLACIER: a packfile flagged hot stays in STANDARD with a cold copy', async () => {
    const config = configFor(rgw, bucketName('hot'), '', { storage_class: 'GLACIER' });
    const c = await store(config);
    await c.host.create(Buffer.from('_KLOSET_'));
    const mac = randomMac();
    // Hosts newer than v1.1.x flag hot packfiles (PutRequest.flags = 1); the harness sends v1.1 messages, so go raw.
    const call = await c.host.connection.stream('/store.Store/Put');
    await call.write(encodeMessage('store.PutRequest', { mac, type: RESOURCE.PACKFILE, flags: 1 }));
    await call.write(encodeMessage('store.PutRequest', { chunk: Buffer.from('hot packfile') }));
    const reply = decodeMessage('store.PutResponse', await c.host.connection.closeAndRecv(call));
    expect(Number(reply.bytes_written)).toBe(12);
    const key = `packfiles/${hex(mac).slice(0, 2)}/${hex(mac)}`;
    expect(await classOf(bucketOf(config), key)).toBe('STANDARD');
    expect(await classOf(bucketOf(config), `${key}.frozen`)).toBe('GLACIER');
  });

  it('STANDARD_IA: packfiles and states in the class, CONFIG and locks in STANDARD, read-write', async () => {
    const config = configFor(rgw, bucketName('ia'), 'ia', { storage_class: 'STANDARD_IA' });
    const bucket = bucketOf(config);
    const c = await store(config);
    await c.host.create(Buffer.from('_KLOSET_'));
    expect(await c.host.mode()).toBe(6);
    const [pack, lock] = [randomMac(), randomMac()];
    await c.host.put(RESOURCE.PACKFILE, pack, Buffer.from('x'));
    await c.host.put(RESOURCE.LOCK, lock, Buffer.from('y'));
    expect(await classOf(bucket, 'ia/CONFIG')).toBe('STANDARD');
    expect(await classOf(bucket, `ia/packfiles/${hex(pack).slice(0, 2)}/${hex(pack)}`)).toBe('STANDARD_IA');
    expect(await classOf(bucket, `ia/locks/${hex(lock)}`)).toBe('STANDARD');
  });

  it('exporter: storage_class applies to every restored object, single PUT and multipart', async () => {
    const config = configFor(rgw, bucketName('exp-ia'), 'restored', { storage_class: 'STANDARD_IA', part_size: '5MiB', upload_cutoff: '5MiB' });
    const bucket = bucketOf(config);
    const c = await connectors.open('exporter', config);
    const big = pseudoRandom(6 * MiB, 8);
    const out = await c.host.exportTree([
      { path: '/', info: { mode: (0x80000000 | 0o755) >>> 0 } },
      { path: '/small.txt', info: { mode: 0o644, size: 5 }, content: Buffer.from('small') },
      { path: '/big.bin', info: { mode: 0o644, size: big.length }, content: big },
    ]);
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors).toEqual([]);
    expect(await classOf(bucket, 'restored/small.txt')).toBe('STANDARD_IA');
    expect(await classOf(bucket, 'restored/big.bin')).toBe('STANDARD_IA');
    expect(sha256(await readObject(sdk, bucket, 'restored/big.bin'))).toBe(sha256(big));
  });
});
