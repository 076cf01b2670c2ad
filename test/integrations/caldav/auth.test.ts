// caldav auth and pacing through a proxy in front of Radicale: Digest, OAuth refresh-token flow, static bearer, 429/503.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, parsed } from './dav-util.ts';
import { TASK, WEEKLY } from './fixtures.ts';
import { backup, content, files, initError, restore, snapshot } from './host.ts';
import { DigestRealm, startProxy, type Proxy } from './proxy.ts';
import { startRadicale, type RunningServer } from './servers.ts';

let srv: RunningServer;
const proxies: Proxy[] = [];
const ALICE = `Basic ${Buffer.from('alice:alicepw').toString('base64')}`;
const BOB = `Basic ${Buffer.from('bob:bobpw').toString('base64')}`;

beforeAll(async () => {
  srv = await startRadicale();
  const alice = new Account(srv.url, 'alice', 'alicepw');
  await alice.mkcalendar('/alice/work/', { displayName: 'Work' });
  await alice.put('/alice/work/weekly.ics', WEEKLY);
  await alice.put('/alice/work/task.ics', TASK);
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await srv?.stop();
});

async function proxy(hooks: Parameters<typeof startProxy>[1]): Promise<Proxy> {
  const p = await startProxy(srv.url, hooks);
  proxies.push(p);
  return p;
}

describe('caldav importer: Digest authentication', () => {
  it('answers a Digest challenge, renews a stale nonce, and backs up as with Basic', async () => {
    const realm = new DigestRealm('alice', 's3cret-digest-pw');
    let stales = 0;
    const p = await proxy({
      answer: (req, n) => {
        if (n === 4) realm.nonce = `rotated-${n}`; // the server expires its nonce during the run
        const v = realm.check(req);
        if (v === 'ok') return undefined;
        if (v === 'stale') stales++;
        return realm.challenge(v === 'stale');
      },
      upstreamAuth: () => ALICE,
    });
    const b = await backup('caldav', { location: `caldav://${p.host}/alice/`, username: 'alice', password: 's3cret-digest-pw', use_tls: 'false' });
    expect(b.errors).toEqual([]);
    expect(b.itemErrors).toEqual([]);
    expect([...files(b).keys()].sort()).toEqual(['/work/.collection.json', '/work/task.ics', '/work/weekly.ics']);
    expect(parsed(content(b, '/work/weekly.ics'))).toEqual(parsed(WEEKLY));
    expect(p.requests.some((r) => r.authorization.startsWith('Digest '))).toBe(true);
    expect(stales).toBeGreaterThan(0);
  });

  it('restores through Digest too (MKCALENDAR, PROPFIND, conditional PUTs)', async () => {
    const b = await backup('caldav', { location: `caldav://${new URL(srv.url).host}/alice/work/`, username: 'alice', password: 'alicepw', use_tls: 'false' });
    const realm = new DigestRealm('bob', 'bob-digest-pw');
    const p = await proxy({ answer: (req) => (realm.check(req) === 'ok' ? undefined : realm.challenge()), upstreamAuth: () => BOB });
    const out = await restore('caldav', { location: `caldav://${p.host}/bob/digest-copy/`, username: 'bob', password: 'bob-digest-pw', use_tls: 'false' }, snapshot(b));
    expect(out.itemErrors).toEqual([]);
    const methods = new Set(p.requests.filter((r) => r.authorization.startsWith('Digest ')).map((r) => r.method));
    expect([...methods].sort()).toEqual(expect.arrayContaining(['MKCALENDAR', 'PROPFIND', 'PUT']));
    const bob = new Account(srv.url, 'bob', 'bobpw');
    const got = await bob.objects('/bob/digest-copy/', 'calendar');
    expect(parsed(got.get('weekly.ics') ?? '')).toEqual(parsed(WEEKLY));
    expect(parsed(got.get('task.ics') ?? '')).toEqual(parsed(TASK));
  });

  it('a wrong password is a clear Init error after one Digest attempt', async () => {
    const realm = new DigestRealm('alice', 'right-one');
    const p = await proxy({ answer: (req) => (realm.check(req) === 'ok' ? undefined : realm.challenge()), upstreamAuth: () => ALICE });
    const err = await initError('importer', 'caldav', { location: `caldav://${p.host}/`, username: 'alice', password: 'wrong-digest-pw', use_tls: 'false' });
    expect(err?.message).toBe(
      `caldav importer: cannot log in to http://${p.host} as "alice": 401 Unauthorized (hint: check username and password (an app password where the provider requires one))`,
    );
    expect(p.requests.filter((r) => r.authorization.startsWith('Digest ')).length).toBe(1);
  });
});

/** A token endpoint plus a resource server that only accepts the latest access token. */
async function oauthProxy(): Promise<{ p: Proxy; revoke: () => void; tokenCalls: () => number }> {
  let current = '';
  let issued = 0;
  const p = await proxy({
    answer: (req) => {
      if (req.path === '/token') {
        const form = new URLSearchParams(req.body);
        if (
          req.method !== 'POST' ||
          form.get('grant_type') !== 'refresh_token' ||
          form.get('refresh_token') !== 'rt-good-refresh-token' ||
          form.get('client_id') !== 'kloset-client' ||
          form.get('client_secret') !== 'cs-client-secret'
        ) {
          return { status: 400, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: 'invalid_grant', error_description: 'Token has been expired or revoked.' }) };
        }
        current = `at-access-token-${++issued}`;
        return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ access_token: current, expires_in: 3600, token_type: 'Bearer' }) };
      }
      if (current !== '' && req.authorization === `Bearer ${current}`) return undefined;
      return { status: 401, headers: { 'www-authenticate': 'Bearer realm="dav", error="invalid_token"' } };
    },
    upstreamAuth: () => ALICE,
  });
  return { p, revoke: () => (current = 'revoked'), tokenCalls: () => p.requests.filter((r) => r.path === '/token').length };
}

describe('caldav importer: OAuth 2.0 refresh token', () => {
  it('obtains an access token, renews it after a 401 and never shows a secret', async () => {
    const { p, revoke, tokenCalls } = await oauthProxy();
    const config = {
      location: `caldav://${p.host}/alice/`,
      refresh_token: 'rt-good-refresh-token',
      client_id: 'kloset-client',
      client_secret: 'cs-client-secret',
      token_url: `${p.url}/token`,
      use_tls: 'false',
    };
    let seen = 0;
    const b = await backup('caldav', config, {
      onRecord: () => {
        if (++seen === 2) revoke(); // the provider revokes the token in the middle of the run
      },
    });
    expect(b.errors).toEqual([]);
    expect(b.itemErrors).toEqual([]);
    expect([...files(b).keys()].sort()).toEqual(['/work/.collection.json', '/work/task.ics', '/work/weekly.ics']);
    expect(tokenCalls()).toBe(2);
    expect(b.init.origin).toBe(`/alice/@${p.host}`);
  });

  it('restores with the refresh token as well', async () => {
    const b = await backup('caldav', { location: `caldav://${new URL(srv.url).host}/alice/work/`, username: 'alice', password: 'alicepw', use_tls: 'false' });
    const { p, tokenCalls } = await oauthProxy();
    const out = await restore(
      'caldav',
      {
        location: `caldav://${p.host}/alice/oauth-copy/`,
        refresh_token: 'rt-good-refresh-token',
        client_id: 'kloset-client',
        client_secret: 'cs-client-secret',
        token_url: `${p.url}/token`,
        use_tls: 'false',
      },
      snapshot(b),
    );
    expect(out.itemErrors).toEqual([]);
    expect(tokenCalls()).toBe(1);
    expect(p.requests.filter((r) => r.method === 'PUT').every((r) => r.authorization.startsWith('Bearer at-access-token-'))).toBe(true);
    const alice = new Account(srv.url, 'alice', 'alicepw');
    const got = await alice.objects('/alice/oauth-copy/', 'calendar');
    expect([...got.keys()].sort()).toEqual(['task.ics', 'weekly.ics']);
    await alice.delete('/alice/oauth-copy/'); // the other tests back up alice's whole home
  });

  it('a revoked refresh token is a clear Init error that names neither token nor secret', async () => {
    const { p } = await oauthProxy();
    const err = await initError('importer', 'caldav', {
      location: `caldav://${p.host}/`,
      refresh_token: 'rt-revoked-refresh-token',
      client_id: 'kloset-client',
      client_secret: 'cs-client-secret',
      token_url: `${p.url}/token`,
      use_tls: 'false',
    });
    expect(err?.message).toBe(
      `caldav importer: cannot refresh the OAuth access token at ${p.url}/token: invalid_grant (Token has been expired or revoked.) (hint: check client_id, client_secret and token_url; a revoked or expired refresh_token must be replaced)`,
    );
  });

  it('a static access_token is sent as Bearer; a rejected one says to use refresh_token', async () => {
    const p = await proxy({
      answer: (req) => (req.authorization === 'Bearer static-access-token' ? undefined : { status: 401, headers: { 'www-authenticate': 'Bearer realm="dav"' } }),
      upstreamAuth: () => BOB,
    });
    const ok = await initError('exporter', 'caldav', { location: `caldav://${p.host}/bob/`, access_token: 'static-access-token', use_tls: 'false' });
    expect(ok).toBeUndefined();
    const err = await initError('exporter', 'caldav', { location: `caldav://${p.host}/bob/`, access_token: 'expired-access-token', use_tls: 'false' });
    expect(err?.message).toBe(
      `caldav exporter: cannot log in to http://${p.host} with access_token: 401 Unauthorized (hint: access_token is expired, revoked or lacks the calendar/contacts scope; use refresh_token to renew tokens automatically)`,
    );
    expect(err?.message).not.toContain('expired-access-token');
  });
});

describe('caldav: throttling', () => {
  it('429 and 503 with Retry-After are waited out, for backup and restore alike', async () => {
    let throttled = 0;
    const p = await proxy({
      answer: (req, n) => {
        // Every third request is refused once: alternately 429 and 503, each with Retry-After.
        if (n % 3 === 0) {
          throttled++;
          return { status: throttled % 2 ? 429 : 503, headers: { 'retry-after': '0' }, body: 'slow down' };
        }
        return undefined;
      },
    });
    const b = await backup('caldav', { location: `caldav://${p.host}/alice/`, username: 'alice', password: 'alicepw', use_tls: 'false' });
    expect(b.errors).toEqual([]);
    expect(b.itemErrors).toEqual([]);
    expect(files(b).size).toBe(3);
    const out = await restore('caldav', { location: `caldav://${p.host}/bob/`, username: 'bob', password: 'bobpw', use_tls: 'false' }, snapshot(b));
    expect(out.itemErrors).toEqual([]);
    expect(throttled).toBeGreaterThan(3);
    const bob = new Account(srv.url, 'bob', 'bobpw');
    expect([...(await bob.objects('/bob/work/', 'calendar')).keys()].sort()).toEqual(['task.ics', 'weekly.ics']);
  });
});

describe('caldav exporter: credentials refused during a restore', () => {
  it('stops the restore with the login error instead of failing every object', async () => {
    const b = await backup('caldav', { location: `caldav://${new URL(srv.url).host}/alice/`, username: 'alice', password: 'alicepw', use_tls: 'false' });
    let allowed = 5;
    const p = await proxy({
      // The password is changed on the server after a few requests.
      answer: () => (allowed-- > 0 ? undefined : { status: 401, headers: { 'www-authenticate': 'Basic realm="x"' } }),
    });
    // The host shows a failed Export as the raw status; the restore ends there.
    await expect(restore('caldav', { location: `caldav://${p.host}/carol/`, username: 'carol', password: 'carolpw', use_tls: 'false' }, snapshot(b))).rejects.toThrow(
      `rpc error: code = Unauthenticated desc = caldav exporter: cannot log in to http://${p.host} as "carol": 401 Unauthorized (hint: check username and password (an app password where the provider requires one))`,
    );
  });
});
