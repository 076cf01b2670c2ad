// Self-checks of the Drive v3 emulator over raw HTTP: the behaviours of Google's published reference it promises.
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DriveEmulator, MIME } from '../drive-emulator.ts';

let emu: DriveEmulator;
let token: string;
beforeAll(async () => {
  emu = await DriveEmulator.start({ exportSizeLimit: 200 });
  token = emu.issueAccessToken();
});
afterAll(async () => {
  await emu.close();
});

const auth = (): Record<string, string> => ({ Authorization: `Bearer ${token}` });
const api = (path: string): string => new URL(path, emu.url).href;
async function json(res: Response): Promise<any> {
  return JSON.parse(await res.text());
}

describe('drive emulator: files.list, fields and q', () => {
  it('answers the default fields, pages, and rejects what Drive rejects', async () => {
    const top = emu.createFolder(undefined, 'list');
    for (let i = 0; i < 5; i++) await emu.createFile(top, `f${i}`, 'x');
    const q = encodeURIComponent(`'${top}' in parents and trashed = false`);
    const first = await json(await fetch(api(`drive/v3/files?q=${q}&pageSize=3`), { headers: auth() }));
    expect(Object.keys(first).sort()).toEqual(['files', 'incompleteSearch', 'kind', 'nextPageToken']);
    expect(Object.keys(first.files[0]).sort()).toEqual(['id', 'kind', 'mimeType', 'name']);
    const second = await json(await fetch(api(`drive/v3/files?q=${q}&pageSize=3&pageToken=${first.nextPageToken}&fields=files(id,size)`), { headers: auth() }));
    expect(second.files).toHaveLength(2);
    expect(second.files[0]).toEqual({ id: expect.any(String), size: '1' });
    const bad = await fetch(api(`drive/v3/files?q=${encodeURIComponent('fullText contains "x"')}`), { headers: auth() });
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.errors[0]).toMatchObject({ reason: 'invalid', location: 'q' });
    expect((await fetch(api('drive/v3/files?pageSize=1001'), { headers: auth() })).status).toBe(400);
    expect((await fetch(api('drive/v3/about'), { headers: auth() })).status).toBe(400);
    const noAuth = await fetch(api('drive/v3/files'));
    expect(noAuth.status).toBe(401);
    expect((await json(noAuth)).error).toMatchObject({ code: 401, status: 'UNAUTHENTICATED', errors: [{ reason: 'authError', location: 'Authorization' }] });
  });
});

describe('drive emulator: media and export', () => {
  it('serves ranges with 206 and 416, refuses to download documents, and limits exports', async () => {
    const id = await emu.createFile(undefined, 'media.bin', 'abcdefghij');
    const part = await fetch(api(`drive/v3/files/${id}?alt=media`), { headers: { ...auth(), Range: 'bytes=2-4' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 2-4/10');
    expect(await part.text()).toBe('cde');
    expect((await fetch(api(`drive/v3/files/${id}?alt=media`), { headers: { ...auth(), Range: 'bytes=10-' } })).status).toBe(416);
    const doc = emu.createGoogleDoc(undefined, 'Doc', 'document', 'short');
    const notBinary = await fetch(api(`drive/v3/files/${doc}?alt=media`), { headers: auth() });
    expect((await json(notBinary)).error.errors[0].reason).toBe('fileNotDownloadable');
    const ok = await fetch(api(`drive/v3/files/${doc}/export?mimeType=${encodeURIComponent(MIME.docx)}`), { headers: auth() });
    expect(await ok.text()).toBe(`KLOSET-EMU-EXPORT ${MIME.docx}\nshort`);
    const huge = emu.createGoogleDoc(undefined, 'Huge', 'document', 'x'.repeat(1000));
    const tooBig = await fetch(api(`drive/v3/files/${huge}/export?mimeType=${encodeURIComponent(MIME.docx)}`), { headers: auth() });
    expect(tooBig.status).toBe(403);
    expect((await json(tooBig)).error.errors[0].reason).toBe('exportSizeLimitExceeded');
  });
});

describe('drive emulator: resumable uploads', () => {
  it('follows the protocol: 308 with Range, status queries, unknown total length, 256 KiB multiples', async () => {
    const KiB256 = 256 * 1024;
    const start = await fetch(api('upload/drive/v3/files?uploadType=resumable'), {
      method: 'POST',
      headers: { ...auth(), 'Content-Type': 'application/json; charset=UTF-8', 'X-Upload-Content-Type': 'application/octet-stream' },
      body: JSON.stringify({ name: 'resumable.bin' }),
    });
    expect(start.status).toBe(200);
    const session = start.headers.get('location') as string;
    const put = (body: Buffer, range: string): Promise<Response> => fetch(session, { method: 'PUT', headers: { 'Content-Range': range }, body });
    const nothing = await put(Buffer.alloc(0), 'bytes */*');
    expect(nothing.status).toBe(308);
    expect(nothing.headers.get('range')).toBeNull();
    expect((await put(Buffer.alloc(1000), 'bytes 0-999/*')).status).toBe(400);
    const one = await put(Buffer.alloc(KiB256, 1), `bytes 0-${KiB256 - 1}/*`);
    expect(one.status).toBe(308);
    expect(one.headers.get('range')).toBe(`bytes=0-${KiB256 - 1}`);
    expect((await put(Buffer.alloc(10), `bytes ${KiB256 + 5}-${KiB256 + 14}/*`)).status).toBe(400);
    const last = await put(Buffer.alloc(10, 2), `bytes ${KiB256}-${KiB256 + 9}/${KiB256 + 10}`);
    expect(last.status).toBe(200);
    const file = await json(last);
    expect(emu.file(file.id)?.size).toBe(KiB256 + 10);
    const again = await put(Buffer.alloc(0), `bytes */${KiB256 + 10}`);
    expect(again.status).toBe(200);
    emu.expireUploadSessions();
    expect((await put(Buffer.alloc(0), 'bytes */*')).status).toBe(404);
  });
});

/** A request to the emulator with the given Host header (as through a proxy at that address). */
function sentTo(host: string, method: string, path: string, headers: Record<string, string>, body = ''): Promise<{ status: number; location?: string; body: string }> {
  const { hostname, port } = new URL(emu.url);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, method, path, headers: { ...headers, host } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('drive emulator: absolute URLs', () => {
  it('builds upload sessions and export links from the address the request was sent to (its Host header)', async () => {
    const start = (host: string) =>
      sentTo(host, 'POST', '/upload/drive/v3/files?uploadType=resumable', { ...auth(), 'content-type': 'application/json' }, JSON.stringify({ name: 'hosted.bin' }));
    const proxied = await start('127.0.0.1:1234');
    expect(proxied.status).toBe(200);
    expect(proxied.location).toMatch(/^http:\/\/127\.0\.0\.1:1234\/upload\/drive\/v3\/files\?uploadType=resumable&upload_id=/);
    // A Host that is not a plain host and port is not used: the emulator's own address is.
    expect((await start('evil.example/x')).location?.startsWith(`${emu.url}upload/`)).toBe(true);
    const doc = emu.createGoogleDoc(undefined, 'Hosted doc', 'document', 'text');
    const meta = await sentTo('proxy.test:8080', 'GET', `/drive/v3/files/${doc}?fields=exportLinks`, auth());
    expect(Object.values(JSON.parse(meta.body).exportLinks as Record<string, string>)[0]).toMatch(/^http:\/\/proxy\.test:8080\/export-links\//);
  });
});

describe('drive emulator: token endpoint', () => {
  it('refreshes, refuses revoked tokens, and answers errors in the OAuth format', async () => {
    emu.addClient('c1', 's1');
    const rt = emu.issueRefreshToken('c1');
    const post = (form: Record<string, string>): Promise<Response> =>
      fetch(emu.tokenUrl, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
    const ok = await json(await post({ grant_type: 'refresh_token', client_id: 'c1', client_secret: 's1', refresh_token: rt }));
    expect(ok).toMatchObject({ token_type: 'Bearer', expires_in: 3600, access_token: expect.stringMatching(/^ya29\./) });
    emu.revokeRefreshToken(rt);
    const revoked = await post({ grant_type: 'refresh_token', client_id: 'c1', client_secret: 's1', refresh_token: rt });
    expect(revoked.status).toBe(400);
    expect(await json(revoked)).toEqual({ error: 'invalid_grant', error_description: 'Token has been expired or revoked.' });
    expect((await post({ grant_type: 'password' })).status).toBe(400);
  });
});
