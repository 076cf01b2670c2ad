// The caldav executable spawned like Plakar (two pipes), debug logging on: secrets never reach stderr or a status message.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchPlugin, type LaunchedPlugin } from '../../harness/index.ts';
import { Account } from './dav-util.ts';
import { TASK, WEEKLY } from './fixtures.ts';
import { startProxy, type Proxy } from './proxy.ts';
import { startRadicale, type RunningServer } from './servers.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const SECRETS = ['alicepw-but-wrong', 'rt-spawned-refresh-token', 'cs-spawned-client-secret', 'at-spawned-access-'];

let srv: RunningServer;
let proxy: Proxy;
const launched: LaunchedPlugin[] = [];

async function launch(kind: 'importer' | 'exporter'): Promise<LaunchedPlugin> {
  const plugin = await launchPlugin(
    { executable: join(ROOT, 'node_modules/.bin/tsx'), args: [join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/caldav'), kind] },
    // tsx compiles the sources at start: allow more than the host's 20 s on a loaded machine.
    { env: { KLOSET_TS_LOG: 'debug', KLOSET_TS_LOG_FILE: undefined }, mode: 'pipes', settingsTimeoutMs: 90_000 },
  );
  launched.push(plugin);
  return plugin;
}

beforeAll(async () => {
  srv = await startRadicale();
  const alice = new Account(srv.url, 'alice', 'alicepw');
  await alice.mkcalendar('/alice/work/', { displayName: 'Work' });
  await alice.put('/alice/work/weekly.ics', WEEKLY);
  await alice.put('/alice/work/task.ics', TASK);
  let issued = 0;
  let current = '';
  proxy = await startProxy(srv.url, {
    answer: (req, n) => {
      if (req.path === '/token') {
        const form = new URLSearchParams(req.body);
        if (form.get('refresh_token') !== 'rt-spawned-refresh-token' || form.get('client_secret') !== 'cs-spawned-client-secret') {
          return { status: 400, headers: { 'content-type': 'application/json' }, body: '{"error":"invalid_grant"}' };
        }
        current = `at-spawned-access-${++issued}`;
        return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ access_token: current, expires_in: 3600 }) };
      }
      if (n === 5) return { status: 503, headers: { 'retry-after': '0' } };
      if (n === 7) current = 'revoked';
      return req.authorization === `Bearer ${current}` ? undefined : { status: 401, headers: { 'www-authenticate': 'Bearer' } };
    },
    upstreamAuth: () => `Basic ${Buffer.from('alice:alicepw').toString('base64')}`,
  });
});

afterAll(async () => {
  await Promise.all(launched.map((p) => p.dispose()));
  await proxy?.stop();
  await srv?.stop();
});

function expectNoSecret(text: string): void {
  for (const s of SECRETS) expect(text, `found ${s}`).not.toContain(s);
  expect(text).not.toMatch(/Authorization|Bearer [A-Za-z0-9]/);
}

describe('caldav importer: spawned over two pipes', () => {
  it('backs up with OAuth (a refresh, a 503, a revoked token) and debug logs that name no secret', async () => {
    const plugin = await launch('importer');
    const init = await plugin.host.init('importer', 'caldav', {
      location: `caldav://${proxy.host}/alice/`,
      refresh_token: 'rt-spawned-refresh-token',
      client_id: 'spawned-client',
      client_secret: 'cs-spawned-client-secret',
      token_url: `${proxy.url}/token`,
      use_tls: 'false',
    });
    expect(init.root).toBe('/');
    const out = await plugin.host.importAll();
    expect(out.errors).toEqual([]);
    expect(out.itemErrors).toEqual([]);
    expect(out.records.filter((r) => !r.isXattr).map((r) => r.pathname).sort()).toEqual(['/work', '/work/.collection.json', '/work/task.ics', '/work/weekly.ics']);
    await plugin.host.close();
    const stderr = plugin.process.stderr();
    expect(stderr).toContain("DEBUG caldav/importer");
    if (process.env.CALDAV_SHOW_STDERR) process.stderr.write(stderr);
    expectNoSecret(stderr);
  });

  it('a wrong password fails Init with a message, and nothing on stderr, that names it', async () => {
    const plugin = await launch('exporter');
    const err = await plugin.host
      .init('exporter', 'caldav', { location: `caldav://${new URL(srv.url).host}/alice/`, username: 'alice', password: 'alicepw-but-wrong', use_tls: 'false' })
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    expect(err?.message).toContain('caldav exporter: cannot log in to');
    expectNoSecret(err?.message ?? '');
    expectNoSecret(plugin.process.stderr());
  });
});
