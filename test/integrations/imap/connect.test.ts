// imap connections against Dovecot: plain, STARTTLS, implicit TLS, XOAUTH2/OAUTHBEARER, and the Init errors a user sees.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setLogLevel } from '../../../shared/log.ts';
import { isDir, RESOURCE } from '../../harness/index.ts';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { accountConfig, backup, connector, inspect, makeMessages, restore, seed, snapshotEntries } from './helpers.ts';

const TOKEN = 'tok-Alice-9f3b2c1d-secret';
let d: Dovecot;
const boxes = ['INBOX', 'Folder/Sub'];
const messages = makeMessages(12, boxes, 5);

beforeAll(async () => {
  d = await startDovecot({ oauth2: { tokens: { [TOKEN]: 'alice' } } });
  await seed(d, 'alice', boxes, messages);
});
afterAll(async () => {
  await d?.stop();
});

/** Debug logging in this process and in spawned connectors (they inherit the environment). */
function debugLogs(on: boolean): void {
  setLogLevel(on ? 'debug' : 'warn');
  if (on) process.env.KLOSET_TS_LOG = 'debug';
  else delete process.env.KLOSET_TS_LOG;
}

/** Runs `fn` while collecting everything written to stderr (the SDK logs there; spawned connectors' stderr is copied there). */
async function captureStderr<T>(fn: () => Promise<T>): Promise<{ value?: T; error?: unknown; stderr: string }> {
  const original = process.stderr.write.bind(process.stderr);
  let text = '';
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return original(chunk as string, ...(rest as []));
  }) as typeof process.stderr.write;
  try {
    return { value: await fn(), stderr: text };
  } catch (error) {
    return { error, stderr: text };
  } finally {
    process.stderr.write = original;
  }
}

const fileCount = (o: Awaited<ReturnType<typeof backup>>): number => o.records.filter((r) => !r.isXattr && r.fileInfo && !isDir(r.fileInfo.mode)).length;

describe('imap connections: transports', () => {
  it('backs up over plain IMAP, STARTTLS and implicit TLS (certificate checked against tls_ca_file)', async () => {
    const plain = await backup(accountConfig(d, 'alice'));
    const starttls = await backup(accountConfig(d, 'alice', { tls: 'starttls', tls_ca_file: d.caCertFile }));
    const implicit = await backup(accountConfig(d, 'alice', { location: `imaps://${d.host}:${d.tlsPort}`, tls: '', tls_ca_file: d.caCertFile }), 'imaps');
    expect(fileCount(plain)).toBe(messages.length);
    const paths = (o: typeof plain) => o.records.map((r) => r.pathname);
    expect(paths(starttls)).toEqual(paths(plain));
    expect(paths(implicit)).toEqual(paths(plain));
    // Origin names the account, whichever transport reached it.
    const c = await connector('importer', accountConfig(d, 'alice', { tls: 'starttls', tls_no_verify: 'true' }));
    expect(c.host.initResult?.origin).toBe(`alice@127.0.0.1:${d.port}`);
    c.close();
  });

  it('restores over implicit TLS and STARTTLS', async () => {
    const snap = await backup(accountConfig(d, 'alice'));
    await restore(snapshotEntries(snap), accountConfig(d, 'bob', { location: `imaps://${d.host}:${d.tlsPort}`, tls: 'tls', tls_no_verify: 'true' }));
    await restore(snapshotEntries(snap), accountConfig(d, 'bob', { tls: 'starttls', tls_ca_file: d.caCertFile }));
    const a = await inspect(d, 'alice');
    const b = await inspect(d, 'bob');
    for (const box of boxes) expect(b.get(box)?.messages.length).toBe(a.get(box)?.messages.length);
  });

  it('refuses an unknown certificate with a message saying how to trust it', async () => {
    await expect(connector('importer', accountConfig(d, 'alice', { tls: 'starttls' }))).rejects.toThrow(
      /imap importer: cannot connect to 127\.0\.0\.1:\d+: TLS failed: .*self[- ]signed.*tls_ca_file/,
    );
  });
});

describe('imap connections: authentication', () => {
  it('logs in with AUTHENTICATE PLAIN (auth=plain) as well as LOGIN', async () => {
    const snap = await backup(accountConfig(d, 'alice', { auth: 'plain' }));
    expect(fileCount(snap)).toBe(messages.length);
  });
});

describe('imap connections: OAuth 2.0', () => {
  it('logs in with XOAUTH2 and with OAUTHBEARER', async () => {
    for (const auth of ['xoauth2', 'oauthbearer']) {
      const snap = await backup({ location: `imap://${d.host}:${d.port}`, username: 'alice', auth, access_token: TOKEN, tls: 'no-tls' });
      expect(fileCount(snap)).toBe(messages.length);
    }
  });

});

describe('imap connections: Init errors', () => {
  it('says the server cannot be reached when nothing listens', async () => {
    await expect(connector('importer', { location: 'imap://127.0.0.1:1', username: 'alice', password: 'x', tls: 'no-tls' })).rejects.toThrow(
      /^imap importer: cannot connect to 127\.0\.0\.1:1: connection refused \(ECONNREFUSED\)$/,
    );
    await expect(connector('storage', { location: 'imaps://127.0.0.1:1', username: 'alice', password: 'x' }, 'imaps')).rejects.toThrow(
      /imap storage: cannot connect to 127\.0\.0\.1:1: connection refused/,
    );
  });

  it('lists every configuration problem at once, naming the keys', async () => {
    await expect(connector('importer', { location: `imap://${d.host}:${d.port}`, tls: 'sometimes', concurrency: '0' })).rejects.toThrow(
      /option tls: expected one of starttls, tls, no-tls, got "sometimes"; option concurrency: expected a whole number at least 1/,
    );
    await expect(connector('exporter', { location: `imap://${d.host}:${d.port}` })).rejects.toThrow(
      /option username: is required.*option password: is required/,
    );
    await expect(connector('importer', { location: `imap://${d.host}:${d.port}`, username: 'a', auth: 'xoauth2' })).rejects.toThrow(/option access_token: is required with auth=xoauth2/);
    await expect(connector('importer', { ...accountConfig(d, 'alice'), location: `imap://${d.host}:${d.port}/No/Such` })).rejects.toThrow(
      /imap importer: mailbox "No\/Such" not found on alice@127\.0\.0\.1:\d+/,
    );
  });

  it('answers Ping, and storage Ping works before Open', async () => {
    const s = await connector('storage', accountConfig(d, 'alice'));
    try {
      await s.host.ping();
      await expect(s.host.list(RESOURCE.LOCK)).resolves.toEqual([]);
    } finally {
      s.close();
    }
  });
});

describe('imap connections: refused logins', () => {
  it('reports a refused token without showing it, in the error or on stderr', async () => {
    debugLogs(true);
    try {
      const bad = `${TOKEN}-revoked`;
      const r = await captureStderr(() => connector('storage', { location: `imap://${d.host}:${d.port}`, username: 'alice', auth: 'xoauth2', access_token: bad, tls: 'no-tls' }));
      expect(String(r.error)).toMatch(/imap storage: cannot log in as "alice" at 127\.0\.0\.1:\d+: NO \[AUTHENTICATIONFAILED\].*check access_token/);
      for (const text of [String(r.error), r.stderr]) {
        expect(text).not.toContain(bad);
        expect(text).not.toContain(Buffer.from(`user=alice\x01auth=Bearer ${bad}\x01\x01`).toString('base64'));
      }
    } finally {
      debugLogs(false);
    }
  });
  it('names the account and the server reply for a wrong password, and never shows the password', async () => {
    debugLogs(true);
    try {
      const r = await captureStderr(() => connector('importer', accountConfig(d, 'alice', { password: 'Wr0ng-Passw0rd!' })));
      expect(String(r.error)).toMatch(
        /^HostError: imap importer: cannot log in as "alice" at 127\.0\.0\.1:\d+: NO \[AUTHENTICATIONFAILED\] Authentication failed\.? \(check username and password/,
      );
      expect(String(r.error) + r.stderr).not.toContain('Wr0ng-Passw0rd!');
      const inUrl = await captureStderr(() => connector('exporter', { location: `imap://alice:Url-Secret-77@${d.host}:${d.port}`, tls: 'no-tls' }));
      expect(String(inUrl.error)).toMatch(/imap exporter: cannot log in as "alice"/);
      expect(String(inUrl.error) + inUrl.stderr).not.toContain('Url-Secret-77');
    } finally {
      debugLogs(false);
    }
  });

});
