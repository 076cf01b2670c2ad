// Fault-injecting proxies for the s3 tests: a TCP proxy that resets connections mid-transfer, an HTTP proxy answering 503/500 bursts.
import http from 'node:http';
import net from 'node:net';

/** A running proxy. */
export interface Proxy {
  /** `http://127.0.0.1:PORT`. */
  endpoint: string;
  close(): Promise<void>;
}

/** What the reset proxy did. */
export interface ResetStats {
  connections: number;
  resets: number;
  bytes: number;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

function closer(server: net.Server, sockets: Set<net.Socket>): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}

/**
 * A TCP proxy to `target` (`http://host:port`) that resets (RST) the connection carrying traffic each time the bytes
 * relayed in both directions together cross another multiple of `everyBytes`: uploads and downloads are cut in the
 * middle, over and over, but each retry gets further. `enabled` switches the faults at run time.
 */
export async function startResetProxy(target: string, options: { everyBytes: number }): Promise<Proxy & { stats: ResetStats; enabled: boolean }> {
  const url = new URL(target);
  const sockets = new Set<net.Socket>();
  const stats: ResetStats = { connections: 0, resets: 0, bytes: 0 };
  let nextReset = options.everyBytes;
  const state = { enabled: true };
  const server = net.createServer((client) => {
    stats.connections++;
    const upstream = net.connect(Number(url.port), url.hostname);
    sockets.add(client);
    sockets.add(upstream);
    let dead = false;
    const kill = (): void => {
      if (dead) return;
      dead = true;
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    };
    const relay = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (dead) return;
        stats.bytes += chunk.length;
        if (state.enabled && stats.bytes >= nextReset) {
          nextReset = stats.bytes + options.everyBytes;
          stats.resets++;
          // Forward part of the chunk first, so the peer sees a transfer that stops in the middle.
          to.write(chunk.subarray(0, chunk.length >> 1), () => kill());
          return;
        }
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('end', () => to.end());
      from.on('error', () => kill());
      from.on('close', () => {
        sockets.delete(from);
        if (!dead) to.destroy();
      });
    };
    relay(client, upstream);
    relay(upstream, client);
  });
  const port = await listen(server);
  const close = closer(server, sockets);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stats,
    get enabled() {
      return state.enabled;
    },
    set enabled(v: boolean) {
      state.enabled = v;
    },
    close,
  };
}

/** An S3 error answer of the flaky proxy. */
export interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
}

/**
 * What the flaky proxy answers for one request: relay it, relay it with one byte of its body flipped (`corrupt`: the
 * signature still matches, only the bytes differ from what was signed), a 503 SlowDown, a 500 InternalError, or a given error.
 */
export type Verdict = 'pass' | 'corrupt' | 503 | 500 | ErrorAnswer;

/** What the flaky proxy did. */
export interface FlakyStats {
  requests: number;
  failed: number;
  byStatus: Record<number, number>;
  /** The service's status for each request relayed with a flipped byte. */
  corrupted: number[];
}

const ANSWERS: Record<503 | 500, ErrorAnswer> = {
  503: { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' },
  500: { status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.' },
};

function errorXml(a: ErrorAnswer): string {
  return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${a.code}</Code><Message>${a.message}</Message><RequestId>proxy</RequestId></Error>`;
}

/**
 * An HTTP proxy to `target` that answers some requests itself with 503 SlowDown, 500 InternalError or another S3
 * error, as `plan` decides from the request number, method, URL and headers; everything else is relayed unchanged (Host included, so SigV4
 * signatures still match).
 */
export async function startFlakyProxy(
  target: string,
  plan: (n: number, req: { method: string; url: string; headers: http.IncomingHttpHeaders }) => Verdict,
): Promise<Proxy & { stats: FlakyStats }> {
  const url = new URL(target);
  const stats: FlakyStats = { requests: 0, failed: 0, byStatus: {}, corrupted: [] };
  const sockets = new Set<net.Socket>();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const server = http.createServer((req, res) => {
    const n = stats.requests++;
    const verdict = plan(n, { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
    if (verdict !== 'pass' && verdict !== 'corrupt') {
      const answer = typeof verdict === 'number' ? ANSWERS[verdict] : verdict;
      stats.failed++;
      stats.byStatus[answer.status] = (stats.byStatus[answer.status] ?? 0) + 1;
      req.resume();
      req.on('end', () => {
        const body = errorXml(answer);
        const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) };
        if (answer.status === 503) headers['retry-after'] = '0';
        res.writeHead(answer.status, headers);
        res.end(req.method === 'HEAD' ? undefined : body);
      });
      return;
    }
    const up = http.request(
      { host: url.hostname, port: Number(url.port), method: req.method, path: req.url, headers: req.headers, agent },
      (ur) => {
        if (verdict === 'corrupt') stats.corrupted.push(ur.statusCode ?? 502);
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    if (verdict === 'corrupt') {
      // Flip the first byte of the body's first non-empty chunk; the length stays the same.
      let flipped = false;
      req.on('data', (chunk: Buffer) => {
        if (!flipped && chunk.length > 0) {
          flipped = true;
          chunk = Buffer.from(chunk);
          chunk[0] = (chunk[0] as number) ^ 0xff;
        }
        if (!up.write(chunk)) req.pause();
      });
      up.on('drain', () => req.resume());
      req.on('end', () => up.end());
    } else {
      req.pipe(up);
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listen(server);
  const close = closer(server, sockets);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stats,
    close: async () => {
      agent.destroy();
      await close();
    },
  };
}

/** A plan of short bursts: requests `n` with `n % period < burst` fail, alternating 503 and 500 by burst. */
export function bursts(period: number, burst: number): (n: number) => Verdict {
  return (n) => {
    if (n % period >= burst) return 'pass';
    return Math.floor(n / period) % 2 === 0 ? 503 : 500;
  };
}

/**
 * A TLS-terminating proxy to `target` with a fresh self-signed certificate for 127.0.0.1 (made with the openssl
 * command line), so that HTTPS options can be checked against a plain-HTTP server.
 */
export async function startTlsProxy(target: string): Promise<Proxy> {
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const tls = await import('node:tls');
  const dir = mkdtempSync(join(tmpdir(), 'kts-s3-tls-'));
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
      { stdio: 'ignore' },
    );
    const url = new URL(target);
    const sockets = new Set<net.Socket>();
    const server = tls.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (client) => {
      const upstream = net.connect(Number(url.port), url.hostname);
      sockets.add(client);
      sockets.add(upstream);
      client.pipe(upstream).pipe(client);
      const end = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end);
      upstream.on('error', end);
      client.on('close', () => sockets.delete(client));
      upstream.on('close', () => sockets.delete(upstream));
    });
    server.on('tlsClientError', () => undefined);
    const port = await listen(server);
    return { endpoint: `https://127.0.0.1:${port}`, close: closer(server, sockets) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
