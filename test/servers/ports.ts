// Free TCP ports on 127.0.0.1 for test servers, never handing out the same port twice in one run.
import { createServer, type AddressInfo, type Server } from 'node:net';

/**
 * Ports already handed out in this process. It lives on `globalThis` because vitest evaluates a module once per
 * project runner, and the global setup and the smoke tests may each load their own copy of this file.
 */
const HANDED_OUT: Set<number> = ((globalThis as { __klosetTsPorts?: Set<number> }).__klosetTsPorts ??= new Set());

function listenOnZero(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => resolve(srv));
  });
}

function close(srv: Server): Promise<void> {
  return new Promise((resolve) => srv.close(() => resolve()));
}

/**
 * Returns `n` distinct free TCP ports on 127.0.0.1.
 *
 * All `n` sockets are held open at the same time, so the kernel cannot return one port twice, and ports already
 * handed out earlier in this process are skipped. Another process can still take a port before the server binds it;
 * the window is a few milliseconds.
 *
 * @param n - how many ports (at least 1)
 * @returns the port numbers
 * @example
 * const [s3Port, monPort] = await freePorts(2);
 */
export async function freePorts(n: number): Promise<number[]> {
  if (!Number.isInteger(n) || n < 1) throw new TypeError(`freePorts needs a positive integer, got ${n}`);
  const held: Server[] = [];
  const ports: number[] = [];
  try {
    for (let attempts = 0; ports.length < n; attempts++) {
      if (attempts > n + 100) throw new Error(`could not find ${n} free ports on 127.0.0.1`);
      const srv = await listenOnZero();
      held.push(srv);
      const port = (srv.address() as AddressInfo).port;
      if (!HANDED_OUT.has(port)) ports.push(port);
    }
  } finally {
    await Promise.all(held.map(close));
  }
  for (const p of ports) HANDED_OUT.add(p);
  return ports;
}

/**
 * Returns one free TCP port on 127.0.0.1 that this process has not handed out before.
 *
 * @returns the port number
 * @example
 * const port = await freePort();
 */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port as number;
}
