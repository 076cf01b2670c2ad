// Servers that answer badly on purpose: an HTTP server with one kind of malformed answer per mode, and an IMAP server
// that greets, logs in, and lists mailboxes whose names are not valid UTF-8.
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** The malformed answers of the HTTP server. */
export const HTTP_MODES = ['garbage-xml', 'garbage-json', 'wrong-length', 'invalid-utf8', 'html-200', 'empty-200'] as const;
export type HttpMode = (typeof HTTP_MODES)[number];

/** A running malformed server. */
export interface BadServer {
  port: number;
  /** Requests answered so far. */
  requests: number;
  close(): Promise<void>;
}

function answer(mode: HttpMode, req: http.IncomingMessage, res: http.ServerResponse): void {
  const isXml = /xml/.test(String(req.headers['content-type'] ?? '')) || ['PROPFIND', 'REPORT'].includes(req.method ?? '') || /list-type|prefix=|\?location|\?versioning/.test(req.url ?? '');
  switch (mode) {
    case 'garbage-xml':
      res.writeHead(req.method === 'PROPFIND' || req.method === 'REPORT' ? 207 : 200, { 'content-type': 'application/xml' });
      res.end('<?xml version="1.0"?><ListBucketResult><Contents><Key>half<a:multistatus xmlns:a="DAV:"><a:response><a:href>');
      return;
    case 'garbage-json':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"value": [ {"id": 1, "name": {"files": [null, 3, "x"');
      return;
    case 'wrong-length':
      res.writeHead(200, { 'content-type': isXml ? 'application/xml' : 'application/json', 'content-length': '100000' });
      res.write(isXml ? '<?xml version="1.0"?><ListBucketResult>' : '{"value":[');
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    case 'invalid-utf8': {
      const bad = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xed, 0xa0, 0x80]);
      res.writeHead(req.method === 'PROPFIND' || req.method === 'REPORT' ? 207 : 200, { 'content-type': isXml ? 'application/xml; charset=utf-8' : 'application/json; charset=utf-8' });
      if (isXml) {
        res.end(
          Buffer.concat([
            Buffer.from('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated><Contents><Key>'),
            bad,
            Buffer.from('</Key><Size>3</Size><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>"x"</ETag></Contents></ListBucketResult>'),
          ]),
        );
      } else {
        res.end(
          Buffer.concat([
            Buffer.from('{"id":"root","name":"'),
            bad,
            Buffer.from('","folder":{},"mimeType":"application/vnd.google-apps.folder","files":[{"id":"f1","name":"'),
            bad,
            Buffer.from('","mimeType":"text/plain","size":"3"}],"value":[{"id":"f1","name":"'),
            bad,
            Buffer.from('","file":{},"size":3}]}'),
          ]),
        );
      }
      return;
    }
    case 'html-200':
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body>Please log in to the hotel Wi-Fi</body></html>');
      return;
    case 'empty-200':
      res.writeHead(200, { 'content-type': isXml ? 'application/xml' : 'application/json', 'content-length': '0' });
      res.end();
      return;
  }
}

/** Starts an HTTP server on loopback that answers every request with `mode`'s malformed answer. */
export async function startBadHttp(mode: HttpMode): Promise<BadServer> {
  const server = http.createServer((req, res) => {
    state.requests++;
    req.resume();
    req.on('end', () => answer(mode, req, res));
  });
  const state: BadServer = {
    port: 0,
    requests: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  return state;
}

/**
 * A minimal IMAP server: greets, accepts any LOGIN, and answers LIST with mailboxes whose names hold bytes that are not
 * UTF-8 (nor valid modified UTF-7), plus one with a NUL-like escape; other commands get NO or BAD. Enough for a client
 * to log in and list, which is where such names hurt.
 */
export async function startBadImap(): Promise<BadServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.write('* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hostile test server ready\r\n');
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      state.requests++;
      buffered += chunk.toString('latin1');
      for (;;) {
        const nl = buffered.indexOf('\r\n');
        if (nl < 0) break;
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 2);
        const [tag, command = ''] = line.split(' ');
        const cmd = command.toUpperCase();
        const w = (s: string | Buffer): boolean => socket.write(s);
        if (cmd === 'CAPABILITY') {
          w('* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n');
          w(`${tag} OK done\r\n`);
        } else if (cmd === 'LOGIN' || cmd === 'AUTHENTICATE') {
          w(`${tag} OK [CAPABILITY IMAP4rev1] logged in\r\n`);
        } else if (cmd === 'LIST' || cmd === 'LSUB') {
          w(Buffer.concat([Buffer.from('* LIST () "/" "'), Buffer.from([0xff, 0xfe, 0x41]), Buffer.from('"\r\n')]));
          w(Buffer.concat([Buffer.from('* LIST () "/" "Bad&'), Buffer.from([0xc3, 0x28]), Buffer.from('-Name"\r\n')]));
          w('* LIST () "/" "&AAA-zero"\r\n');
          w('* LIST (\\HasNoChildren) "/" INBOX\r\n');
          w(`${tag} OK LIST done\r\n`);
        } else if (cmd === 'LOGOUT') {
          w('* BYE\r\n');
          w(`${tag} OK bye\r\n`);
          socket.end();
        } else if (cmd === 'NOOP' || cmd === 'ID' || cmd === 'ENABLE') {
          w(`${tag} OK done\r\n`);
        } else if (cmd === 'SELECT' || cmd === 'EXAMINE' || cmd === 'STATUS') {
          w(`${tag} NO [NONEXISTENT] this mailbox name is not valid\r\n`);
        } else {
          w(`${tag} BAD unsupported command\r\n`);
        }
      }
    });
  });
  const state: BadServer = {
    port: 0,
    requests: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  return state;
}
