// Upload integrity against a real service: a proxy flips one byte of every other upload on its way (the first attempt of
// each PUT and part); the service must refuse it (the SigV4-signed SHA-256 no longer matches) and the connector send it
// again, so that what the service stores is exactly what was put.
import { expect } from 'vitest';
import { pseudoRandom, randomMac, sha256 } from '../../conformance/data.ts';
import { RESOURCE } from '../../harness/index.ts';
import type { S3Connectors } from './connect.ts';
import { startFlakyProxy, type Proxy } from './proxies.ts';
import { bucketName, configFor, hostOf, type S3Server } from './servers.ts';

const MiB = 1024 * 1024;

/** Whether a relayed request writes an object (not a bucket, tagging or ACL request). */
export function isObjectUpload(req: { method: string; url: string }): boolean {
  return req.method === 'PUT' && !req.url.endsWith('/') && !/[?&](tagging|acl)/.test(req.url) && /\/[^/?]+\/./.test(req.url);
}

/**
 * Stores a small (single PUT) and an 11 MiB (three 5 MiB parts) packfile through the corrupting proxy, reads both back
 * and checks their bytes; returns the service's status for each corrupted upload (the caller checks them).
 */
export async function putThroughFlippedBytes(server: S3Server, connectors: S3Connectors, proxies: Proxy[], tag: string): Promise<number[]> {
  let uploads = 0;
  const proxy = await startFlakyProxy(server.endpoint, (_n, req) => {
    if (!isObjectUpload(req)) return 'pass';
    return uploads++ % 2 === 0 ? 'corrupt' : 'pass';
  });
  proxies.push(proxy);
  const config = configFor(server, bucketName(tag), 'repo', { part_size: '5MiB', upload_cutoff: '5MiB', upload_concurrency: '2' });
  const store = await connectors.open('storage', { ...config, location: (config.location as string).replace(hostOf(server), hostOf(proxy)) });
  await store.host.create(Buffer.from('_KLOSET_flip'));
  const data = [pseudoRandom(1000, 6), pseudoRandom(11 * MiB, 7)];
  const macs = data.map(() => randomMac());
  for (const [i, d] of data.entries()) await store.host.put(RESOURCE.PACKFILE, macs[i] as Buffer, d);
  // Gets pass the proxy unchanged: what the service stored is what was sent.
  for (const [i, d] of data.entries()) expect(sha256(await store.host.get(RESOURCE.PACKFILE, macs[i] as Buffer))).toBe(sha256(d));
  // CONFIG, the small PUT and the first attempt of each of the three parts at least.
  expect(proxy.stats.corrupted.length).toBeGreaterThanOrEqual(4);
  return proxy.stats.corrupted;
}
