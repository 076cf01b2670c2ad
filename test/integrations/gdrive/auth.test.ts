// Sign-in for the gdrive connectors: the three credential kinds, Init errors with their exact text, service-account
// impersonation, the `login` loopback flow, and no secret ever in stderr or a status message.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setLogLevel } from '../../../shared/log.ts';
import { CLIENT_ID, CLIENT_SECRET, connect, connectRaw, startDrive, type TestDrive } from './helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
let drive: TestDrive;
let tmp: string;
beforeAll(async () => {
  drive = await startDrive();
  tmp = mkdtempSync(join(tmpdir(), 'gdrive-auth-'));
  await drive.emu.createFile(undefined, 'hello.txt', 'hello');
});
afterAll(async () => {
  await drive.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** The Init error text for `config` (the host shows exactly this after its own prefix). */
async function initError(kind: 'importer' | 'exporter' | 'storage', config: Record<string, string>): Promise<string> {
  const c = connectRaw(kind);
  try {
    await c.host.init(kind, 'gdrive', config);
  } catch (err) {
    return (err as Error).message;
  } finally {
    c.close();
  }
  throw new Error('Init succeeded');
}

/** `gdrive login …`: the built executable with KLOSET_TS_SPAWN=1, the sources through tsx otherwise. */
function login(args: string[]): ReturnType<typeof spawn> & { stdout: NonNullable<ReturnType<typeof spawn>['stdout']>; stderr: NonNullable<ReturnType<typeof spawn>['stderr']> } {
  const [cmd, argv] =
    process.env.KLOSET_TS_SPAWN === '1'
      ? [join(ROOT, 'dist', 'gdrive', 'gdrive'), ['login', ...args]]
      : [process.execPath, ['--import', 'tsx', 'scripts/dev-entry.ts', 'integrations/gdrive', 'login', ...args]];
  return spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }) as ReturnType<typeof login>;
}

const endpoints = (): Record<string, string> => ({ api_url: drive.emu.url, token_url: drive.emu.tokenUrl });

describe('gdrive: Init errors name the key and the cause', () => {
  it('missing, partial and conflicting credentials', async () => {
    const base = { location: 'gdrive://', ...endpoints() };
    expect(await initError('importer', base)).toBe(
      'gdrive importer: option refresh_token: no Google credentials: set client_id, client_secret and refresh_token (run `gdrive login` to get them), or service_account_key, or access_token',
    );
    expect(await initError('importer', { ...base, client_id: CLIENT_ID })).toBe(
      'gdrive importer: option client_secret: is required with client_id and refresh_token (user sign-in); option refresh_token: is required with client_id and client_secret (user sign-in; run `gdrive login` to get one)',
    );
    expect(await initError('exporter', { ...base, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, refresh_token: 'x', access_token: 'y' })).toBe(
      'gdrive exporter: option access_token: cannot be combined with client_id/client_secret/refresh_token: choose one way to sign in',
    );
    expect(await initError('storage', { ...base, location: 'gdrive:///r', access_token: 'ya29.x', impersonate: 'bob@example.com' })).toBe(
      'gdrive storage: option impersonate: only applies with service_account_key',
    );
    expect(await initError('importer', { ...base, access_token: 'tok', shortcut: 'skip' })).toMatch(/^gdrive importer: option shortcut: unknown option \(did you mean shortcuts\?\)/);
    expect(await initError('storage', { ...base, location: 'gdrive://', access_token: 'tok' })).toBe(
      'gdrive storage: option location: expected a folder for the repository, such as gdrive:///plakar (the top of a drive holds other files), got "gdrive://"',
    );
    expect(await initError('exporter', { ...base, access_token: 'tok', chunk_size: '300KiB' })).toBe(
      'gdrive exporter: option chunk_size: expected a multiple of 256KiB, got "300KiB"',
    );
  });

  it('refused credentials: revoked refresh token, wrong client secret, expired access token', async () => {
    const revoked = drive.emu.issueRefreshToken(CLIENT_ID);
    drive.emu.revokeRefreshToken(revoked);
    expect(await initError('importer', drive.config('gdrive://', { refresh_token: revoked }))).toBe(
      'gdrive importer: cannot sign in to Google Drive: Google refused the refresh_token: invalid_grant (Token has been expired or revoked.) (hint: run "gdrive login" again and update refresh_token; refresh tokens of OAuth apps in "Testing" status expire after 7 days)',
    );
    expect(await initError('importer', drive.config('gdrive://', { client_secret: 'GOCSPX-wrong' }))).toBe(
      'gdrive importer: cannot sign in to Google Drive: Google refused client_id/client_secret: invalid_client (The OAuth client was not found.)',
    );
    const token = drive.emu.issueAccessToken('alice@example.com', -1);
    expect(await initError('importer', { location: 'gdrive://', access_token: token, ...endpoints() })).toBe(
      'gdrive importer: Google Drive refused the access_token (access tokens last about one hour and cannot be renewed; hint: use client_id, client_secret and refresh_token, or service_account_key)',
    );
  });

  it('a service account key that cannot be used', async () => {
    const base = { location: 'gdrive://', ...endpoints() };
    expect(await initError('importer', { ...base, service_account_key: join(tmp, 'missing.json') })).toBe(
      'gdrive importer: option service_account_key: cannot read it as a key file path (no such file); give the path of the JSON key file, or the JSON itself',
    );
    expect(await initError('importer', { ...base, service_account_key: '{"type": "authorized_user"}' })).toBe(
      'gdrive importer: option service_account_key: expected a service account JSON key with type "service_account", client_email and private_key',
    );
    expect(await initError('importer', { ...base, service_account_key: '{not json' })).toBe(
      'gdrive importer: option service_account_key: expected a service account JSON key (inline JSON or a path to the key file), but it is not valid JSON',
    );
    const noDelegation = drive.emu.addServiceAccount('nodelegation', { delegation: false });
    expect(await initError('importer', { ...base, service_account_key: noDelegation.key, impersonate: 'alice@example.com' })).toBe(
      `gdrive importer: cannot sign in to Google Drive: Google refused to let ${noDelegation.email} act as alice@example.com: unauthorized_client (Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.) (hint: allow the service account's client id and the scope https://www.googleapis.com/auth/drive.readonly under domain-wide delegation in the Workspace admin console)`,
    );
  });
});

describe('gdrive: credential kinds', () => {
  it('a service account (inline JSON or key file) impersonating a user, or acting as itself', async () => {
    const sa = drive.emu.addServiceAccount('backup');
    const file = join(tmp, 'key.json');
    writeFileSync(file, sa.key);
    for (const key of [sa.key, file]) {
      const c = await connect('importer', { location: 'gdrive://', service_account_key: key, impersonate: 'alice@example.com', ...endpoints() });
      expect(c.host.initResult?.origin).toBe('drive.google.com/alice@example.com');
      const out = await c.host.importAll({ content: 'bytes' });
      c.close();
      expect((out.contents.get('/hello.txt') as Buffer).toString()).toBe('hello');
    }
    const self = await connect('storage', { location: 'gdrive:///sa-repo', service_account_key: file, ...endpoints() });
    expect(self.host.initResult?.origin).toBe(`drive.google.com/${sa.email}`);
    await self.host.create(Buffer.from('_KLOSET_sa'));
    self.close();
    expect(drive.emu.lookup('sa-repo/CONFIG', drive.emu.rootId(sa.email))).toBeDefined();
  });

  it('a ready access token works until it expires', async () => {
    const token = drive.emu.issueAccessToken();
    const c = await connect('importer', { location: 'gdrive://', access_token: token, ...endpoints() });
    const out = await c.host.importAll({ openContent: false });
    c.close();
    expect(out.records.some((r) => r.pathname === '/hello.txt')).toBe(true);
  });
});

describe('gdrive: secrets', () => {
  it('never reach stderr (debug logging on) or a status message', async () => {
    const captured: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      captured.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      return (original as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stderr.write;
    setLogLevel('debug');
    const messages: string[] = [];
    const issued: string[] = [];
    const sa = drive.emu.addServiceAccount('secretive');
    try {
      const revoked = drive.emu.issueRefreshToken(CLIENT_ID);
      drive.emu.revokeRefreshToken(revoked);
      messages.push(await initError('importer', drive.config('gdrive://', { refresh_token: revoked })));
      messages.push(await initError('importer', drive.config('gdrive://', { client_secret: `${CLIENT_SECRET}-x` })));
      const stale = drive.emu.issueAccessToken('alice@example.com', -1);
      issued.push(stale);
      messages.push(await initError('importer', { location: 'gdrive://', access_token: stale, ...endpoints() }));
      // A run that renews tokens, retries and fails some items.
      drive.emu.throttle(3, { routes: ['list'] });
      const c = await connect('importer', drive.config('gdrive://', { max_retries: '5' }));
      const missing = await drive.emu.createFile(undefined, 'corrupt.bin', 'abc');
      drive.emu.corruptMd5(missing);
      drive.emu.expireAllTokens();
      const out = await c.host.importAll({ content: 'sha256' });
      c.close();
      for (const e of out.itemErrors) messages.push(e.message);
      expect(out.itemErrors.length).toBe(1);
      const withSa = await connect('importer', { location: 'gdrive://', service_account_key: sa.key, impersonate: 'alice@example.com', ...endpoints() });
      await withSa.host.importAll({ openContent: false });
      withSa.close();
      messages.push(await initError('importer', { location: 'gdrive:///nope', service_account_key: sa.key, ...endpoints() }));
    } finally {
      setLogLevel('warn');
      process.stderr.write = original;
    }
    const stderr = captured.join('');
    expect(stderr).toContain('retrying after error');
    const key = JSON.parse(sa.key) as { private_key: string };
    const secrets = [CLIENT_SECRET, drive.refreshToken, ...issued, key.private_key.split('\n')[1] as string, 'ya29.emu-'];
    for (const s of secrets) {
      expect(stderr.includes(s), `secret ${s.slice(0, 12)}… in stderr`).toBe(false);
      for (const m of messages) expect(m.includes(s), `secret ${s.slice(0, 12)}… in "${m}"`).toBe(false);
    }
  });
});

describe('gdrive: the login command', () => {
  it('runs the loopback flow and prints plakar lines whose refresh token works', async () => {
    const emu = drive.emu;
    const child = login(['--client-id', CLIENT_ID, '--client-secret', CLIENT_SECRET, '--no-browser', '--name', 'work drive', '--auth-url', emu.authUrl, '--token-url', emu.tokenUrl, '--api-url', emu.url]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const address = new Promise<string>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /(http:\/\/127\.0\.0\.1:\d+\/o\/oauth2\/v2\/auth\?\S+)/.exec(stderr);
        if (m) resolve(m[1] as string);
      });
    });
    const exit = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    // The "browser": follows Google's redirect to the command's loopback server.
    const page = await fetch(await address, { redirect: 'follow' });
    expect(await page.text()).toContain('Signed in to Google Drive');
    expect(await exit).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toBe('# Google Drive access for alice@example.com. Keep these lines secret: the refresh token gives access to the Drive.');
    expect(lines[1]).toMatch(/^plakar source add 'work drive' gdrive:\/\/ client_id=test-client\.apps\.googleusercontent\.com client_secret=GOCSPX-test-client-secret-value refresh_token=1\/\/rt-\S+$/);
    expect(lines[2]).toMatch(/^plakar destination add 'work drive-restore' gdrive:\/\/\/Restored client_id=/);
    expect(lines[3]).toMatch(/^plakar store add 'work drive-store' gdrive:\/\/\/plakar client_id=/);
    const refreshToken = /refresh_token=(\S+)$/.exec(lines[1] as string)?.[1] as string;
    expect(stderr.includes(refreshToken)).toBe(false);
    const c = await connect('importer', drive.config('gdrive://', { refresh_token: refreshToken }));
    expect(c.host.initResult?.origin).toBe('drive.google.com/alice@example.com');
    c.close();
  });

  it('explains itself without a client id, and fails cleanly when Google refuses', async () => {
    const run = async (args: string[]): Promise<{ code: number; stderr: string }> => {
      const child = login(args);
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const m = await new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
      return { code: m, stderr };
    };
    const usage = await run([]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^--client-id and --client-secret are required\n\nusage: gdrive login --client-id ID --client-secret SECRET/);
    const refused = await run(['--client-id', 'unknown', '--client-secret', 'x', '--no-browser', '--timeout', '1', '--auth-url', drive.emu.authUrl, '--token-url', drive.emu.tokenUrl]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('gdrive login: sign-in failed: no answer from the browser within 1s');
  });
});
