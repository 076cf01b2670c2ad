// `onedrive login` run as a person would: the device-code flow against the emulator's identity platform, then the
// plakar lines on stdout (and nowhere else), with --token-file keeping the token out of the lines.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_CLIENT_ID, type GraphEmulator } from '../../servers/graph-emulator.ts';
import { emulator, served, tempDir } from './helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
/** With KLOSET_TS_SPAWN=1 and a build in dist/, the built executable runs `login`; otherwise the sources through tsx. */
const EXECUTABLE = join(ROOT, 'dist', 'onedrive', 'onedrive');
const BUILT = process.env.KLOSET_TS_SPAWN === '1' && existsSync(EXECUTABLE);

let emu: GraphEmulator;
let tmp: { dir: string; cleanup(): Promise<void> };
beforeAll(async () => {
  emu = await emulator();
  tmp = await tempDir();
});
afterAll(async () => {
  await emu?.close();
  await tmp?.cleanup();
});

/** Runs `onedrive login …` from sources; approves the code as the `me` user once it is pending (unless `decline`). */
async function login(args: string[], o: { decline?: boolean } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [command, argv] = BUILT
    ? [EXECUTABLE, ['login', ...args]]
    : [process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/onedrive'), 'login', ...args]];
  const child = spawn(command, argv, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const approver = setInterval(() => {
    for (const code of emu.identity.pendingUserCodes()) {
      if (!stderr.includes(code)) continue;
      if (o.decline) emu.identity.declineDevice(code);
      else emu.identity.approveDevice(code, emu.me.id);
    }
  }, 100);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(approver);
  return { code, stdout, stderr };
}

describe(`onedrive login (${BUILT ? 'built executable' : 'sources'}): device-code sign-in`, () => {
  it('prints the code to enter, then the plakar lines, which work as they are', async () => {
    const r = await login(['--client-id', TEST_CLIENT_ID, '--endpoint', emu.url, '--name', 'my drive', '--path', 'Backups/plakar']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/To sign in, use a web browser to open the page https:\/\/microsoft\.com\/devicelogin and enter the code [0-9A-F]{9} to authenticate\./);
    expect(r.stderr).toContain(`Signed in: Test User's personal drive ${emu.me.id}.`);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(new RegExp(`^plakar source add 'my drive' onedrive:/// client_id=${TEST_CLIENT_ID} endpoint=http://127\\.0\\.0\\.1:\\d+ refresh_token=rt-[A-Za-z0-9_-]+$`));
    expect(lines[1]).toMatch(/^plakar destination add 'my drive' onedrive:\/\/\/Restored client_id=/);
    expect(lines[2]).toMatch(/^plakar store add 'my drive' onedrive:\/\/\/Backups\/plakar client_id=/);
    // The token never shows on stderr (a log), only in the lines.
    const token = /refresh_token=(\S+)/.exec(lines[0] as string)?.[1] as string;
    expect(r.stderr).not.toContain(token);
    // The printed configuration signs in.
    const s = await served('importer', { location: 'onedrive:///', endpoint: emu.url, client_id: TEST_CLIENT_ID, refresh_token: token });
    s.close();
  });

  it('with --token-file, writes the token (0600) and names the file instead', async () => {
    const file = join(tmp.dir, 'onedrive-token.json');
    const r = await login(['--client-id', TEST_CLIENT_ID, '--endpoint', emu.url, '--token-file', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('refresh_token=');
    expect(r.stdout).toContain(`token_file=${file}`);
    const saved = JSON.parse(await readFile(file, 'utf8')) as { refresh_token: string };
    expect(saved.refresh_token).toMatch(/^rt-/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const s = await served('storage', { location: 'onedrive:///', endpoint: emu.url, client_id: TEST_CLIENT_ID, token_file: file });
    s.close();
  });

  it('explains a declined sign-in, a missing client ID and an unknown app', async () => {
    const declined = await login(['--client-id', TEST_CLIENT_ID, '--endpoint', emu.url], { decline: true });
    expect(declined.code).toBe(1);
    expect(declined.stderr).toContain('onedrive login: the sign-in was declined');
    expect(declined.stdout).toBe('');
    const missing = await login(['--endpoint', emu.url]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('onedrive login: --client-id is required');
    const unknown = await login(['--client-id', 'not-an-app', '--endpoint', emu.url]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/onedrive login: cannot start the device sign-in: unauthorized_client: AADSTS700016: .* \(hint: check the client ID/);
  });
});
