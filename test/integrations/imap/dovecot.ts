// A throw-away Dovecot for the imap tests (TEST-SERVERS.md §2): plain+STARTTLS and implicit TLS, optional OAuth2 passdb.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One mail account of the test server. */
export interface DovecotUser {
  user: string;
  password: string;
}

/** Options of `startDovecot`. */
export interface DovecotOptions {
  /** Hierarchy separator of the inbox namespace (default `/`). */
  separator?: '/' | '.';
  /** Accounts (default alice/alicepw and bob/bobpw). */
  users?: DovecotUser[];
  /** Adds an OAuth2 passdb (XOAUTH2, OAUTHBEARER) backed by a local introspection endpoint; `tokens` maps token → user. */
  oauth2?: { tokens: Record<string, string> };
  /** Extra lines appended to dovecot.conf. */
  extraConfig?: string;
}

/** A running Dovecot. */
export interface Dovecot {
  host: string;
  /** Plain IMAP port, STARTTLS available. */
  port: number;
  /** Implicit TLS port. */
  tlsPort: number;
  users: DovecotUser[];
  /** PEM of the self-signed certificate (CN=localhost, SAN localhost and 127.0.0.1). */
  caCertPem: string;
  /** Path of the certificate file (for `tls_ca_file`). */
  caCertFile: string;
  dir: string;
  stop(): Promise<void>;
  /** Adds an account; Dovecot re-reads the users file on the next login. */
  addUser(user: DovecotUser): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const DEFAULT_USERS: DovecotUser[] = [
  { user: 'alice', password: 'alicepw' },
  { user: 'bob', password: 'bobpw' },
];

/** Starts Dovecot in a temporary directory; `stop()` shuts it down and removes the directory. */
export async function startDovecot(options: DovecotOptions = {}): Promise<Dovecot> {
  const dir = mkdtempSync(join(tmpdir(), 'kloset-imap-dovecot-'));
  chmodSync(dir, 0o755); // the auth process runs as `dovecot` and must reach the users file
  const users = [...(options.users ?? DEFAULT_USERS)];
  const separator = options.separator ?? '/';
  const port = await freePort();
  const tlsPort = await freePort();
  mkdirSync(join(dir, 'run'), { recursive: true });
  mkdirSync(join(dir, 'mail'), { recursive: true });
  chownSync(join(dir, 'mail'), 65534, 65534);
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      '-days', '3650', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  writeFileSync(
    join(dir, 'users'),
    users.map((u) => `${u.user}:{PLAIN}${u.password}:65534:65534::${dir}/mail/${u.user}\n`).join(''),
  );

  let http: HttpServer | undefined;
  let oauthBlock = '';
  if (options.oauth2) {
    const tokens = options.oauth2.tokens;
    http = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const token = new URLSearchParams(body).get('token') ?? '';
        const user = tokens[token];
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(user ? { active: true, username: user } : { active: false }));
      });
    });
    await new Promise<void>((resolve) => http!.listen(0, '127.0.0.1', resolve));
    const addr = http.address();
    const httpPort = typeof addr === 'object' && addr ? addr.port : 0;
    writeFileSync(
      join(dir, 'oauth2.conf'),
      [
        'introspection_mode = post',
        `introspection_url = http://127.0.0.1:${httpPort}/introspect`,
        'username_attribute = username',
        'active_attribute = active',
        'active_value = true',
        'force_introspection = yes',
        '',
      ].join('\n'),
    );
    oauthBlock = `passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = ${dir}/oauth2.conf\n}\n`;
  }

  const conf = `protocols = imap
listen = 127.0.0.1
base_dir = ${dir}/run
state_dir = ${dir}/run/state
instance_name = kloset-imap-dovecot-${port}
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
first_valid_gid = 1
log_path = ${dir}/dovecot.log
ssl = yes
ssl_cert = <${dir}/cert.pem
ssl_key = <${dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login${options.oauth2 ? ' xoauth2 oauthbearer' : ''}
mail_location = maildir:~/Maildir:LAYOUT=fs
mail_max_userip_connections = 100
mail_fsync = never
# Wrong passwords must fail fast: no fixed failure delay, and no anvil penalty (see service anvil) growing to 15 s.
auth_failure_delay = 0
${oauthBlock}passdb {
  driver = passwd-file
  args = scheme=PLAIN ${dir}/users
}
userdb {
  driver = passwd-file
  args = ${dir}/users
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${tlsPort}
    ssl = yes
  }
}
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
namespace inbox {
  inbox = yes
  separator = ${separator}
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
}
${options.extraConfig ?? ''}
`;
  writeFileSync(join(dir, 'dovecot.conf'), conf);
  // The daemon inherits stdio: never pipe it, or spawnSync waits for the daemon to exit.
  const started = spawnSync('dovecot', ['-c', join(dir, 'dovecot.conf')], { stdio: 'ignore' });
  if (started.status !== 0) {
    const logText = existsSync(join(dir, 'dovecot.log')) ? readFileSync(join(dir, 'dovecot.log'), 'utf8') : '';
    throw new Error(`dovecot failed to start (exit ${started.status}): ${logText}`);
  }
  // A test process that ends without stop() (a timeout, an uncaught error) must not leave the daemon behind.
  const leftover = (): void => {
    spawnSync('dovecot', ['-c', join(dir, 'dovecot.conf'), 'stop'], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', leftover);
  await waitForPort(port);
  await waitForPort(tlsPort);
  const caCertPem = readFileSync(join(dir, 'cert.pem'), 'utf8');
  return {
    host: '127.0.0.1',
    port,
    tlsPort,
    users,
    caCertPem,
    caCertFile: join(dir, 'cert.pem'),
    dir,
    addUser(user: DovecotUser) {
      users.push(user);
      appendFileSync(join(dir, 'users'), `${user.user}:{PLAIN}${user.password}:65534:65534::${dir}/mail/${user.user}\n`);
    },
    async stop() {
      process.off('exit', leftover);
      spawnSync('dovecot', ['-c', join(dir, 'dovecot.conf'), 'stop'], { stdio: 'ignore' });
      for (let i = 0; i < 100 && existsSync(join(dir, 'run', 'master.pid')); i++) await new Promise((r) => setTimeout(r, 50));
      if (http) await new Promise<void>((resolve) => http!.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPort(port: number): Promise<void> {
  const { connect } = await import('node:net');
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`dovecot did not listen on port ${port}`);
}
