// Upload integrity on the second S3 implementation: Swift's s3api checks the SigV4-signed SHA-256 of each upload too, so
// bytes changed on the way are refused and the connector sends them again (the radosgw case is in wire.test.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { s3Connectors } from './connect.ts';
import { putThroughFlippedBytes } from './integrity.ts';
import type { Proxy } from './proxies.ts';
import { swift } from './servers.ts';

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
    const statuses = await putThroughFlippedBytes(server, connectors, proxies, 'swift-flip');
    for (const status of statuses) expect(status).toBeGreaterThanOrEqual(400);
  });
});
