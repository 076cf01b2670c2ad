// caldav over HTTPS: a self-signed certificate is refused with a hint, accepted with tls_insecure_no_verify; TLS to plain HTTP.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account } from './dav-util.ts';
import { TASK } from './fixtures.ts';
import { backup, files, initError } from './host.ts';
import { startProxy, type Proxy } from './proxy.ts';
import { startRadicale, type RunningServer } from './servers.ts';

let srv: RunningServer;
let proxy: Proxy;
let certDir: string;

beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'caldav-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });
  srv = await startRadicale();
  const alice = new Account(srv.url, 'alice', 'alicepw');
  await alice.mkcalendar('/alice/tasks/', { displayName: 'Tasks' });
  await alice.put('/alice/tasks/task.ics', TASK);
  proxy = await startProxy(srv.url, {}, { key: readFileSync(join(certDir, 'key.pem'), 'utf8'), cert: readFileSync(join(certDir, 'cert.pem'), 'utf8') });
});

afterAll(async () => {
  await proxy?.stop();
  await srv?.stop();
  rmSync(certDir, { recursive: true, force: true });
});

const alice = (host: string, extra: Record<string, string> = {}): Record<string, string> => ({ location: `caldav://${host}/alice/`, username: 'alice', password: 'alicepw', ...extra });

describe('caldav importer: TLS', () => {
  it('refuses a self-signed certificate and says which option accepts it', async () => {
    const err = await initError('importer', 'caldav', alice(proxy.host));
    expect(err?.message).toBe(
      `caldav importer: cannot reach the server at https://${proxy.host}: self-signed certificate (hint: the TLS certificate is not trusted; fix it, or set tls_insecure_no_verify=true for a test server)`,
    );
  });

  it('backs up over HTTPS with tls_insecure_no_verify=true', async () => {
    const b = await backup('caldav', alice(proxy.host, { tls_insecure_no_verify: 'true' }));
    expect(b.errors).toEqual([]);
    expect([...files(b).keys()].sort()).toEqual(['/tasks/.collection.json', '/tasks/task.ics']);
  });

  it('HTTPS to a plain HTTP port says to set use_tls=false', async () => {
    const err = await initError('importer', 'caldav', alice(new URL(srv.url).host, { max_retries: '1' }));
    expect(err?.message).toMatch(/^caldav importer: cannot reach the server at https:\/\/127\.0\.0\.1:\d+: .* \(hint: the server does not speak TLS on this port; set use_tls=false\)$/);
  });
});

describe('caldav exporter: a collection to create needs an existing home', () => {
  it('fails Init when neither the collection nor its parent exists', async () => {
    const host = new URL(srv.url).host;
    const err = await initError('exporter', 'caldav', { ...alice(host), location: `caldav://${host}/alice/nope/deeper/`, use_tls: 'false' });
    expect(err?.message).toBe(
      `caldav exporter: neither http://${host}/alice/nope/deeper/ nor its parent http://${host}/alice/nope/ exists (hint: location must name a calendar home, or a collection to create inside one)`,
    );
    expect(await initError('exporter', 'caldav', { ...alice(host), location: `caldav://${host}/alice/new-one/`, use_tls: 'false' })).toBeUndefined();
  });
});
