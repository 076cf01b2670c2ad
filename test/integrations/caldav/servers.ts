// The caldav tests' servers: the shared Radicale and Xandikos of test/servers, plus seeding behind the servers' backs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRadicale as startSharedRadicale } from '../../servers/radicale.ts';
import { startXandikos as startSharedXandikos } from '../../servers/xandikos.ts';

export { freePort } from '../../servers/ports.ts';

/** A started server: its root URL (ending in `/`), its data folder, and `stop()`. */
export interface RunningServer {
  url: string;
  dir: string;
  stop(): Promise<void>;
}

/** Radicale with alice, bob and carol (passwords `<user>pw`), owner-only rights, no delay after a failed login. */
export function startRadicale(): Promise<RunningServer> {
  return startSharedRadicale({
    users: ['alice', 'bob', 'carol'].map((user) => ({ user, password: `${user}pw` })),
  });
}

/** Xandikos (no authentication); principal `/user/`, homes `/user/calendars/` and `/user/contacts/`. */
export function startXandikos(): Promise<RunningServer> {
  return startSharedXandikos();
}

/**
 * Adds `files` (name → content) to a Xandikos collection in one git commit, behind the server's back: thousands of
 * objects in a second, where a PUT each takes ~0.1 s. The collection must exist (created over DAV first).
 */
export function seedXandikos(srv: RunningServer, collectionPath: string, files: Iterable<[string, string]>): void {
  const repo = join(srv.dir, 'data', ...collectionPath.split('/').filter(Boolean));
  for (const [name, text] of files) writeFileSync(join(repo, name), text);
  const git = (...args: string[]): void => {
    execFileSync('git', ['-c', 'user.name=kloset-ts tests', '-c', 'user.email=tests@kloset.invalid', ...args], { cwd: repo, stdio: 'ignore' });
  };
  git('add', '--all');
  git('commit', '--quiet', '--message', 'seed');
}

/**
 * Writes `files` into a new Radicale calendar folder behind the server's back (a PUT takes 20–150 ms on Radicale and
 * grows with the collection). `user`'s home must exist: any request by that user creates it.
 */
export function seedRadicale(srv: RunningServer, user: string, name: string, displayName: string, files: Iterable<[string, string]>): void {
  const dir = join(srv.dir, 'collections', 'collection-root', user, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '.Radicale.props'), JSON.stringify({ tag: 'VCALENDAR', 'D:displayname': displayName }));
  for (const [file, text] of files) writeFileSync(join(dir, file), text);
}
