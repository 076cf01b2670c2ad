// Smoke tests of the real test servers: each starts as test/servers/ starts it and answers its real client library.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { ImapFlow, type ImapFlowOptions } from 'imapflow';
import { DAVClient } from 'tsdav';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addDovecotUser,
  DOVECOT_SPECIAL_USE,
  freePorts,
  parseServerList,
  serverInfo,
  startDovecot,
  startRadicale,
  startRadosgw,
  startSwift,
  startXandikos,
  type Dovecot,
  type Radicale,
  type Radosgw,
  type Swift,
  type Xandikos,
} from './index.ts';
import { descendants, isAlive } from './process-utils.ts';

/** The OAuth2 introspection endpoint Dovecot asks: token → user. */
const TOKENS: Record<string, string> = { 'token-alice': 'alice', 'token-bob': 'bob' };

interface Started {
  radosgw: Promise<Radosgw>;
  swift: Promise<Swift>;
  dovecot: Promise<Dovecot>;
  dovecotDot: Promise<Dovecot>;
  dovecotOauth: Promise<Dovecot>;
  radicale: Promise<Radicale>;
  xandikos: Promise<Xandikos>;
}

let started: Started;
let introspection: Server;
let introspectionUrl: string;

// Every server starts at once; each describe awaits its own, so one failure fails only its own tests.
beforeAll(async () => {
  introspection = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const user = TOKENS[new URLSearchParams(body).get('token') ?? ''];
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(user ? { active: true, username: user } : { active: false }));
    });
  });
  await new Promise<void>((resolve) => introspection.listen(0, '127.0.0.1', resolve));
  introspectionUrl = `http://127.0.0.1:${(introspection.address() as AddressInfo).port}/introspect`;
  started = {
    radosgw: startRadosgw(),
    swift: startSwift(),
    dovecot: startDovecot(),
    dovecotDot: startDovecot({ separator: '.' }),
    dovecotOauth: startDovecot({ oauth2: { introspectionUrl } }),
    radicale: startRadicale(),
    xandikos: startXandikos(),
  };
  // Mark every start as handled: a failure is reported by the describe that awaits it, not as an unhandled rejection.
  for (const p of Object.values(started)) (p as Promise<unknown>).catch(() => undefined);
});

afterAll(async () => {
  const all: Array<Promise<{ stop(): Promise<void> }>> = Object.values(started);
  await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.stop()));
  await new Promise<void>((resolve) => introspection.close(() => resolve()));
});

/** Stops a server and checks that its processes and directory are gone, and that a second stop is harmless. */
async function expectCleanStop(server: { dir: string; stop(): Promise<void> }, pids: number[]): Promise<void> {
  await server.stop();
  expect(existsSync(server.dir)).toBe(false);
  expect(pids.filter(isAlive)).toEqual([]);
  await server.stop();
}

/** PIDs of the processes whose command line mentions `dir`, and their descendants (Dovecot renames its children). */
function pidsUsing(dir: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(dir) && isAlive(Number(e))) out.push(Number(e));
    } catch {
      // gone
    }
  }
  expect(out.length).toBeGreaterThan(0);
  return [...new Set([...out, ...out.flatMap(descendants)])];
}

type S3Handle = { endpoint: string; region: string; accessKey: string; secretKey: string };

function s3Client(server: S3Handle, secret?: string): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKey, secretAccessKey: secret ?? server.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
  });
}

for (const kind of ['radosgw', 'swift'] as const) {
  describe(`test servers: ${kind} answers @aws-sdk/client-s3`, () => {
    let server: Radosgw | Swift;
    beforeAll(async () => {
      server = await started[kind];
    });

    it('creates a bucket, puts, reads a range, lists and deletes', async () => {
      const s3 = s3Client(server);
      const Bucket = `smoke-${kind}`;
      try {
        await s3.send(new CreateBucketCommand({ Bucket }));
        await s3.send(new PutObjectCommand({ Bucket, Key: 'dir/hello.txt', Body: 'hello, world' }));
        await s3.send(new PutObjectCommand({ Bucket, Key: 'top.txt', Body: '', ContentLength: 0 }));
        const ranged = await s3.send(new GetObjectCommand({ Bucket, Key: 'dir/hello.txt', Range: 'bytes=7-11' }));
        expect(ranged.ContentRange).toBe('bytes 7-11/12');
        expect(await ranged.Body?.transformToString()).toBe('world');
        const listed = await s3.send(new ListObjectsV2Command({ Bucket }));
        expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([
          ['dir/hello.txt', 12],
          ['top.txt', 0],
        ]);
        const delimited = await s3.send(new ListObjectsV2Command({ Bucket, Delimiter: '/' }));
        expect(delimited.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['dir/']);
        for (const Key of ['dir/hello.txt', 'top.txt']) await s3.send(new DeleteObjectCommand({ Bucket, Key }));
        await s3.send(new DeleteBucketCommand({ Bucket }));
      } finally {
        s3.destroy();
      }
    });

    it('rejects a wrong secret key', async () => {
      const s3 = s3Client(server, 'not-the-secret');
      try {
        const create = new CreateBucketCommand({ Bucket: `smoke-${kind}-denied` });
        const err = await s3.send(create).catch((e: unknown) => e);
        expect((err as Error).name).toMatch(/^(SignatureDoesNotMatch|AccessDenied)$/);
      } finally {
        s3.destroy();
      }
    });

    it('hands out a serialisable handle and stops cleanly', async () => {
      expect(Object.keys(serverInfo(server)).sort()).toEqual(['accessKey', 'dir', 'endpoint', 'region', 'secretKey']);
      await expectCleanStop(server, pidsUsing(server.dir));
    });
  });
}

function imapOptions(server: Dovecot, extra: Partial<ImapFlowOptions> = {}): ImapFlowOptions {
  return {
    host: server.host,
    port: server.port,
    secure: false,
    doSTARTTLS: false,
    auth: { user: 'alice', pass: 'alicepw' },
    tls: { ca: server.caCertPem },
    logger: false,
    ...extra,
  };
}

async function withImap<T>(options: ImapFlowOptions, fn: (client: ImapFlow) => Promise<T>): Promise<T> {
  const client = new ImapFlow(options);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.logout().catch(() => client.close());
  }
}

describe('test servers: dovecot answers imapflow', () => {
  let server: Dovecot;
  beforeAll(async () => {
    server = await started.dovecot;
  });

  it('logs in in plain text, with STARTTLS and with implicit TLS, trusting the CA certificate', async () => {
    await withImap(imapOptions(server), async (c) => expect(c.secureConnection).toBe(false));
    await withImap(imapOptions(server, { doSTARTTLS: true }), async (c) => expect(c.secureConnection).toBe(true));
    await withImap(imapOptions(server, { port: server.tlsPort, secure: true, doSTARTTLS: undefined }), async (c) =>
      expect(c.secureConnection).toBe(true),
    );
  });

  it('appends and fetches a message with flags and internal date', async () => {
    const raw = 'From: a@example.com\r\nTo: b@example.com\r\nSubject: smoke\r\n\r\nbody\r\n';
    const date = new Date('2021-03-04T05:06:07Z');
    await withImap(imapOptions(server), async (c) => {
      const appended = await c.append('INBOX', raw, ['\\Flagged', '$Label1'], date);
      expect(appended && appended.uid).toBe(1);
      const lock = await c.getMailboxLock('INBOX');
      try {
        const query = { uid: true, flags: true, internalDate: true, source: true };
        const msg = await c.fetchOne('1', query, { uid: true });
        expect(msg && [...(msg.flags ?? [])].sort()).toEqual(['$Label1', '\\Flagged', '\\Recent']);
        expect(msg && new Date(msg.internalDate as Date).toISOString()).toBe(date.toISOString());
        expect(msg && msg.source?.toString()).toBe(raw);
      } finally {
        lock.release();
      }
    });
  });

  it('lists the special-use mailboxes with the / separator', async () => {
    await withImap(imapOptions(server, { auth: { user: 'bob', pass: 'bobpw' } }), async (c) => {
      const list = await c.list();
      const special = Object.fromEntries(list.filter((m) => m.specialUse).map((m) => [m.path, m.specialUse]));
      expect(special).toEqual({ INBOX: '\\Inbox', ...DOVECOT_SPECIAL_USE });
      expect(list[0]?.delimiter).toBe('/');
      expect((await c.mailboxCreate('Probe/Sub')).created).toBe(true);
    });
  });

  it('rejects a wrong password', async () => {
    const client = new ImapFlow(imapOptions(server, { auth: { user: 'alice', pass: 'wrong' } }));
    const err = (await client.connect().catch((e: unknown) => e)) as { authenticationFailed?: boolean };
    expect(err?.authenticationFailed).toBe(true);
    client.close();
  });

  it('accepts a user added while running, also through a serialised handle', async () => {
    await server.addUser({ user: 'carol', password: 'carolpw' });
    await withImap(imapOptions(server, { auth: { user: 'carol', pass: 'carolpw' } }), async (c) =>
      expect(c.authenticated).toBeTruthy(),
    );
    const info = serverInfo(server);
    await addDovecotUser(info, { user: 'dave', password: 'davepw' });
    expect(info.users.map((u) => u.user)).toEqual(['alice', 'bob', 'carol', 'dave']);
    await withImap(imapOptions(server, { auth: { user: 'dave', pass: 'davepw' } }), async (c) =>
      expect(c.authenticated).toBeTruthy(),
    );
  });

  it('stops cleanly', async () => {
    await expectCleanStop(server, pidsUsing(server.dir));
  });
});

describe('test servers: dovecot with the . separator answers imapflow', () => {
  it('uses . as the hierarchy separator (and, like many servers, refuses / in names)', async () => {
    const server = await started.dovecotDot;
    expect(server.separator).toBe('.');
    await withImap(imapOptions(server), async (c) => {
      expect((await c.list())[0]?.delimiter).toBe('.');
      await c.mailboxCreate('Parent.Child');
      const err = (await c.mailboxCreate('A/B').catch((e: unknown) => e)) as { responseText?: string };
      expect(err.responseText).toMatch(/must not have '\/' characters/);
      const list = await c.list();
      expect(list.find((m) => m.path === 'Parent.Child')?.parentPath).toBe('Parent');
    });
  });
});

describe('test servers: dovecot with an OAuth2 passdb answers imapflow', () => {
  let server: Dovecot;
  beforeAll(async () => {
    server = await started.dovecotOauth;
  });

  it('logs in with an access token over OAUTHBEARER (imapflow) and XOAUTH2 (raw)', async () => {
    await withImap(imapOptions(server, { auth: { user: 'alice', accessToken: 'token-alice' } }), async (c) =>
      expect(c.authenticated).toBeTruthy(),
    );
    expect(readFileSync(join(server.dir, 'dovecot.log'), 'utf8')).toMatch(/Login: user=<alice>, method=OAUTHBEARER/);
    const xoauth2 = Buffer.from('user=bob\x01auth=Bearer token-bob\x01\x01').toString('base64');
    const reply = await rawImap(server.port, [`a AUTHENTICATE XOAUTH2 ${xoauth2}`, 'b LOGOUT']);
    expect(reply).toMatch(/^a OK /m);
  });

  it('rejects an unknown token and a token of another user, and still accepts passwords', async () => {
    for (const auth of [
      { user: 'alice', accessToken: 'token-nobody' },
      { user: 'alice', accessToken: 'token-bob' },
    ]) {
      const client = new ImapFlow(imapOptions(server, { auth }));
      const err = (await client.connect().catch((e: unknown) => e)) as { authenticationFailed?: boolean };
      expect(err?.authenticationFailed).toBe(true);
      client.close();
    }
    await withImap(imapOptions(server), async (c) => expect(c.authenticated).toBeTruthy());
  });
});

/** Sends IMAP command lines one by one (each after the previous tagged reply) and returns the whole transcript. */
async function rawImap(port: number, lines: string[]): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  let transcript = '';
  let waiter: (() => void) | undefined;
  socket.on('data', (d: Buffer) => {
    transcript += d.toString();
    waiter?.();
  });
  const until = (re: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${re} in ${transcript}`)), 10_000);
      waiter = () => {
        if (re.test(transcript)) {
          clearTimeout(timer);
          resolve();
        }
      };
      waiter();
    });
  try {
    await until(/^\* OK/m);
    for (const line of lines) {
      const tag = line.split(' ')[0] as string;
      socket.write(`${line}\r\n`);
      await until(new RegExp(`^${tag} (OK|NO|BAD)`, 'm'));
    }
    return transcript;
  } finally {
    socket.destroy();
  }
}

function davClient(url: string, username: string, password: string): DAVClient {
  return new DAVClient({
    serverUrl: url,
    credentials: { username, password },
    authMethod: 'Basic',
    defaultAccountType: 'caldav',
  });
}

describe('test servers: radicale answers tsdav', () => {
  let server: Radicale;
  beforeAll(async () => {
    server = await started.radicale;
  });

  it('logs in, makes a calendar and lists it', async () => {
    const client = davClient(server.url, 'alice', 'alicepw');
    await client.login();
    const home = client.account?.homeUrl as string;
    expect(home).toBe(`${server.url}alice/`);
    await client.makeCalendar({ url: `${home}smoke/`, props: { displayname: 'Smoke' } });
    const calendars = await client.fetchCalendars();
    expect(calendars.map((c) => c.url)).toContain(`${home}smoke/`);
  });

  it('answers 401 to a wrong password', async () => {
    const res = await fetch(`${server.url}alice/`, {
      method: 'PROPFIND',
      headers: { authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}`, depth: '0' },
    });
    await res.arrayBuffer();
    expect(res.status).toBe(401);
    await expect(davClient(server.url, 'alice', 'wrong').login()).rejects.toThrow();
  });

  it('stops cleanly', async () => {
    await expectCleanStop(server, pidsUsing(server.dir));
  });
});

describe('test servers: xandikos answers tsdav', () => {
  let server: Xandikos;
  beforeAll(async () => {
    server = await started.xandikos;
  });

  it('logs in (any credentials), lists the default calendar and makes another', async () => {
    const client = davClient(server.url, 'anyone', 'anything');
    await client.login();
    const home = client.account?.homeUrl as string;
    expect(home).toBe(`${server.url.replace(/\/$/, '')}${server.principalPath}calendars/`);
    expect((await client.fetchCalendars()).map((c) => c.url)).toContain(`${home}calendar/`);
    await client.makeCalendar({ url: `${home}smoke/`, props: { displayname: 'Smoke' } });
    expect((await client.fetchCalendars()).map((c) => c.url)).toContain(`${home}smoke/`);
  });

  it('stops cleanly', async () => {
    await expectCleanStop(server, pidsUsing(server.dir));
  });
});

describe('test servers: helpers', () => {
  it('hands out distinct free ports', async () => {
    const ports = await freePorts(20);
    expect(new Set(ports).size).toBe(20);
    expect(ports.every((p) => p > 0 && p < 65536)).toBe(true);
    const more = await freePorts(5);
    expect(more.filter((p) => ports.includes(p))).toEqual([]);
  });

  it('parses KLOSET_TS_SERVERS', () => {
    expect(parseServerList(undefined)).toEqual([]);
    expect(parseServerList(' radosgw, dovecot-dot,,radosgw ')).toEqual(['radosgw', 'dovecot-dot']);
    expect(() => parseServerList('radosgw,minio')).toThrow(/unknown server minio/);
  });
});
