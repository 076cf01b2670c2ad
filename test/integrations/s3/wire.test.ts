// s3 options on the wire: what requester_pays, request_checksum, sse/sse_kms_key_id, sse_customer_key and session_token put in the
// requests that reach radosgw, seen by a proxy that relays everything and records the request headers.
import type { IncomingHttpHeaders } from 'node:http';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { assertNoSecrets, type OpenConnector } from '../../conformance/index.ts';
import { pseudoRandom, randomMac, sha256 } from '../../conformance/data.ts';
import { RESOURCE } from '../../harness/index.ts';
import { restoreEntries } from './bucket-fixture.ts';
import { s3Connectors } from './connect.ts';
import { readObject } from './inspect.ts';
import { isObjectUpload, putThroughFlippedBytes } from './integrity.ts';
import { startFlakyProxy, type Proxy } from './proxies.ts';
import { bucketName, configFor, hostOf, radosgw, sdkClient } from './servers.ts';
import { RADOSGW_KMS_KEY_ID as KMS_KEY_ID } from '../../servers/radosgw.ts';

const MiB = 1024 * 1024;

// radosgw refuses server-side encryption over plain HTTP unless told otherwise.
const rgw = await radosgw({ sseOverHttp: true });
const sdk: S3Client = sdkClient(rgw);
const proxies: Proxy[] = [];
const TOKEN = `FQoGZXIvYXdzEBYaDTEST${Date.now().toString(36)}SESSIONTOKEN`;
const connectors = s3Connectors([rgw.secretKey, TOKEN]);

afterAll(async () => {
  await connectors.disposeAll();
  for (const p of proxies) await p.close();
  sdk.destroy();
  await rgw.stop();
});

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** A relaying proxy that records every request, and a config pointing at it. */
async function recorded(config: Record<string, string>): Promise<{ seen: Seen[]; config: Record<string, string> }> {
  const seen: Seen[] = [];
  const proxy = await startFlakyProxy(rgw.endpoint, (_n, req) => {
    seen.push({ ...req, headers: { ...req.headers } });
    return 'pass';
  });
  proxies.push(proxy);
  return { seen, config: { ...config, location: (config.location as string).replace(hostOf(rgw), hostOf(proxy)) } };
}

function open(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>): Promise<OpenConnector> {
  return connectors.open(kind, config);
}

const tuning = { part_size: '5MiB', upload_cutoff: '5MiB', upload_concurrency: '2' };
const isUpload = (s: Seen): boolean => isObjectUpload(s);
const flexible = (h: IncomingHttpHeaders): string[] => Object.keys(h).filter((k) => k.startsWith('x-amz-checksum-') || k === 'x-amz-trailer' || k === 'x-amz-sdk-checksum-algorithm');

describe('s3: options on the wire', () => {
  it('requester_pays marks every request; by default uploads are signed with their SHA-256 and carry neither Content-MD5 nor a flexible checksum', async () => {
    const { seen, config } = await recorded(configFor(rgw, bucketName('wire-payer'), 'repo', { ...tuning, requester_pays: 'true' }));
    const store = await open('storage', config);
    await store.host.create(Buffer.from('_KLOSET_payer'));
    const big = pseudoRandom(11 * MiB, 1);
    const mac = randomMac();
    await store.host.put(RESOURCE.PACKFILE, mac, big);
    expect(sha256(await store.host.get(RESOURCE.PACKFILE, mac))).toBe(sha256(big));
    expect(await store.host.list(RESOURCE.PACKFILE)).toHaveLength(1);
    // CreateBucket and HeadBucket are bucket operations, which take no request-payer header.
    const objectRequests = seen.filter((s) => /\/[^/?]+\/./.test(s.url.split('?')[0] as string) || s.url.includes('list-type=2'));
    expect(objectRequests.length).toBeGreaterThan(5);
    for (const s of objectRequests) expect(s.headers['x-amz-request-payer'], `${s.method} ${s.url}`).toBe('requester');
    const uploads = seen.filter(isUpload);
    expect(uploads.filter((s) => s.url.includes('partNumber='))).toHaveLength(3);
    for (const s of uploads) {
      expect(s.headers['x-amz-content-sha256'], s.url).toMatch(/^[0-9a-f]{64}$/);
      expect(s.headers['content-md5'], s.url).toBeUndefined();
      expect(flexible(s.headers), s.url).toEqual([]);
    }
  });

  it('content_md5=true adds Content-MD5 to every upload: single PUTs, parts and CONFIG', async () => {
    const { seen, config } = await recorded(configFor(rgw, bucketName('wire-md5'), 'repo', { ...tuning, content_md5: 'true' }));
    const store = await open('storage', config);
    await store.host.create(Buffer.from('_KLOSET_md5'));
    const data = [pseudoRandom(1000, 4), pseudoRandom(11 * MiB, 5)];
    const macs = data.map(() => randomMac());
    for (const [i, d] of data.entries()) await store.host.put(RESOURCE.PACKFILE, macs[i] as Buffer, d);
    for (const [i, d] of data.entries()) expect(sha256(await store.host.get(RESOURCE.PACKFILE, macs[i] as Buffer))).toBe(sha256(d));
    const uploads = seen.filter(isUpload);
    expect(uploads.filter((s) => s.url.includes('partNumber='))).toHaveLength(3);
    expect(uploads.length).toBeGreaterThanOrEqual(5);
    for (const s of uploads) {
      expect(s.headers['content-md5'], s.url).toMatch(/^[A-Za-z0-9+/]{22}==$/);
      expect(s.headers['x-amz-content-sha256'], s.url).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('an upload whose bytes change on the way is refused by radosgw (signed SHA-256) and sent again: single PUTs and parts end intact', async () => {
    const statuses = await putThroughFlippedBytes(rgw, connectors, proxies, 'wire-flip');
    for (const status of statuses) expect(status).toBe(400);
  });

  it('request_checksum=when_supported adds the AWS flexible checksum to uploads, which radosgw accepts', async () => {
    const { seen, config } = await recorded(configFor(rgw, bucketName('wire-crc'), 'repo', { ...tuning, request_checksum: 'when_supported' }));
    const store = await open('storage', config);
    await store.host.create(Buffer.from('_KLOSET_crc'));
    const data = [pseudoRandom(1000, 2), pseudoRandom(7 * MiB, 3)];
    const macs = data.map(() => randomMac());
    for (const [i, d] of data.entries()) await store.host.put(RESOURCE.PACKFILE, macs[i] as Buffer, d);
    for (const [i, d] of data.entries()) expect(sha256(await store.host.get(RESOURCE.PACKFILE, macs[i] as Buffer))).toBe(sha256(d));
    const uploads = seen.filter(isUpload);
    expect(uploads.length).toBeGreaterThanOrEqual(4);
    for (const s of uploads) expect(flexible(s.headers), s.url).not.toEqual([]);
  });

  it('sse=AES256 (SSE-S3) is asked for on every object written: single PUTs, multipart uploads, CONFIG', async () => {
    const bucket = bucketName('wire-sse');
    const { seen, config } = await recorded(configFor(rgw, bucket, 'out', { ...tuning, sse: 'AES256' }));
    const exporter = await open('exporter', config);
    const big = pseudoRandom(6 * MiB, 4);
    const out = await exporter.host.exportTree([
      { path: '/', info: { mode: (0x80000000 | 0o755) >>> 0 } },
      { path: '/a.txt', info: { mode: 0o644, size: 7 }, content: Buffer.from('sealed!') },
      { path: '/big.bin', info: { mode: 0o644, size: big.length }, content: big },
    ]);
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors).toEqual([]);
    const store = await open('storage', { ...config, location: `${config.location as string}-repo` });
    await store.host.create(Buffer.from('_KLOSET_sse'));
    // One PUT each for a.txt and CONFIG, and CreateMultipartUpload for big.bin (its parts inherit the encryption).
    const asked = seen.filter((s) => (isUpload(s) && !s.url.includes('partNumber=')) || (s.method === 'POST' && s.url.includes('uploads')));
    expect(asked).toHaveLength(3);
    for (const s of asked) expect(s.headers['x-amz-server-side-encryption'], s.url).toBe('AES256');
    // This radosgw has no SSE-S3 backend (Vault): it takes the header and stores the objects as they are.
    expect((await readObject(sdk, bucket, 'out/a.txt')).toString()).toBe('sealed!');
    expect(sha256(await readObject(sdk, bucket, 'out/big.bin'))).toBe(sha256(big));
    expect((await store.host.open()).toString()).toBe('_KLOSET_sse');
  });

  it('sse=aws:kms with sse_kms_key_id: objects and repositories are encrypted with that key, read back, and the importer records it; an unknown key fails that object with its message', async () => {
    const bucket = bucketName('wire-kms');
    const { seen, config } = await recorded(configFor(rgw, bucket, 'out', { sse: 'aws:kms', sse_kms_key_id: KMS_KEY_ID }));
    const exporter = await open('exporter', config);
    const big = pseudoRandom(6 * MiB, 21);
    const out = await exporter.host.exportTree([
      { path: '/', info: { mode: (0x80000000 | 0o755) >>> 0 } },
      { path: '/a.txt', info: { mode: 0o644, size: 5 }, content: Buffer.from('kms!!') },
      { path: '/big.bin', info: { mode: 0o644, size: big.length }, content: big },
    ]);
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors).toEqual([]);
    // One PUT for a.txt and CreateMultipartUpload for big.bin carry the key (parts inherit it).
    const asked = seen.filter((s) => (isUpload(s) && !s.url.includes('partNumber=')) || (s.method === 'POST' && s.url.includes('uploads')));
    expect(asked).toHaveLength(2);
    for (const s of asked) {
      expect(s.headers['x-amz-server-side-encryption'], s.url).toBe('aws:kms');
      expect(s.headers['x-amz-server-side-encryption-aws-kms-key-id'], s.url).toBe(KMS_KEY_ID);
    }
    // radosgw's KMS ("testing" key store, test/servers/radosgw.ts) encrypted them with that key.
    for (const key of ['out/a.txt', 'out/big.bin']) {
      const head = await sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      expect(head.ServerSideEncryption, key).toBe('aws:kms');
      expect(head.SSEKMSKeyId, key).toBe(KMS_KEY_ID);
    }
    expect((await readObject(sdk, bucket, 'out/a.txt')).toString()).toBe('kms!!');
    expect(sha256(await readObject(sdk, bucket, 'out/big.bin'))).toBe(sha256(big));

    const importer = await open('importer', configFor(rgw, bucket, 'out'));
    const imported = await importer.host.importAll({ maxConcurrency: 2, content: 'bytes' });
    expect(imported.status.code).toBe(0);
    expect(imported.itemErrors).toEqual([]);
    expect(sha256(imported.contents.get('/out/big.bin') as Buffer)).toBe(sha256(big));
    const names = imported.records.find((r) => r.pathname === '/out/a.txt' && !r.isXattr)?.extendedAttributes;
    expect(names).toContain('s3.v1.sse=aws%3Akms');
    expect(names).toContain(`s3.v1.sse-kms-key-id=${KMS_KEY_ID}`);

    const store = await open('storage', configFor(rgw, bucket, 'repo', { sse: 'aws:kms', sse_kms_key_id: KMS_KEY_ID }));
    await store.host.create(Buffer.from('_KLOSET_kms'));
    const mac = randomMac();
    const pack = pseudoRandom(3 * MiB, 22);
    await store.host.put(RESOURCE.PACKFILE, mac, pack);
    expect(sha256(await store.host.get(RESOURCE.PACKFILE, mac))).toBe(sha256(pack));
    expect((await store.host.get(RESOURCE.PACKFILE, mac, { offset: 1000, length: 5000 })).equals(pack.subarray(1000, 6000))).toBe(true);
    expect((await store.host.open()).toString()).toBe('_KLOSET_kms');
    const repoHead = await sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: 'repo/CONFIG' }));
    expect(repoHead.SSEKMSKeyId).toBe(KMS_KEY_ID);

    const unknown = await open('exporter', configFor(rgw, bucket, 'other', { sse: 'aws:kms', sse_kms_key_id: 'no-such-key' }));
    const refused = await unknown.host.exportTree([
      { path: '/', info: { mode: (0x80000000 | 0o755) >>> 0 } },
      { path: '/b.txt', info: { mode: 0o644, size: 1 }, content: Buffer.from('b') },
    ]);
    expect(refused.status.code, refused.status.details).toBe(0);
    expect(refused.itemErrors).toEqual([
      {
        pathname: '/b.txt',
        error: expect.stringMatching(
          /^s3 exporter: cannot write s3:\/\/[^ ]+\/other\/b\.txt: the service refused the KMS key: Failed to retrieve the actual key, kms-keyid: no-such-key \(InvalidAccessKeyId\) \(hint: check sse_kms_key_id, and that these credentials may use that key\)$/,
        ),
      },
    ]);
  });

  it('sse_customer_key: the importer reads SSE-C objects and the exporter writes them with the key, which is never shown', async () => {
    const key = Buffer.alloc(32, 11);
    const keyText = key.toString('base64');
    const src = bucketName('wire-ssec-src');
    const dst = bucketName('wire-ssec-dst');
    await sdk.send(new CreateBucketCommand({ Bucket: src }));
    const big = pseudoRandom(6 * MiB, 12);
    const objects: Array<[string, Buffer]> = [
      ['data/small.txt', Buffer.from('sealed with SSE-C')],
      ['data/big.bin', big],
    ];
    for (const [k, body] of objects) {
      await sdk.send(new PutObjectCommand({ Bucket: src, Key: k, Body: body, SSECustomerAlgorithm: 'AES256', SSECustomerKey: key as unknown as string }));
    }
    const importer = await open('importer', configFor(rgw, src, 'data', { sse_customer_key: keyText }));
    const imported = await importer.host.importAll({ maxConcurrency: 2, content: 'bytes' });
    expect(imported.status.code).toBe(0);
    expect(imported.itemErrors).toEqual([]);
    expect(imported.errors).toEqual([]);
    expect(imported.contents.get('/data/small.txt')?.toString()).toBe('sealed with SSE-C');
    expect(sha256(imported.contents.get('/data/big.bin') as Buffer)).toBe(sha256(big));
    const sse = imported.records.find((r) => r.pathname === '/data/small.txt' && !r.isXattr)?.extendedAttributes;
    expect(sse).toContain('s3.v1.sse=customer-AES256');

    const exporter = await open('exporter', configFor(rgw, dst, 'restored', { ...tuning, sse_customer_key: keyText }));
    const out = await exporter.host.exportTree(restoreEntries(imported, '/data'));
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors).toEqual([]);
    for (const [k, body] of objects) {
      const restored = `restored/${k.slice('data/'.length)}`;
      // Without the key the object cannot be read; with it, the bytes are the source's.
      await expect(sdk.send(new GetObjectCommand({ Bucket: dst, Key: restored }))).rejects.toThrow();
      const got = await sdk.send(new GetObjectCommand({ Bucket: dst, Key: restored, SSECustomerAlgorithm: 'AES256', SSECustomerKey: key as unknown as string }));
      expect(sha256(Buffer.from(await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray())), restored).toBe(sha256(body));
    }
    for (const c of [importer, exporter]) assertNoSecrets(c.stderr(), [keyText], 's3 stderr');
  });

  it('session_token is sent as x-amz-security-token and never shown', async () => {
    const { seen, config } = await recorded(configFor(rgw, bucketName('wire-token'), 'repo', { session_token: TOKEN }));
    const store = await open('storage', config);
    let message = '';
    try {
      await store.host.open();
    } catch (err) {
      message = (err as Error).message;
    }
    expect(seen.length).toBeGreaterThan(0);
    for (const s of seen) expect(s.headers['x-amz-security-token']).toBe(TOKEN);
    expect(message).toMatch(/^s3 storage: /);
    assertNoSecrets(message, [TOKEN, rgw.secretKey], 'the Open error');
  });
});
