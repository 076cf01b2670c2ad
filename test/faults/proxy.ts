// One fault-injecting proxy for every fault test: a TCP relay (resets after N bytes, stalls, latency, bandwidth caps)
// or an HTTP reverse proxy (bursts of 429/503 with Retry-After, 500s, truncated bodies), placed between a connector
// and its server. Faults can be changed while it runs; counters say what it did.
import http from 'node:http';
import net from 'node:net';

/** Which way bytes flow: `up` = client → server, `down` = server → client. */
export type Direction = 'up' | 'down';

/** Faults of the byte stream (both layers apply them to the sockets they relay). */
export type TcpFault =
  /**
   * Resets (RST) the connection carrying traffic each time the bytes relayed since the fault was set (all connections
   * together, both directions unless `direction`) cross another `afterBytes`, at most `times` times: transfers are cut
   * in the middle and each retry gets further. Half the chunk that crosses the mark is forwarded first.
   */
  | { kind: 'reset'; afterBytes: number; times?: number; direction?: Direction }
  /**
   * Once `afterBytes` more bytes were relayed, the next `times` connections (default 1) carrying traffic go silent
   * for `ms` (default 30 s): nothing is forwarded either way, nothing is closed. A client that gives up closes; the
   * proxy then closes the upstream side. After `ms` the connection carries on.
   */
  | { kind: 'stall'; afterBytes?: number; ms?: number; times?: number }
  /** Every chunk is delayed by `ms` in each direction (order kept). */
  | { kind: 'latency'; ms: number }
  /** All connections together relay at most `bytesPerSecond` in each direction. */
  | { kind: 'bandwidth'; bytesPerSecond: number };

/** Which requests an HTTP fault applies to. */
export type RequestMatch = (req: { method: string; url: string; n: number }) => boolean;

/** Faults of HTTP exchanges (HTTP layer only). */
export type HttpFault =
  /**
   * Answers requests itself with `status`: of the matching requests, numbers `k` with `k % period < burst` fail
   * (bursts of `burst` in every `period`), at most `times` in all. `retryAfter` becomes the Retry-After header;
   * `body` (default: a short text) and `contentType` let it look like the service's own error.
   */
  | {
      kind: 'status';
      status: number;
      burst?: number;
      period?: number;
      times?: number;
      retryAfter?: string;
      body?: (status: number) => { contentType: string; text: string };
      match?: RequestMatch;
    }
  /**
   * Relays the request, then sends the response head with its full Content-Length but only `keep` (default half)
   * of the body, and closes the connection. Applies to the first `times` matching responses whose body holds at
   * least `minBytes` (default 1).
   */
  | { kind: 'truncate'; times?: number; keep?: number; minBytes?: number; match?: RequestMatch };

/** Any fault (HTTP faults need an HTTP proxy). */
export type Fault = TcpFault | HttpFault | { kind: 'none' };

/** What the proxy did. */
export interface ProxyStats {
  connections: number;
  /** Bytes relayed per direction. */
  up: number;
  down: number;
  resets: number;
  stalls: number;
  /** HTTP requests seen (HTTP layer). */
  requests: number;
  /** Requests answered with an injected status, by status. */
  statuses: Record<number, number>;
  truncated: number;
}

/** A running proxy. */
export interface FaultProxy {
  /** `http://127.0.0.1:PORT`. */
  readonly endpoint: string;
  /** `127.0.0.1:PORT`. */
  readonly host: string;
  readonly port: number;
  readonly layer: 'tcp' | 'http';
  readonly stats: ProxyStats;
  /** The fault in force. */
  fault: Fault;
  /** Connections open right now (client side). */
  open(): number;
  /** Changes the fault (counters of the previous one are dropped). */
  set(fault: Fault): void;
  close(): Promise<void>;
}

/** Options of {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** `tcp` relays bytes; `http` is a reverse proxy that can also answer or cut HTTP exchanges. */
  layer: 'tcp' | 'http';
  /** The server: `http://host:port`, `host:port` or a port on 127.0.0.1. */
  target: string | number;
  fault?: Fault;
}

const HTTP_KINDS = new Set(['status', 'truncate']);

function targetOf(t: string | number): { host: string; port: number } {
  if (typeof t === 'number') return { host: '127.0.0.1', port: t };
  const u = new URL(t.includes('://') ? t : `tcp://${t}`);
  const port = Number(u.port);
  if (!port) throw new Error(`fault proxy: target ${t} has no port`);
  return { host: u.hostname, port };
}

/** Shared state of the byte-level faults: one per proxy, reset by `set`. */
class ByteFaults {
  fault: Fault = { kind: 'none' };
  private counted = 0;
  private nextReset = 0;
  private resetsLeft = 0;
  private stallsLeft = 0;
  private stallAt = 0;
  /** Earliest time each direction may send its next byte (bandwidth cap). */
  private readonly clock: Record<Direction, number> = { up: 0, down: 0 };
  private readonly stats: ProxyStats;

  constructor(stats: ProxyStats) {
    this.stats = stats;
  }

  set(fault: Fault): void {
    this.fault = fault;
    this.counted = 0;
    this.clock.up = this.clock.down = 0;
    if (fault.kind === 'reset') {
      if (!(fault.afterBytes > 0)) throw new Error('fault proxy: reset needs afterBytes > 0');
      this.nextReset = fault.afterBytes;
      this.resetsLeft = fault.times ?? Infinity;
    }
    if (fault.kind === 'stall') {
      this.stallsLeft = fault.times ?? 1;
      this.stallAt = fault.afterBytes ?? 0;
    }
  }

  /**
   * Decides what happens to `chunk` going `direction` on a connection: forward it (after a delay), cut the
   * connection after forwarding a part of it, or stall.
   */
  decide(direction: Direction, chunk: Buffer, conn: { stalled: boolean }): { delay: number; cutAfter?: number; stallMs?: number } {
    const f = this.fault;
    if (f.kind === 'reset' && (f.direction === undefined || f.direction === direction) && this.resetsLeft > 0) {
      this.counted += chunk.length;
      if (this.counted >= this.nextReset) {
        this.nextReset = this.counted + f.afterBytes;
        this.resetsLeft--;
        this.stats.resets++;
        return { delay: 0, cutAfter: chunk.length >> 1 };
      }
      return { delay: 0 };
    }
    if (f.kind === 'stall' && !conn.stalled && this.stallsLeft > 0) {
      this.counted += chunk.length;
      if (this.counted >= this.stallAt) {
        this.stallsLeft--;
        this.stats.stalls++;
        conn.stalled = true;
        return { delay: 0, stallMs: f.ms ?? 30_000 };
      }
      return { delay: 0 };
    }
    if (f.kind === 'latency') return { delay: f.ms };
    if (f.kind === 'bandwidth') {
      const now = Date.now();
      const start = Math.max(now, this.clock[direction]);
      this.clock[direction] = start + (chunk.length * 1000) / f.bytesPerSecond;
      return { delay: this.clock[direction] - now };
    }
    return { delay: 0 };
  }
}

/**
 * Relays bytes between `client` and `upstream` through the byte faults: order is kept per direction (each chunk
 * waits for the one before), backpressure is honoured, and an error or close on either side ends both.
 */
function relay(client: net.Socket, upstream: net.Socket, faults: ByteFaults, stats: ProxyStats): void {
  const conn = { stalled: false, dead: false };
  const timers = new Set<NodeJS.Timeout>();
  const kill = (rst: boolean): void => {
    if (conn.dead) return;
    conn.dead = true;
    for (const t of timers) clearTimeout(t);
    if (rst) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    } else {
      client.destroy();
      upstream.destroy();
    }
  };
  const pipe = (from: net.Socket, to: net.Socket, direction: Direction): void => {
    /** When the previous chunk of this direction will have been written (ms since epoch). */
    let tail = 0;
    let pending = 0;
    let ended = false;
    const write = (chunk: Buffer): void => {
      if (conn.dead) return;
      stats[direction] += chunk.length;
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    };
    /** Delayed steps of this direction, run strictly in order (timers of different lengths may fire out of order). */
    const queue: Array<{ at: number; fn: () => void }> = [];
    let armed: NodeJS.Timeout | undefined;
    const drain = (): void => {
      if (armed) timers.delete(armed);
      armed = undefined;
      while (queue.length > 0 && (queue[0] as { at: number }).at <= Date.now()) {
        const step = queue.shift() as { fn: () => void };
        pending--;
        step.fn();
        if (conn.dead) return;
      }
      if (pending === 0 && ended && !conn.dead) to.end();
      arm();
    };
    const arm = (): void => {
      if (armed || queue.length === 0 || conn.dead) return;
      armed = setTimeout(drain, Math.max(0, Math.ceil((queue[0] as { at: number }).at - Date.now())));
      armed.unref();
      timers.add(armed);
    };
    const later = (ms: number, fn: () => void): void => {
      pending++;
      queue.push({ at: Date.now() + ms, fn });
      arm();
    };
    from.on('data', (chunk: Buffer) => {
      if (conn.dead) return;
      const d = faults.decide(direction, chunk, conn);
      const now = Date.now();
      if (d.cutAfter !== undefined) {
        const part = chunk.subarray(0, d.cutAfter);
        const cut = (): void => {
          if (conn.dead) return;
          stats[direction] += part.length;
          to.write(part, () => kill(true));
        };
        if (tail > now) later(tail - now, cut);
        else cut();
        return;
      }
      if (d.stallMs !== undefined) {
        // Nothing moves either way until the stall ends: both sockets stop reading.
        client.pause();
        upstream.pause();
        tail = Math.max(tail, now) + d.stallMs;
        later(tail - now, () => {
          write(chunk);
          client.resume();
          upstream.resume();
        });
        return;
      }
      const at = Math.max(tail, now + d.delay);
      if (at > now || pending > 0) {
        tail = at;
        if (d.delay > 50) from.pause();
        later(at - now, () => {
          write(chunk);
          if (!conn.dead && pending === 0) from.resume();
        });
      } else {
        write(chunk);
      }
    });
    from.on('end', () => {
      ended = true;
      // A peer that gives up on a stalled connection ends it: nothing more will go through.
      if (conn.stalled && pending > 0) return kill(false);
      if (pending === 0 && !conn.dead) to.end();
    });
    from.on('error', () => kill(false));
    from.on('close', () => {
      // A side that went away without ending takes the other with it; a clean end was passed on as a half-close.
      if (!ended) kill(false);
    });
  };
  pipe(client, upstream, 'up');
  pipe(upstream, client, 'down');
}

/** A TCP relay server to `up` whose connections go through the byte faults. */
function tcpRelay(up: { host: string; port: number }, bytes: ByteFaults, stats: ProxyStats, clients: Set<net.Socket> | undefined): { server: net.Server; sockets: Set<net.Socket> } {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  };
  const server = net.createServer((client) => {
    if (clients) {
      stats.connections++;
      clients.add(client);
      client.on('close', () => clients.delete(client));
    }
    const upstream = net.connect(up.port, up.host);
    track(client);
    track(upstream);
    relay(client, upstream, bytes, stats);
  });
  return { server, sockets };
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

/**
 * Starts a fault proxy on 127.0.0.1 (random port) in front of `target`. With the HTTP layer, clients connect through
 * the byte-fault relay to the HTTP proxy, so every fault applies to it.
 *
 * @example
 * const p = await startFaultProxy({ layer: 'http', target: rgw.endpoint, fault: { kind: 'status', status: 503, burst: 2, period: 5, retryAfter: '1' } });
 * // point the connector at p.endpoint, run, then p.set({ kind: 'none' }) and p.close()
 */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const up = targetOf(options.target);
  const stats: ProxyStats = { connections: 0, up: 0, down: 0, resets: 0, stalls: 0, requests: 0, statuses: {}, truncated: 0 };
  const bytes = new ByteFaults(stats);
  const clients = new Set<net.Socket>();
  let layer: HttpLayer | undefined;
  let innerPort = 0;
  if (options.layer === 'http') {
    // Clients reach the HTTP layer through the byte-fault relay, so resets and stalls hit their own sockets.
    layer = new HttpLayer(up, stats);
    innerPort = await listen(layer.server);
  }
  const { server, sockets } = tcpRelay(layer ? { host: '127.0.0.1', port: innerPort } : up, bytes, stats, clients);
  const port = await listen(server);
  const proxy: FaultProxy = {
    endpoint: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    layer: options.layer,
    stats,
    fault: { kind: 'none' },
    open: () => clients.size,
    set(fault: Fault) {
      if (HTTP_KINDS.has(fault.kind) && options.layer !== 'http') {
        throw new Error(`fault proxy: ${fault.kind} is an HTTP fault; start the proxy with layer 'http'`);
      }
      proxy.fault = fault;
      bytes.set(fault);
      layer?.set(fault);
    },
    close: async () => {
      for (const s of [...sockets, ...clients]) s.destroy();
      layer?.agent.destroy();
      layer?.server.closeAllConnections();
      const servers = layer ? [server, layer.server] : [server];
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
  proxy.set(options.fault ?? { kind: 'none' });
  return proxy;
}

/** The HTTP layer: a reverse proxy that answers or cuts exchanges itself; clients reach it through the byte-fault relay. */
class HttpLayer {
  readonly server: http.Server;
  readonly agent: http.Agent;
  private fault: Fault = { kind: 'none' };
  private matched = 0;
  private used = 0;

  constructor(up: { host: string; port: number }, stats: ProxyStats) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    this.server = http.createServer((req, res) => this.handle(req, res, up, stats));
    this.server.keepAliveTimeout = 30_000;
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  set(fault: Fault): void {
    this.fault = fault;
    this.matched = 0;
    this.used = 0;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, up: { host: string; port: number }, stats: ProxyStats): void {
    const n = stats.requests++;
    const f = this.fault;
    const seen = { method: req.method ?? 'GET', url: req.url ?? '/', n };
    if (f.kind === 'status' && (f.match?.(seen) ?? true)) {
      const k = this.matched++;
      const burst = f.burst ?? 1;
      const period = f.period ?? burst;
      if (k % period < burst && this.used < (f.times ?? Infinity)) {
        this.used++;
        stats.statuses[f.status] = (stats.statuses[f.status] ?? 0) + 1;
        const body = f.body?.(f.status) ?? { contentType: 'text/plain', text: `injected ${f.status}` };
        req.resume();
        const answer = (): void => {
          const headers: http.OutgoingHttpHeaders = { 'content-type': body.contentType, 'content-length': Buffer.byteLength(body.text) };
          if (f.retryAfter !== undefined) headers['retry-after'] = f.retryAfter;
          res.writeHead(f.status, headers);
          res.end(req.method === 'HEAD' ? undefined : body.text);
        };
        if (req.readableEnded) answer();
        else {
          req.on('end', answer);
          req.on('error', () => res.destroy());
        }
        return;
      }
    }
    const truncate = f.kind === 'truncate' && (f.match?.(seen) ?? true) && this.used < (f.times ?? 1) ? f : undefined;
    // The request's headers go on unchanged, Host included: the server sees the proxy's own address (what the client
    // reached), so the absolute URLs an emulator builds from it (upload sessions, downloads) lead back to this proxy.
    const out = http.request(
      { host: up.host, port: up.port, method: req.method, path: req.url, headers: req.headers, agent: this.agent },
      (ur) => {
        if (!truncate) {
          res.writeHead(ur.statusCode ?? 502, ur.statusMessage, ur.headers);
          ur.pipe(res);
          ur.on('error', () => res.destroy());
          return;
        }
        const parts: Buffer[] = [];
        ur.on('data', (c: Buffer) => parts.push(c));
        ur.on('error', () => res.destroy());
        ur.on('end', () => {
          const body = Buffer.concat(parts);
          const headers = { ...ur.headers };
          delete headers['transfer-encoding'];
          headers['content-length'] = String(body.length);
          if (body.length < (truncate.minBytes ?? 1) || this.used >= (truncate.times ?? 1)) {
            res.writeHead(ur.statusCode ?? 502, ur.statusMessage, headers);
            res.end(body);
            return;
          }
          this.used++;
          stats.truncated++;
          const keep = Math.min(body.length - 1, truncate.keep ?? body.length >> 1);
          res.writeHead(ur.statusCode ?? 502, ur.statusMessage, headers);
          res.write(body.subarray(0, keep), () => res.socket?.destroy());
        });
      },
    );
    out.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('fault proxy: upstream failed');
      } else res.destroy();
    });
    req.pipe(out);
    req.on('error', () => out.destroy());
    res.on('close', () => {
      if (!res.writableFinished) out.destroy();
    });
  }
}
