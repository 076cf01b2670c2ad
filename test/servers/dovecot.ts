// Dovecot IMAP for tests: plain port with STARTTLS, implicit TLS port, passwd-file users, optional OAuth2 passdb.
import { appendFileSync, chmodSync, chownSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePorts } from './ports.ts';
import {
  descendants,
  isAlive,
  killAndWait,
  makeTempDir,
  registerLeftover,
  run,
  sleep,
  spawnLogged,
  startError,
  tcpOpen,
  waitFor,
} from './process-utils.ts';

/** One mail account. */
export interface DovecotUser {
  user: string;
  password: string;
}

/** Options of {@link startDovecot}. */
export interface DovecotOptions {
  /**
   * Hierarchy separator of the inbox namespace (default `/`). With `.`, maildir refuses `/` in mailbox names
   * ("Name must not have '/' characters"), as many real servers do.
   */
  separator?: '/' | '.';
  /** Accounts (default alice/alicepw and bob/bobpw). */
  users?: DovecotUser[];
  /**
   * Adds an OAuth2 passdb for the XOAUTH2 and OAUTHBEARER mechanisms. Dovecot POSTs `token=<access token>` to
   * `introspectionUrl` and expects JSON `{"active": true, "username": "<user>"}`; the user must also be one of
   * `users` (the userdb is the same passwd-file). PLAIN and LOGIN keep working with the passwords.
   */
  oauth2?: { introspectionUrl: string };
}

/** What a client needs to reach Dovecot (JSON-serialisable: this is what the global setup provides). */
export interface DovecotInfo {
  /** Always `127.0.0.1`. */
  host: '127.0.0.1';
  /** Plain IMAP port; STARTTLS is offered on it. */
  port: number;
  /** Implicit TLS (IMAPS) port. */
  tlsPort: number;
  /** The accounts, including those added later by {@link addDovecotUser} in this process. */
  users: DovecotUser[];
  /** The hierarchy separator of the inbox namespace. */
  separator: '/' | '.';
  /** PEM of the self-signed server certificate (CN=localhost, SAN localhost and 127.0.0.1): trust it as the CA. */
  caCertPem: string;
  /** Path of the same certificate, for options that take a file. */
  caCertFile: string;
  /** The temp directory (`dovecot.conf`, `dovecot.log`, `users`, `mail/<user>/Maildir`). */
  dir: string;
}

/** A running Dovecot. */
export interface Dovecot extends DovecotInfo {
  /** Stops Dovecot, waits until its master process is gone and removes `dir`. Idempotent. */
  stop(): Promise<void>;
  /** Adds an account (see {@link addDovecotUser}); resolves once the next login will see it. */
  addUser(user: DovecotUser): Promise<void>;
}

/** The special-use mailboxes every account has (auto-created and subscribed). */
export const DOVECOT_SPECIAL_USE = {
  Sent: '\\Sent',
  Trash: '\\Trash',
  Drafts: '\\Drafts',
  Junk: '\\Junk',
  Archive: '\\Archive',
} as const;

const DEFAULT_USERS: readonly DovecotUser[] = [
  { user: 'alice', password: 'alicepw' },
  { user: 'bob', password: 'bobpw' },
];

/** Mail files belong to `nobody`: as root, Dovecot refuses to run mail processes as root. */
const MAIL_UID = 65534;

/**
 * Starts Dovecot 2.3 (Debian `dovecot-imapd`) on two free ports of 127.0.0.1 with a fresh self-signed certificate,
 * maildir storage and the special-use mailboxes Sent, Trash, Drafts, Junk and Archive (TEST-SERVERS.md §2).
 * Plaintext authentication is allowed without TLS, and one address may hold 100 connections.
 *
 * @param options - see {@link DovecotOptions}
 * @returns the ports, accounts, CA certificate and `stop()`
 * @throws Error with the end of `dovecot.log` when Dovecot does not come up
 * @example
 * const imap = await startDovecot();
 * const client = new ImapFlow({ host: imap.host, port: imap.port, secure: false,
 *   auth: { user: 'alice', pass: 'alicepw' }, tls: { ca: imap.caCertPem } });
 * await imap.stop();
 */
export async function startDovecot(options: DovecotOptions = {}): Promise<Dovecot> {
  const dir = makeTempDir('dovecot');
  const conf = join(dir, 'dovecot.conf');
  let masterPid: number | undefined;
  const all = (): number[] => (masterPid !== undefined ? [masterPid, ...descendants(masterPid)] : []);
  const unregister = registerLeftover({ dir, pids: all });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      // SIGKILL to the master and all its children (auth, imap-login, imap…): the mail is thrown away anyway, and
      // a master that gets SIGTERM while still starting up ignores it for several seconds.
      await killAndWait(all(), { signal: 'SIGKILL' });
      unregister();
      rmSync(dir, { recursive: true, force: true });
    })());
  const log = join(dir, 'dovecot.log');

  try {
    // The auth process runs as `dovecot` and the mail processes as `nobody`: both must traverse the directory.
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'run'));
    mkdirSync(join(dir, 'mail'));
    chownSync(join(dir, 'mail'), MAIL_UID, MAIL_UID);
    const [port, tlsPort] = (await freePorts(2)) as [number, number];
    const separator = options.separator ?? '/';
    const users = [...(options.users ?? DEFAULT_USERS)].map((u) => ({ ...u }));
    for (const u of users) checkUser(u);
    const caCertFile = join(dir, 'cert.pem');
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', caCertFile, '-days', '3650', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ]);
    writeFileSync(join(dir, 'users'), users.map((u) => passwdLine(dir, u)).join(''));
    if (options.oauth2) writeFileSync(join(dir, 'oauth2.conf'), oauth2Conf(options.oauth2.introspectionUrl));
    writeFileSync(conf, dovecotConf({ dir, port, tlsPort, separator, oauth2: options.oauth2 !== undefined }));

    // In the foreground (-F) the spawned process is the master, so its PID is known at once (master.pid is written
    // only later, after the listeners are up).
    const master = spawnLogged('dovecot', ['-F', '-c', conf], { logFile: join(dir, 'master.log'), cwd: dir });
    masterPid = master.pid;
    await waitFor(
      `dovecot on ports ${port} and ${tlsPort}`,
      async () => {
        if (masterPid === undefined || !isAlive(masterPid)) throw new Error('dovecot exited');
        return (await tcpOpen(port)) && (await tcpOpen(tlsPort));
      },
    );
    const info: DovecotInfo = {
      host: '127.0.0.1',
      port,
      tlsPort,
      users,
      separator,
      caCertPem: readFileSync(caCertFile, 'utf8'),
      caCertFile,
      dir,
    };
    return {
      ...info,
      stop,
      // `info.users` and the returned handle's `users` are the same array, so both see the new account.
      addUser: (user: DovecotUser) => addDovecotUser(info, user),
    };
  } catch (err) {
    const error = startError('dovecot', err, [join(dir, 'master.log'), log]);
    await stop();
    throw error;
  }
}

/**
 * Adds an account to a running Dovecot (also from a test worker that only has the provided, serialisable handle).
 *
 * Dovecot's passwd-file checks the file for changes at most once per second of its clock, so this resolves only
 * when the next second has begun (after at most one second): the next login then sees the new account.
 *
 * @param server - the handle (its `users` array is updated)
 * @param user - the new account
 * @throws TypeError when the name is taken or contains `:` or a line break
 */
export async function addDovecotUser(server: Pick<DovecotInfo, 'dir' | 'users'>, user: DovecotUser): Promise<void> {
  checkUser(user);
  if (server.users.some((u) => u.user === user.user)) throw new TypeError(`user ${user.user} already exists`);
  appendFileSync(join(server.dir, 'users'), passwdLine(server.dir, user));
  server.users.push({ ...user });
  await sleep(1000 - (Date.now() % 1000) + 20);
}

function checkUser(u: DovecotUser): void {
  if (/[:\s]/.test(u.user) || /[:\r\n]/.test(u.password) || u.user === '') {
    throw new TypeError(`invalid Dovecot user ${JSON.stringify(u.user)}: no ':' or white space allowed`);
  }
}

function passwdLine(dir: string, u: DovecotUser): string {
  return `${u.user}:{PLAIN}${u.password}:${MAIL_UID}:${MAIL_UID}::${dir}/mail/${u.user}\n`;
}

function oauth2Conf(url: string): string {
  return `introspection_mode = post
introspection_url = ${url}
username_attribute = username
active_attribute = active
active_value = true
force_introspection = yes
timeout_msecs = 5000
`;
}

function dovecotConf(p: { dir: string; port: number; tlsPort: number; separator: string; oauth2: boolean }): string {
  const mailboxes = Object.entries(DOVECOT_SPECIAL_USE)
    .map(([name, flag]) => `  mailbox ${name} {\n    special_use = ${flag}\n    auto = subscribe\n  }\n`)
    .join('');
  const oauth = p.oauth2
    ? `passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = ${p.dir}/oauth2.conf\n}\n`
    : '';
  // Blocks must span several lines: Dovecot rejects `service x { chroot = }` ("Garbage after '{'").
  return `protocols = imap
listen = 127.0.0.1
base_dir = ${p.dir}/run
state_dir = ${p.dir}/run/state
instance_name = kloset-ts-dovecot-${p.port}
# as root, internal and login processes must not run as root ("This process must not be run as root")
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
first_valid_gid = 1
log_path = ${p.dir}/dovecot.log
ssl = yes
ssl_cert = <${p.dir}/cert.pem
ssl_key = <${p.dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login${p.oauth2 ? ' xoauth2 oauthbearer' : ''}
# a wrong password must fail fast in tests: no 2 s failure delay, and no anvil penalty (below) growing to 15 s
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_max_userip_connections = 100
${oauth}passdb {
  driver = passwd-file
  args = scheme=PLAIN ${p.dir}/users
}
userdb {
  driver = passwd-file
  args = ${p.dir}/users
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = ${p.port}
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${p.tlsPort}
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
  separator = ${p.separator}
${mailboxes}}
`;
}
