// A TCP proxy that delays every byte of every response by a fixed time: each request pays that much more latency,
// like a remote store, while bulk transfers still stream at full speed (the delay is pipelined, not per chunk).
// Run on its own so that the bench's busy event loop cannot stretch the delay:
//   npx tsx bench/support/delay-proxy.ts http://127.0.0.1:PORT 20   → prints `http://127.0.0.1:PROXYPORT` on stdout.
import net from 'node:net';

/** A running delay proxy. */
export interface DelayProxy {
  /** `http://127.0.0.1:PORT`. */
  endpoint: string;
  close(): Promise<void>;
}

/** Bytes held per connection before the upstream socket is paused (backpressure: memory stays bounded). */
const HIGH_WATER = 16 * 1024 * 1024;

/**
 * Starts a proxy to `target` (`http://host:port`) on 127.0.0.1 that forwards requests at once and hands each chunk of
 * the upstream's answer to the client `delayMs` after it arrived, in order. A request/response exchange therefore
 * costs `delayMs` more; connection set-up is not delayed.
 */
export async function startDelayProxy(target: string, delayMs: number): Promise<DelayProxy> {
  const url = new URL(target);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(url.port), url.hostname);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    const queue: Array<{ chunk: Buffer; due: number }> = [];
    let queued = 0;
    let ended = false;
    let timer: NodeJS.Timeout | undefined;
    let waitingDrain = false;
    const kill = (): void => {
      if (timer) clearTimeout(timer);
      client.destroy();
      upstream.destroy();
    };
    const flush = (): void => {
      timer = undefined;
      if (waitingDrain || client.destroyed) return;
      const now = performance.now();
      while (queue.length > 0 && (queue[0] as { due: number }).due <= now) {
        const { chunk } = queue.shift() as { chunk: Buffer };
        queued -= chunk.length;
        if (!client.write(chunk)) {
          waitingDrain = true;
          client.once('drain', () => {
            waitingDrain = false;
            flush();
          });
          break;
        }
      }
      if (queued < HIGH_WATER / 2 && upstream.isPaused()) upstream.resume();
      if (queue.length > 0) {
        if (!waitingDrain) timer = setTimeout(flush, Math.max(0, (queue[0] as { due: number }).due - now));
      } else if (ended) {
        client.end();
      }
    };
    upstream.on('data', (chunk: Buffer) => {
      queue.push({ chunk, due: performance.now() + delayMs });
      queued += chunk.length;
      if (queued > HIGH_WATER) upstream.pause();
      if (!timer && !waitingDrain) timer = setTimeout(flush, delayMs);
    });
    upstream.on('end', () => {
      ended = true;
      if (queue.length === 0 && !waitingDrain) client.end();
    });
    client.pipe(upstream);
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', () => {
      sockets.delete(client);
      kill();
    });
    upstream.on('close', () => sockets.delete(upstream));
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const [target, delay] = process.argv.slice(2);
  if (!target || delay === undefined || !Number.isFinite(Number(delay))) {
    process.stderr.write('usage: delay-proxy.ts http://host:port DELAY_MS\n');
    process.exit(2);
  }
  const proxy = await startDelayProxy(target, Number(delay));
  process.stdout.write(`${proxy.endpoint}\n`);
  // Runs until its parent closes stdin (or kills it).
  process.stdin.resume();
  process.stdin.on('end', () => void proxy.close().then(() => process.exit(0)));
}
