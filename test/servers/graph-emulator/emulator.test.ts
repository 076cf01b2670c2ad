// The Graph emulator itself, checked against Microsoft's documented behaviour with plain HTTP (no integration code).
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quickXorHash } from '../../../integrations/onedrive/quickxorhash.ts';
import { GRAPH_ROOT, startGraphEmulator, TEST_CLIENT_ID, type GraphEmulator } from '../graph-emulator.ts';

let emu: GraphEmulator;
let token: string;
beforeAll(async () => {
  emu = await startGraphEmulator({ pageSize: 2, deltaPageSize: 2 });
  token = emu.identity.issueAccessToken(TEST_CLIENT_ID, emu.me.id);
  for (const n of ['a', 'b', 'c', 'd', 'e']) await emu.store.writeFile(emu.me, `/Docs/${n}.txt`, `content ${n}`);
});
afterAll(async () => {
  await emu?.close();
});

const auth = (): Record<string, string> => ({ authorization: `Bearer ${token}` });
const graph = (path: string, init: RequestInit = {}): Promise<Response> =>
  fetch(`${emu.url}/v1.0${path}`, { ...init, headers: { ...auth(), ...(init.headers as Record<string, string>) }, redirect: 'manual' });
const local = (link: string): string => link.replace(GRAPH_ROOT, emu.url);

describe('graph emulator: reading', () => {
  it('pages children with real-looking https://graph.microsoft.com nextLinks', async () => {
    const names: string[] = [];
    let next: string | undefined = `${emu.url}/v1.0/me/drive/root:/Docs:/children?$top=100`;
    const links: string[] = [];
    while (next) {
      const page = (await (await fetch(next, { headers: auth() })).json()) as { value: Array<{ name: string }>; '@odata.nextLink'?: string };
      names.push(...page.value.map((v) => v.name));
      next = page['@odata.nextLink'] ? local(page['@odata.nextLink']) : undefined;
      if (page['@odata.nextLink']) links.push(page['@odata.nextLink']);
    }
    expect(names).toEqual(['a.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt']);
    expect(links[0]).toMatch(/^https:\/\/graph\.microsoft\.com\/v1\.0\/drives\/[^/]+\/items\/[^/]+\/children\?\$top=2&\$skiptoken=2$/);
  });

  it('addresses items by path (case-insensitive) and by id, with Graph error bodies for the rest', async () => {
    const byPath = (await (await graph('/me/drive/root:/docs/A.TXT:')).json()) as { id: string; name: string; parentReference: { path: string }; file: { hashes: Record<string, string> } };
    expect(byPath.name).toBe('a.txt');
    expect(byPath.parentReference.path).toBe('/drive/root:/Docs');
    expect(byPath.file.hashes.quickXorHash).toBe(quickXorHash(Buffer.from('content a')));
    expect(byPath.file.hashes.sha1Hash).toBe(createHash('sha1').update('content a').digest('hex').toUpperCase());
    const byId = (await (await graph(`/drives/${emu.me.id}/items/${encodeURIComponent(byPath.id)}`)).json()) as { name: string };
    expect(byId.name).toBe('a.txt');
    const missing = await graph('/me/drive/root:/nope:');
    expect(missing.status).toBe(404);
    const body = (await missing.json()) as { error: { code: string; message: string; innerError: Record<string, string> } };
    expect(body.error.code).toBe('itemNotFound');
    expect(Object.keys(body.error.innerError).sort()).toEqual(['client-request-id', 'date', 'request-id']);
    const anonymous = await fetch(`${emu.url}/v1.0/me/drive`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('InvalidAuthenticationToken');
  });

  it('redirects content to a pre-authenticated URL that honours Range', async () => {
    const r = await graph('/me/drive/root:/Docs/c.txt:/content');
    expect(r.status).toBe(302);
    const location = r.headers.get('location') as string;
    expect(location.startsWith(`${emu.url}/download/`)).toBe(true);
    const whole = await fetch(location);
    expect(await whole.text()).toBe('content c');
    const part = await fetch(location, { headers: { range: 'bytes=2-5' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 2-5/9');
    expect(await part.text()).toBe('ntent'.slice(0, 4));
    expect(await (await fetch(location, { headers: { range: 'bytes=-3' } })).text()).toBe('t c');
    const beyond = await fetch(location, { headers: { range: 'bytes=9-' } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe('bytes */9');
    emu.expireDownloadUrls();
    expect((await fetch(location)).status).toBe(401);
  });

  it('serves delta with nextLink then deltaLink, no paths, changes and deletions on the next call, and resync', async () => {
    const ids: string[] = [];
    let next: string | undefined = `${emu.url}/v1.0/me/drive/root/delta`;
    let deltaLink: string | undefined;
    while (next) {
      const page = (await (await fetch(next, { headers: auth() })).json()) as { value: Array<{ id: string; parentReference?: { path?: string } }>; '@odata.nextLink'?: string; '@odata.deltaLink'?: string };
      for (const v of page.value) {
        ids.push(v.id);
        expect(v.parentReference?.path).toBeUndefined();
      }
      next = page['@odata.nextLink'] ? local(page['@odata.nextLink']) : undefined;
      deltaLink = page['@odata.deltaLink'];
    }
    expect(ids.length).toBe(7); // root, Docs, five files
    expect(deltaLink).toMatch(/^https:\/\/graph\.microsoft\.com\/v1\.0\/drives\/.+\/delta\?token=/);
    await emu.store.writeFile(emu.me, '/Docs/new.txt', 'new');
    const e = emu.store.resolve(emu.me, emu.store.item(emu.me, emu.me.rootId), ['Docs', 'e.txt']);
    if (e) emu.store.remove(emu.me, e);
    const changes = (await (await fetch(local(deltaLink as string), { headers: auth() })).json()) as { value: Array<{ name?: string; deleted?: object }> };
    expect(changes.value.filter((v) => !v.deleted).map((v) => v.name)).toContain('new.txt');
    expect(changes.value.filter((v) => v.deleted).map((v) => v.name)).toEqual(['e.txt']);
    emu.expireDeltaTokens();
    const gone = await fetch(local(deltaLink as string), { headers: auth() });
    expect(gone.status).toBe(410);
    expect(((await gone.json()) as { error: { code: string } }).error.code).toBe('resyncRequired');
  });

  it('refuses delta below the root of a business drive', async () => {
    const work = emu.createDrive({ driveType: 'business' });
    emu.store.mkdirp(work, '/Sub');
    const r = await graph(`/drives/${encodeURIComponent(work.id)}/root:/Sub:/delta`);
    expect(r.status).toBe(400);
    expect(((await graph(`/drives/${encodeURIComponent(work.id)}/root/delta`))).status).toBe(200);
  });
});

describe('graph emulator: writing', () => {
  it('creates folders and simple uploads with conflict behaviours, names and parents checked', async () => {
    const mk = await graph('/me/drive/root/children', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'W', folder: {} }) });
    expect(mk.status).toBe(201);
    const again = await graph('/me/drive/root/children', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'w', folder: {} }) });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('nameAlreadyExists');
    expect((await graph('/me/drive/root:/W/f.txt:/content', { method: 'PUT', body: 'one' })).status).toBe(201);
    expect((await graph('/me/drive/root:/W/f.txt:/content', { method: 'PUT', body: 'two' })).status).toBe(200);
    expect((await graph('/me/drive/root:/W/f.txt:/content?@microsoft.graph.conflictBehavior=fail', { method: 'PUT', body: 'x' })).status).toBe(409);
    const renamed = (await (await graph('/me/drive/root:/W/f.txt:/content?@microsoft.graph.conflictBehavior=rename', { method: 'PUT', body: 'three' })).json()) as { name: string };
    expect(renamed.name).toBe('f 1.txt');
    expect((await graph('/me/drive/root:/W/missing/f.txt:/content', { method: 'PUT', body: 'x' })).status).toBe(404);
    expect((await graph('/me/drive/root:/W/a%3Fb.txt:/content', { method: 'PUT', body: 'x' })).status).toBe(400);
    const patched = (await (
      await graph('/me/drive/root:/W/f.txt:', { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ fileSystemInfo: { lastModifiedDateTime: '2001-02-03T04:05:06.789Z' } }) })
    ).json()) as { fileSystemInfo: { lastModifiedDateTime: string } };
    expect(patched.fileSystemInfo.lastModifiedDateTime).toBe('2001-02-03T04:05:06Z');
  });

  it('runs upload sessions by Graph’s fragment rules', async () => {
    const create = (await (
      await graph('/me/drive/root:/W/big.bin:/createUploadSession', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ item: { '@microsoft.graph.conflictBehavior': 'fail' } }) })
    ).json()) as { uploadUrl: string; nextExpectedRanges: string[] };
    expect(create.nextExpectedRanges).toEqual(['0-']);
    expect(create.uploadUrl.startsWith(`${emu.url}/upload/`)).toBe(true);
    const data = Buffer.alloc(700_000, 7);
    const put = (start: number, end: number, headers: Record<string, string> = {}): Promise<Response> =>
      fetch(create.uploadUrl, { method: 'PUT', headers: { 'content-range': `bytes ${start}-${end}/${data.length}`, ...headers }, body: data.subarray(start, end + 1) });
    expect((await put(0, 99_999)).status).toBe(400); // not a multiple of 320 KiB
    expect((await put(0, 327_679, { authorization: `Bearer ${token}` })).status).toBe(401); // no token on upload URLs
    const first = await put(0, 327_679);
    expect(first.status).toBe(202);
    expect(((await first.json()) as { nextExpectedRanges: string[] }).nextExpectedRanges).toEqual(['327680-699999']);
    expect((await put(0, 327_679)).status).toBe(416); // already received
    expect((await put(655_360, 699_999)).status).toBe(400); // a gap
    const status = (await (await fetch(create.uploadUrl)).json()) as { nextExpectedRanges: string[]; expirationDateTime: string };
    expect(status.nextExpectedRanges).toEqual(['327680-699999']);
    expect(Date.parse(status.expirationDateTime)).toBeGreaterThan(Date.now());
    expect((await put(327_680, 655_359)).status).toBe(202);
    const done = await put(655_360, 699_999);
    expect(done.status).toBe(201);
    const item = (await done.json()) as { size: number; file: { hashes: { quickXorHash: string } } };
    expect(item.size).toBe(data.length);
    expect(item.file.hashes.quickXorHash).toBe(quickXorHash(data));
    expect((await put(0, 327_679)).status).toBe(404); // the session is over
    const conflict = await graph('/me/drive/root:/W/big.bin:/createUploadSession', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ item: { '@microsoft.graph.conflictBehavior': 'fail' } }) });
    expect(conflict.status).toBe(409);
    const s2 = (await (await graph('/me/drive/root:/W/other.bin:/createUploadSession', { method: 'POST' })).json()) as { uploadUrl: string };
    emu.expireSessions();
    expect((await fetch(s2.uploadUrl, { method: 'PUT', headers: { 'content-range': 'bytes 0-2/3' }, body: 'abc' })).status).toBe(404);
  });

  it('refuses uploads beyond the quota with quotaLimitReached', async () => {
    const small = emu.createDrive({ quotaTotal: 10 });
    const r = await graph(`/drives/${encodeURIComponent(small.id)}/root:/x.bin:/content`, { method: 'PUT', body: 'more than ten bytes' });
    expect(r.status).toBe(507);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('quotaLimitReached');
  });
});

/** A Graph request to the emulator with the given Host header (as through a proxy at that address). */
function sentTo(host: string, method: string, path: string): Promise<{ status: number; location?: string; body: string }> {
  const { hostname, port } = new URL(emu.url);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, method, path: `/v1.0${path}`, headers: { ...auth(), host } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body: text }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('graph emulator: absolute URLs', () => {
  it('builds upload-session and download URLs from the address the request was sent to (its Host header)', async () => {
    const session = await sentTo('127.0.0.1:1234', 'POST', '/me/drive/root:/Docs/hosted.bin:/createUploadSession');
    expect(session.status).toBe(200);
    expect(JSON.parse(session.body).uploadUrl).toMatch(/^http:\/\/127\.0\.0\.1:1234\/upload\//);
    const item = await sentTo('proxy.test:8080', 'GET', '/me/drive/root:/Docs/a.txt:');
    expect(JSON.parse(item.body)['@microsoft.graph.downloadUrl']).toMatch(/^http:\/\/proxy\.test:8080\/download\//);
    const content = await sentTo('proxy.test:8080', 'GET', '/me/drive/root:/Docs/a.txt:/content');
    expect(content.status).toBe(302);
    expect(content.location).toMatch(/^http:\/\/proxy\.test:8080\/download\//);
    // A Host that is not a plain host and port is not used: the emulator's own address is.
    const odd = await sentTo('evil.example/x', 'GET', '/me/drive/root:/Docs/a.txt:/content');
    expect(odd.location?.startsWith(`${emu.url}/download/`)).toBe(true);
  });
});

describe('graph emulator: identity platform and faults', () => {
  it('rotates refresh tokens, refuses bad grants, and runs the device-code flow', async () => {
    const post = (path: string, form: Record<string, string>): Promise<Response> =>
      fetch(`${emu.url}/common/oauth2/v2.0/${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
    const rt = emu.identity.issueRefreshToken(TEST_CLIENT_ID, emu.me.id);
    const reply = (await (await post('token', { grant_type: 'refresh_token', client_id: TEST_CLIENT_ID, refresh_token: rt, scope: 'Files.ReadWrite.All offline_access' })).json()) as {
      access_token: string;
      refresh_token: string;
      expires_in: number;
    };
    expect(reply.refresh_token).not.toBe(rt);
    expect(reply.expires_in).toBe(3600);
    const bad = (await (await post('token', { grant_type: 'refresh_token', client_id: TEST_CLIENT_ID, refresh_token: 'nope' })).json()) as { error: string; error_description: string };
    expect(bad.error).toBe('invalid_grant');
    expect(bad.error_description).toMatch(/^AADSTS9002313: /);
    const dc = (await (await post('devicecode', { client_id: TEST_CLIENT_ID, scope: 'offline_access' })).json()) as { device_code: string; user_code: string; interval: number };
    const poll = (): Promise<Response> => post('token', { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', client_id: TEST_CLIENT_ID, device_code: dc.device_code });
    expect(((await (await poll()).json()) as { error: string }).error).toBe('authorization_pending');
    emu.identity.approveDevice(dc.user_code, emu.me.id);
    expect(((await (await poll()).json()) as { refresh_token?: string }).refresh_token).toMatch(/^rt-/);
  });

  it('throttles with Retry-After, fails, drops, and counts', async () => {
    const mark = emu.count();
    emu.throttle(1, { retryAfter: 7 });
    const t = await graph('/me/drive');
    expect(t.status).toBe(429);
    expect(t.headers.get('retry-after')).toBe('7');
    expect(((await t.json()) as { error: { code: string } }).error.code).toBe('activityLimitReached');
    emu.fail(1, { status: 503, code: 'serviceNotAvailable' });
    expect((await graph('/me/drive')).status).toBe(503);
    emu.drop(1);
    await expect(graph('/me/drive')).rejects.toThrow();
    expect((await graph('/me/drive')).status).toBe(200);
    expect(emu.count() - mark).toBe(4);
  });
});
