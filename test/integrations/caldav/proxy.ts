// A small HTTP proxy in front of a test server: demands Digest or OAuth bearer auth, throttles, corrupts or drops objects.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

/** One request as the proxy saw it. */
export interface SeenRequest {
  method: string;
  path: string;
  authorization: string;
  /** Request headers, lower-case names. */
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A response the proxy gives itself instead of forwarding. */
export interface Answer {
  status: number;
  headers?: Record<string, string | undefined>;
  body?: string;
}

/** What the proxy does; every hook is optional. */
export interface ProxyHooks {
  /** Answer a request directly (auth challenges, throttling, a token endpoint); undefined forwards it. */
  answer?(req: SeenRequest, n: number): Answer | undefined;
  /** Runs before a request is answered or forwarded (to hold it, or to change the server meanwhile). */
  before?(req: SeenRequest): Promise<void>;
  /** The Authorization header sent upstream (default: the client's). */
  upstreamAuth?(req: SeenRequest): string | undefined;
  /** Rewrites the upstream response body. */
  rewrite?(req: SeenRequest, body: string): string;
}

/** A running proxy. */
export interface Proxy {
  url: string;
  host: string;
  requests: SeenRequest[];
  stop(): Promise<void>;
}

/** Starts a proxy to `upstream` (an http:// URL) on 127.0.0.1; with `tls` it serves HTTPS with that key and certificate. */
export async function startProxy(upstream: string, hooks: ProxyHooks = {}, tls?: { key: string; cert: string }): Promise<Proxy> {
  const requests: SeenRequest[] = [];
  const up = new URL(upstream);
  const handler: http.RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen: SeenRequest = {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        authorization: String(req.headers.authorization ?? ''),
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(seen);
      const n = requests.length;
      if (hooks.before) void hooks.before(seen).then(() => forward(seen, n, chunks), () => forward(seen, n, chunks));
      else forward(seen, n, chunks);
    });
    const forward = (seen: SeenRequest, n: number, chunks: Buffer[]): void => {
      const direct = hooks.answer?.(seen, n);
      if (direct) {
        const h: Record<string, string> = {};
        for (const [k, v] of Object.entries(direct.headers ?? {})) if (v !== undefined) h[k] = v;
        res.writeHead(direct.status, h);
        res.end(direct.body ?? '');
        return;
      }
      const headers: http.OutgoingHttpHeaders = { ...req.headers, host: up.host };
      delete headers.authorization;
      const auth = hooks.upstreamAuth ? hooks.upstreamAuth(seen) : seen.authorization || undefined;
      if (auth) headers.authorization = auth;
      delete headers['content-length'];
      const body = Buffer.concat(chunks);
      if (body.length > 0) headers['content-length'] = String(body.length);
      const out = http.request({ host: up.hostname, port: up.port, path: req.url, method: req.method, headers }, (upRes) => {
        const parts: Buffer[] = [];
        upRes.on('data', (c: Buffer) => parts.push(c));
        upRes.on('end', () => {
          let text = Buffer.concat(parts);
          if (hooks.rewrite) text = Buffer.from(hooks.rewrite(seen, text.toString('utf8')), 'utf8');
          const h = { ...upRes.headers };
          delete h['content-length'];
          delete h['transfer-encoding'];
          h['content-length'] = String(text.length);
          res.writeHead(upRes.statusCode ?? 502, h);
          res.end(text);
        });
      });
      out.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      out.end(body);
    };
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A Digest (RFC 7616, MD5, qop=auth) checker for one user: challenges, verifies responses, can force a stale nonce. */
export class DigestRealm {
  nonce = randomBytes(8).toString('hex');
  readonly realm = 'kloset digest test';
  readonly opaque = 'opaque-value';
  private readonly user: string;
  private readonly password: string;
  constructor(user: string, password: string) {
    this.user = user;
    this.password = password;
  }

  challenge(stale = false): Answer {
    return {
      status: 401,
      headers: {
        'www-authenticate': `Digest realm="${this.realm}", nonce="${this.nonce}", qop="auth", algorithm=MD5, opaque="${this.opaque}"${stale ? ', stale=true' : ''}`,
      },
      body: 'digest required',
    };
  }

  /** 'ok', 'stale' (right password, old nonce) or 'bad'. */
  check(req: SeenRequest): 'ok' | 'stale' | 'bad' {
    const m = /^Digest (.*)$/.exec(req.authorization);
    if (!m) return 'bad';
    const p: Record<string, string> = {};
    for (const part of (m[1] ?? '').matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) p[part[1] as string] = part[2] ?? part[3] ?? '';
    const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
    const ha1 = md5(`${this.user}:${this.realm}:${this.password}`);
    const ha2 = md5(`${req.method}:${p.uri}`);
    const want = md5(`${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:${p.qop}:${ha2}`);
    if (p.username !== this.user || p.response !== want || p.opaque !== this.opaque || p.uri !== req.path) return 'bad';
    return p.nonce === this.nonce ? 'ok' : 'stale';
  }
}
