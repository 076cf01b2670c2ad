// Upload integrity on the second S3 implementation: Swift's s3api checks the SigV4-signed SHA-256 of each upload too, so
// bytes changed on the way are refused and the connector sends them again (the radosgw case is in wire.test.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { pseudoRandom, randomMac, sha256 } from '../../conformance/data.ts';
import { RESOURCE } from '../../harness/index.ts';
import { s3Connectors } from './connect.ts';
import { startFlakyProxy, type Proxy } from './proxies.ts';
import { bucketName, configFor, hostOf, swift } from './servers.ts';

const MiB = 1024 * 1024;
const server = await swift();
const connectors = s3Connectors([server.secretKey]);
const proxies: Proxy[] = [];

afterAll(async () => {
  await connectors.disposeAll();
  for (const p of proxies) await p.close();
  await server.stop();
});

describe('s3 on Swift: upload integrity', () => {
  it('an upload whose bytes change on the way is refused by Swift (signed SHA-256) and sent again: single PUTs and parts end intact', async () => {
    let uploads = 0;
    const proxy = await startFlakyProxy(server.endpoint, (_n, req) => {
      const upload = req.method === 'PUT' && /\/[^/?]+\/./.test(req.url) && !/[?&](tagging|acl)/.test(req.url);
      if (!upload) return 'pass';
      // Every other upload arrives with one byte flipped: the first attempt of each PUT and part.
      return uploads++ % 2 === 0 ? 'corrupt' : 'pass';
    });
    proxies.push(proxy);
    const config = configFor(server, bucketName('swift-flip'), 'repo', { part_size: '5MiB', upload_cutoff: '5MiB', upload_concurrency: '2' });
    const store = await connectors.open('storage', { ...config, location: (config.location as string).replace(hostOf(server), hostOf(proxy)) });
    await store.host.create(Buffer.from('_KLOSET_flip'));
    const data = [pseudoRandom(1000, 8), pseudoRandom(11 * MiB, 9)];
    const macs = data.map(() => randomMac());
    for (const [i, d] of data.entries()) await store.host.put(RESOURCE.PACKFILE, macs[i] as Buffer, d);
    for (const [i, d] of data.entries()) expect(sha256(await store.host.get(RESOURCE.PACKFILE, macs[i] as Buffer))).toBe(sha256(d));
    expect(proxy.stats.corrupted.length).toBeGreaterThanOrEqual(4);
    for (const status of proxy.stats.corrupted) expect(status).toBeGreaterThanOrEqual(400);
  });
});
