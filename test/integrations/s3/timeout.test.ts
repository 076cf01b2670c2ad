// s3 `timeout`: a connection that goes silent mid-transfer is abandoned after the configured idle time and the call is
// retried on a new connection, so uploads, downloads and listings finish long before the stall would end.
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenConnector } from '../../conformance/index.ts';
import { pseudoRandom, randomMac, sha256 } from '../../conformance/data.ts';
import { startFaultProxy, type FaultProxy } from '../../faults/proxy.ts';
import { RESOURCE } from '../../harness/index.ts';
import { s3Connectors } from './connect.ts';
import { bucketName, configFor, hostOf, radosgw, sdkClient } from './servers.ts';

const rgw = await radosgw();
const sdk: S3Client = sdkClient(rgw);
const bucket = bucketName('timeout');
const connectors = s3Connectors([rgw.secretKey]);
let proxy: FaultProxy;

/** How long the proxy keeps a stalled connection silent: far longer than the configured timeout. */
const STALL_MS = 60_000;

beforeAll(async () => {
  await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
  proxy = await startFaultProxy({ layer: 'tcp', target: rgw.endpoint });
});

afterAll(async () => {
  await connectors.disposeAll();
  await proxy?.close();
  sdk.destroy();
  await rgw.stop();
});

function storage(prefix: string, extra: Record<string, string>): Promise<OpenConnector> {
  const config = configFor(rgw, bucket, prefix, { max_retries: '4', ...extra });
  return connectors.open('storage', { ...config, location: (config.location as string).replace(hostOf(rgw), proxy.host) });
}

/** Runs `fn` and returns how long it took. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = Date.now();
  await fn();
  return Date.now() - started;
}

describe('s3 timeout', () => {
  it('abandons a stalled upload, download and listing after timeout=2s, retries them, and every byte arrives', async () => {
    const c = await storage('stalled', { timeout: '2s' });
    await c.host.create(Buffer.from('_KLOSET_config'));
    const mac = randomMac();
    const data = pseudoRandom(1_300_000, 11);

    // Upload: the connection goes silent once 300 kB of the object were relayed.
    let stalls = proxy.stats.stalls;
    proxy.set({ kind: 'stall', afterBytes: 300_000, ms: STALL_MS });
    const put = await timed(async () => expect(await c.host.put(RESOURCE.PACKFILE, mac, data)).toBe(data.length));
    expect(proxy.stats.stalls).toBe(++stalls);
    expect(put).toBeGreaterThanOrEqual(1900);
    expect(put).toBeLessThan(STALL_MS / 3);

    // Download: silent half-way through the object; the retry resumes and the bytes are whole.
    proxy.set({ kind: 'stall', afterBytes: 600_000, ms: STALL_MS });
    let back: Buffer = Buffer.alloc(0);
    const get = await timed(async () => {
      back = await c.host.get(RESOURCE.PACKFILE, mac);
    });
    expect(proxy.stats.stalls).toBe(++stalls);
    expect(sha256(back)).toBe(sha256(data));
    expect(get).toBeGreaterThanOrEqual(1900);
    expect(get).toBeLessThan(STALL_MS / 3);

    // Listing: the very next connection carrying traffic goes silent.
    proxy.set({ kind: 'stall', afterBytes: 0, ms: STALL_MS });
    let listed: Buffer[] = [];
    const list = await timed(async () => {
      listed = await c.host.list(RESOURCE.PACKFILE);
    });
    expect(proxy.stats.stalls).toBe(++stalls);
    expect(listed.map((m) => m.toString('hex'))).toEqual([mac.toString('hex')]);
    expect(list).toBeGreaterThanOrEqual(1900);
    expect(list).toBeLessThan(STALL_MS / 3);
    proxy.set({ kind: 'none' });
  }, 60_000);

  it('keeps waiting through a stall shorter than the timeout (no retry needed)', async () => {
    const c = await storage('patient', { timeout: '20s' });
    await c.host.create(Buffer.from('_KLOSET_config'));
    const mac = randomMac();
    const data = pseudoRandom(400_000, 12);
    const stalls = proxy.stats.stalls;
    proxy.set({ kind: 'stall', afterBytes: 100_000, ms: 3_000 });
    const connections = proxy.stats.connections;
    expect(await c.host.put(RESOURCE.PACKFILE, mac, data)).toBe(data.length);
    expect(proxy.stats.stalls).toBe(stalls + 1);
    // The stalled connection was kept: no new connection was opened to retry the upload.
    expect(proxy.stats.connections).toBe(connections);
    proxy.set({ kind: 'none' });
    expect(sha256(await c.host.get(RESOURCE.PACKFILE, mac))).toBe(sha256(data));
  }, 60_000);
});
