// Radicale CalDAV/CardDAV for tests: htpasswd (plain) users, owner_only rights, storage in a temp directory.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import {
  httpStatus,
  isAlive,
  killAndWait,
  makeTempDir,
  registerLeftover,
  spawnLogged,
  startError,
  waitFor,
} from './process-utils.ts';

/** One Radicale account. */
export interface RadicaleUser {
  user: string;
  password: string;
}

/** Options of {@link startRadicale}. */
export interface RadicaleOptions {
  /** Accounts (default alice/alicepw and bob/bobpw). */
  users?: RadicaleUser[];
}

/** What a client needs to reach Radicale (JSON-serialisable: this is what the global setup provides). */
export interface RadicaleInfo {
  /** `http://127.0.0.1:PORT/`, the server root; a user's principal is `<url><user>/`. */
  url: string;
  /** The accounts. */
  users: RadicaleUser[];
  /** The temp directory (`radicale.conf`, `users`, `collections/`, `radicale.log`). */
  dir: string;
}

/** A running Radicale. */
export interface Radicale extends RadicaleInfo {
  /** Stops Radicale (it takes 1–2 s to exit after SIGTERM), waits until it is gone and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_USERS: readonly RadicaleUser[] = [
  { user: 'alice', password: 'alicepw' },
  { user: 'bob', password: 'bobpw' },
];

/**
 * Starts Radicale 3.1 (Debian, `/usr/bin/radicale`; `python3 -m radicale` would pick pyenv's Python) on a free port
 * of 127.0.0.1 with Basic authentication against a plain htpasswd file and `owner_only` rights: each user sees only
 * their own collections, and a wrong password gets 401 at once (the default 1 s failure delay is off).
 *
 * @param options - see {@link RadicaleOptions}
 * @returns the URL, accounts and `stop()`
 * @throws Error with the end of `radicale.log` when Radicale does not come up
 * @example
 * const dav = await startRadicale();
 * const client = new DAVClient({ serverUrl: dav.url, credentials: { username: 'alice', password: 'alicepw' },
 *   authMethod: 'Basic', defaultAccountType: 'caldav' });
 * await dav.stop();
 */
export async function startRadicale(options: RadicaleOptions = {}): Promise<Radicale> {
  const dir = makeTempDir('radicale');
  let pid: number | undefined;
  const unregister = registerLeftover({ dir, pids: () => [pid] });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await killAndWait([pid], { graceMs: 5000 });
      unregister();
      rmSync(dir, { recursive: true, force: true });
    })());
  const log = join(dir, 'radicale.log');

  try {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/`;
    const users = [...(options.users ?? DEFAULT_USERS)].map((u) => ({ ...u }));
    if (users.some((u) => /[:\s]/.test(u.user) || /[\r\n]/.test(u.password))) {
      throw new TypeError('Radicale user names may not contain ":" or white space, nor passwords line breaks');
    }
    mkdirSync(join(dir, 'collections'));
    writeFileSync(join(dir, 'users'), users.map((u) => `${u.user}:${u.password}\n`).join(''));
    writeFileSync(
      join(dir, 'radicale.conf'),
      `[server]
hosts = 127.0.0.1:${port}

[auth]
type = htpasswd
htpasswd_filename = ${dir}/users
htpasswd_encryption = plain
delay = 0

[rights]
type = owner_only

[storage]
filesystem_folder = ${dir}/collections

[logging]
level = warning
mask_passwords = True
`,
    );
    const conf = join(dir, 'radicale.conf');
    pid = spawnLogged('/usr/bin/radicale', ['--config', conf], { logFile: log, cwd: dir }).pid;
    await waitFor(
      `radicale on ${url}`,
      async () => {
        if (pid === undefined || !isAlive(pid)) throw new Error('radicale exited');
        return (await httpStatus(`${url}.web/`)) !== undefined;
      },
    );
    return { url, users, dir, stop };
  } catch (err) {
    const error = startError('radicale', err, [log]);
    await stop();
    throw error;
  }
}
