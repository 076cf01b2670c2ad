// Real Radicale and Xandikos for the caldav tests (TEST-SERVERS.md §3), on 127.0.0.1 at free ports in temporary folders.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A started server. */
export interface RunningServer {
  url: string;
  /** The server's data folder (Radicale: `collections/collection-root/<user>/<collection>/`). */
  dir: string;
  stop(): Promise<void>;
}

/** A Radicale account. */
export interface User {
  user: string;
  password: string;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

async function waitReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${log()}`);
    try {
      const res = await fetch(url, { method: 'OPTIONS' });
      await res.arrayBuffer();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`server at ${url} not ready after 15 s: ${log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
}

/** Radicale 3 with htpasswd (plain) auth, owner-only rights, no delay after a failed login. */
export async function startRadicale(users: User[] = [
  { user: 'alice', password: 'alicepw' },
  { user: 'bob', password: 'bobpw' },
  { user: 'carol', password: 'carolpw' },
]): Promise<RunningServer & { users: User[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'caldav-radicale-'));
  const port = await freePort();
  writeFileSync(join(dir, 'users'), users.map((u) => `${u.user}:${u.password}`).join('\n') + '\n');
  writeFileSync(
    join(dir, 'radicale.conf'),
    [
      '[server]',
      `hosts = 127.0.0.1:${port}`,
      '[auth]',
      'type = htpasswd',
      `htpasswd_filename = ${join(dir, 'users')}`,
      'htpasswd_encryption = plain',
      'delay = 0',
      '[storage]',
      `filesystem_folder = ${join(dir, 'collections')}`,
      '[rights]',
      'type = owner_only',
      '[logging]',
      'level = warning',
      '',
    ].join('\n'),
  );
  let out = '';
  const child = spawn('/usr/bin/radicale', ['--config', join(dir, 'radicale.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  child.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child, () => out);
  return { url, dir, users, stop: stopper(child, dir) };
}

/** Xandikos (no authentication: any credentials pass); principal `/user/`, homes `/user/calendars/` and `/user/contacts/`. */
export async function startXandikos(): Promise<RunningServer & { principalPath: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'caldav-xandikos-'));
  const port = await freePort();
  let out = '';
  const child = spawn('/usr/bin/xandikos', ['-d', join(dir, 'data'), '-l', '127.0.0.1', '-p', String(port), '--defaults'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  child.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child, () => out);
  return { url, dir, principalPath: '/user/', stop: stopper(child, dir) };
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
