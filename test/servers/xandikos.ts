// Xandikos CalDAV/CardDAV for tests: no authentication, one principal with a default calendar and address book.
import { rmSync } from 'node:fs';
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

/** What a client needs to reach Xandikos (JSON-serialisable: this is what the global setup provides). */
export interface XandikosInfo {
  /** `http://127.0.0.1:PORT/`, the server root. */
  url: string;
  /**
   * The current-user principal, `/user/`; `--defaults` creates `/user/calendars/calendar/` and
   * `/user/contacts/addressbook/`.
   */
  principalPath: '/user/';
  /** The temp directory (the git-backed store and `xandikos.log`). */
  dir: string;
}

/** A running Xandikos. */
export interface Xandikos extends XandikosInfo {
  /** Stops Xandikos, waits until it is gone and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts Xandikos 0.2 (Debian, `/usr/bin/xandikos`) on a free port of 127.0.0.1 with `--defaults`. Xandikos has no
 * authentication: any credentials are accepted, so it cannot test auth failures.
 *
 * @returns the URL, principal path and `stop()`
 * @throws Error with the end of `xandikos.log` when Xandikos does not come up
 * @example
 * const dav = await startXandikos();
 * const client = new DAVClient({ serverUrl: dav.url, credentials: { username: 'any', password: 'any' },
 *   authMethod: 'Basic', defaultAccountType: 'caldav' });
 * await dav.stop();
 */
export async function startXandikos(): Promise<Xandikos> {
  const dir = makeTempDir('xandikos');
  let pid: number | undefined;
  const unregister = registerLeftover({ dir, pids: () => [pid] });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await killAndWait([pid], { graceMs: 5000 });
      unregister();
      rmSync(dir, { recursive: true, force: true });
    })());
  const log = join(dir, 'xandikos.log');

  try {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/`;
    const child = spawnLogged(
      '/usr/bin/xandikos',
      ['-d', join(dir, 'data'), '-l', '127.0.0.1', '-p', String(port), '--defaults'],
      { logFile: log, cwd: dir },
    );
    pid = child.pid;
    await waitFor(
      `xandikos on ${url}`,
      async () => {
        if (pid === undefined || !isAlive(pid)) throw new Error('xandikos exited');
        return (await httpStatus(url)) !== undefined;
      },
    );
    return { url, principalPath: '/user/', dir, stop };
  } catch (err) {
    const error = startError('xandikos', err, [log]);
    await stop();
    throw error;
  }
}
