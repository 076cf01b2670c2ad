// The fault proxy itself, against small local servers: every fault does what it says and nothing else.
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from './proxy.ts';

const BODY = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let echo: net.Server;
let web: http.Server;
let echoPort = 0;
let webUrl = '';
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  echo = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  web = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      if (req.url === '/host') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(req.headers.host ?? '');
        return;
      }
      if (req.url === '/body') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
        res.end(BODY);
        return;
      }
      const text = `${req.method} ${req.url} ${Buffer.concat(parts).length}`;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(text);
    });
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as net.AddressInfo).port;
  webUrl = `http://127.0.0.1:${(web.address() as net.AddressInfo).port}`;
});

afterAll(async () => {
  for (const p of proxies) await p.close();
  web.closeAllConnections();
  await new Promise<void>((r) => web.close(() => r()));
  await new Promise<void>((r) => echo.close(() => r()));
});

async function proxy(layer: 'tcp' | 'http', target: string | number): Promise<FaultProxy> {
  const p = await startFaultProxy({ layer, target });
  proxies.push(p);
  return p;
}

/** Sends `data` to the echo server through `port` and collects what comes back until the connection ends. */
function echoThrough(port: number, data: Buffer, giveUpMs = 10_000): Promise<{ got: Buffer; error?: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const parts: Buffer[] = [];
    let size = 0;
    const s = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ got: Buffer.concat(parts), error: 'gave up', ms: Date.now() - t0 });
    }, giveUpMs);
    s.on('data', (c: Buffer) => {
      parts.push(c);
      size += c.length;
      if (size >= data.length) s.end();
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ got: Buffer.concat(parts), error: err.code ?? err.message, ms: Date.now() - t0 });
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ got: Buffer.concat(parts), ms: Date.now() - t0 });
    });
    s.write(data);
  });
}

describe('fault proxy, TCP layer', () => {
  it('relays bytes unchanged without a fault', async () => {
    const p = await proxy('tcp', echoPort);
    const r = await echoThrough(p.port, BODY);
    expect(r.error).toBeUndefined();
    expect(sha(r.got)).toBe(sha(BODY));
    expect(p.stats.up).toBe(BODY.length);
    expect(p.stats.down).toBe(BODY.length);
  });

  it('resets the connection after N bytes, at most `times` times, then relays normally', async () => {
    const p = await proxy('tcp', echoPort);
    p.set({ kind: 'reset', afterBytes: 100_000, times: 1 });
    const first = await echoThrough(p.port, BODY);
    expect(first.error).toBe('ECONNRESET');
    expect(first.got.length).toBeLessThan(BODY.length);
    expect(p.stats.resets).toBe(1);
    const second = await echoThrough(p.port, BODY);
    expect(second.error).toBeUndefined();
    expect(sha(second.got)).toBe(sha(BODY));
  });

  it('stalls a connection for the given time, then carries on', async () => {
    const p = await proxy('tcp', echoPort);
    p.set({ kind: 'stall', afterBytes: 0, ms: 700 });
    const r = await echoThrough(p.port, Buffer.from('ping'));
    expect(r.error).toBeUndefined();
    expect(r.got.toString()).toBe('ping');
    expect(r.ms).toBeGreaterThanOrEqual(650);
    expect(p.stats.stalls).toBe(1);
    // Only one connection stalls (times defaults to 1).
    const fast = await echoThrough(p.port, Buffer.from('pong'));
    expect(fast.ms).toBeLessThan(600);
  });

  it('a client that gives up on a stall closes both sides', async () => {
    const p = await proxy('tcp', echoPort);
    p.set({ kind: 'stall', ms: 30_000 });
    const r = await echoThrough(p.port, Buffer.from('ping'), 300);
    expect(r.error).toBe('gave up');
    await expect.poll(() => p.open(), { timeout: 2000 }).toBe(0);
  });

  it('adds latency to every chunk and keeps their order', async () => {
    const p = await proxy('tcp', echoPort);
    p.set({ kind: 'latency', ms: 150 });
    const r = await echoThrough(p.port, BODY);
    expect(sha(r.got)).toBe(sha(BODY));
    // One delay up, one down, at least.
    expect(r.ms).toBeGreaterThanOrEqual(290);
  });

  it('caps the bandwidth', async () => {
    const p = await proxy('tcp', echoPort);
    p.set({ kind: 'bandwidth', bytesPerSecond: 1_000_000 });
    const r = await echoThrough(p.port, BODY);
    expect(sha(r.got)).toBe(sha(BODY));
    // 300 kB up then down at 1 MB/s each: ≥ 0.3 s (the two directions overlap).
    expect(r.ms).toBeGreaterThanOrEqual(280);
  });

  it('refuses HTTP faults', async () => {
    const p = await proxy('tcp', echoPort);
    expect(() => p.set({ kind: 'status', status: 503 })).toThrow(/HTTP fault/);
  });
});

describe('fault proxy, HTTP layer', () => {
  it('relays requests and bodies unchanged without a fault', async () => {
    const p = await proxy('http', webUrl);
    const r = await fetch(`${p.endpoint}/echo?x=1`, { method: 'PUT', body: 'hello' });
    expect(await r.text()).toBe('PUT /echo?x=1 5');
    const b = Buffer.from(await (await fetch(`${p.endpoint}/body`)).arrayBuffer());
    expect(sha(b)).toBe(sha(BODY));
  });

  it('passes the Host header on unchanged: the server sees the address the client reached (the proxy)', async () => {
    // Emulators build upload and download URLs from it, so those come back through the same proxy.
    const p = await proxy('http', webUrl);
    expect(await (await fetch(`${p.endpoint}/host`)).text()).toBe(p.host);
    const t = await proxy('tcp', webUrl);
    expect(await (await fetch(`${t.endpoint}/host`)).text()).toBe(t.host);
  });

  it('answers bursts of an error status with Retry-After and the given body, at most `times`', async () => {
    const p = await proxy('http', webUrl);
    p.set({
      kind: 'status',
      status: 429,
      burst: 2,
      period: 4,
      times: 3,
      retryAfter: '1',
      body: () => ({ contentType: 'application/json', text: '{"error":"slow down"}' }),
    });
    const seen: Array<[number, string | null]> = [];
    for (let i = 0; i < 8; i++) {
      const r = await fetch(`${p.endpoint}/x${i}`);
      await r.text();
      seen.push([r.status, r.headers.get('retry-after')]);
    }
    expect(seen.map((s) => s[0])).toEqual([429, 429, 200, 200, 429, 200, 200, 200]);
    expect(seen[0]?.[1]).toBe('1');
    expect(p.stats.statuses[429]).toBe(3);
  });

  it('matches only the requests it is told to', async () => {
    const p = await proxy('http', webUrl);
    p.set({ kind: 'status', status: 500, times: 10, match: (r) => r.method === 'PUT' });
    expect((await fetch(`${p.endpoint}/a`)).status).toBe(200);
    expect((await fetch(`${p.endpoint}/a`, { method: 'PUT', body: 'x' })).status).toBe(500);
  });

  it('truncates a body: the full Content-Length is promised, fewer bytes come, the connection closes', async () => {
    const p = await proxy('http', webUrl);
    p.set({ kind: 'truncate', times: 1, minBytes: 1000 });
    const r = await new Promise<{ length: string | undefined; got: number; error?: string }>((resolve) => {
      http.get(`${p.endpoint}/body`, { agent: false }, (res) => {
        let got = 0;
        res.on('data', (c: Buffer) => (got += c.length));
        res.on('error', (err) => resolve({ length: res.headers['content-length'], got, error: err.message }));
        res.on('end', () => resolve({ length: res.headers['content-length'], got }));
      });
    });
    expect(r.length).toBe(String(BODY.length));
    expect(r.got).toBe(BODY.length >> 1);
    expect(r.error).toMatch(/aborted/);
    expect(p.stats.truncated).toBe(1);
    // Small answers are left alone, and later ones pass.
    expect(await (await fetch(`${p.endpoint}/small`)).text()).toBe('GET /small 0');
    expect(sha(Buffer.from(await (await fetch(`${p.endpoint}/body`)).arrayBuffer()))).toBe(sha(BODY));
  });

  it('applies byte faults to HTTP traffic too', async () => {
    const p = await proxy('http', webUrl);
    p.set({ kind: 'reset', afterBytes: 100_000, times: 1, direction: 'down' });
    await expect(fetch(`${p.endpoint}/body`).then((r) => r.arrayBuffer())).rejects.toThrow();
    expect(p.stats.resets).toBe(1);
    expect(sha(Buffer.from(await (await fetch(`${p.endpoint}/body`)).arrayBuffer()))).toBe(sha(BODY));
  });
});
