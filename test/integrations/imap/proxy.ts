// A TCP proxy for fault tests: forwards to a server and cuts connections in the middle of chosen commands or replies.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

/** When to cut: after `afterBytes` more bytes once `trigger` was seen in one direction of a connection. */
export interface DropRule {
  /** `up` = client → server, `down` = server → client. */
  direction: 'up' | 'down';
  trigger: RegExp;
  afterBytes: number;
  /** How many cuts this rule may still make (Infinity for every matching connection). */
  times: number;
}

/** Rewrites replies: the first `times` matches of `pattern` in one direction are replaced (a throttling server, say). */
export interface RewriteRule {
  direction: 'up' | 'down';
  pattern: RegExp;
  replacement: string;
  times: number;
}

/** A running proxy. */
export interface FaultProxy {
  rewrites: RewriteRule[];
  /** Rewrites made so far. */
  rewritten: number;
  port: number;
  /** Connections cut so far. */
  drops: number;
  /** Connections accepted so far. */
  connections: number;
  /** Bytes forwarded so far, per direction. */
  bytes: { up: number; down: number };
  /** Every `UID FETCH` command line sent through the proxy, with the number of its connection (1, 2…). */
  fetches: Array<{ connection: number; line: string }>;
  /** Numbers of the connections cut so far. */
  cutConnections: number[];
  rules: DropRule[];
  close(): Promise<void>;
}

/**
 * Starts a proxy on 127.0.0.1 in front of the plain port `port`. With `tls` the proxy speaks implicit TLS to its clients
 * (terminating it with that key and certificate), so faults can be aimed at commands of an implicit-TLS session too.
 */
export async function startProxy(port: number, rules: DropRule[] = [], options: { tls?: { key: string; cert: string } } = {}): Promise<FaultProxy> {
  const sockets = new Set<Socket>();
  const state: FaultProxy = { port: 0, drops: 0, connections: 0, rules, rewrites: [], rewritten: 0, bytes: { up: 0, down: 0 }, fetches: [], cutConnections: [], close: async () => undefined };
  const accept = (client: Socket): void => {
    const id = ++state.connections;
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    const cut = (): void => {
      state.drops++;
      state.cutConnections.push(id);
      client.destroy();
      upstream.destroy();
    };
    const pipe = (from: Socket, to: Socket, direction: 'up' | 'down'): void => {
      let window = '';
      let armed: { rule: DropRule; left: number } | undefined;
      from.on('data', (data: Buffer) => {
        state.bytes[direction] += data.length;
        // imapflow writes each command line in one write, so a line is not split across chunks.
        if (direction === 'up') for (const line of data.toString('latin1').split('\r\n')) if (/^\S+ UID FETCH /i.test(line)) state.fetches.push({ connection: id, line });
        let chunk = data;
        for (const rw of state.rewrites) {
          if (rw.direction !== direction || rw.times <= 0) continue;
          const text = chunk.toString('latin1');
          const global = new RegExp(rw.pattern.source, rw.pattern.flags.includes('g') ? rw.pattern.flags : `${rw.pattern.flags}g`);
          const replaced = text.replace(global, (...m: string[]) => {
            if (rw.times <= 0) return m[0] as string;
            rw.times--;
            state.rewritten++;
            return (m[0] as string).replace(rw.pattern, rw.replacement);
          });
          if (replaced !== text) chunk = Buffer.from(replaced, 'latin1');
        }
        if (!armed) {
          // The whole chunk is searched (a batch FETCH answer brings many messages in one chunk), plus the end of the
          // previous ones for a trigger split across chunks.
          const text = window + chunk.toString('latin1');
          for (const rule of state.rules) {
            if (rule.direction !== direction || rule.times <= 0) continue;
            const m = rule.trigger.exec(text);
            if (!m) continue;
            // Count from the end of the match within this chunk.
            const tail = text.length - (m.index + m[0].length);
            armed = { rule, left: rule.afterBytes - tail };
            break;
          }
          window = armed ? '' : text.slice(-4096);
        } else {
          armed.left -= chunk.length;
        }
        if (armed && armed.left <= 0) {
          armed.rule.times--;
          const keep = Math.max(0, chunk.length + armed.left);
          if (keep > 0) to.write(chunk.subarray(0, keep));
          armed = undefined;
          cut();
          return;
        }
        to.write(chunk);
      });
      from.on('end', () => to.end());
    };
    pipe(client, upstream, 'up');
    pipe(upstream, client, 'down');
  };
  const server: Server = options.tls ? createTlsServer({ key: options.tls.key, cert: options.tls.cert }, accept) : createServer(accept);
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  state.port = typeof addr === 'object' && addr ? addr.port : 0;
  state.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return state;
}
