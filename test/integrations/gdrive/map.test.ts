// Unit tests of the gdrive integration's pure parts: names, encoding, export choice, locations, classification, chunking.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { NATIVE } from '../../../integrations/gdrive/api.ts';
import { classify, DriveError, driveAnswer, normalizeError, quoteQuery, sanitize } from '../../../integrations/gdrive/client.ts';
import { byId, disambiguated, exportChoice, exportedName, kindOf, nameOf, relativeLink, segmentOf, SiblingNames } from '../../../integrations/gdrive/map.ts';
import { parseLocation } from '../../../integrations/gdrive/options.ts';
import { serviceAccountAssertion } from '../../../integrations/gdrive/oauth.ts';
import { ChunkReader } from '../../../integrations/gdrive/upload.ts';
import { QuotaError } from '../../../shared/index.ts';
import { generateKeyPairSync, verify } from 'node:crypto';

describe('gdrive map: names', () => {
  it('disambiguates with the id before the extension of files, after the name of folders', () => {
    expect(disambiguated('report.pdf', '1AbC', false)).toBe('report (1AbC).pdf');
    expect(disambiguated('archive.tar.gz', '1AbC', false)).toBe('archive.tar (1AbC).gz');
    expect(disambiguated('v1.2', '1AbC', true)).toBe('v1.2 (1AbC)');
    expect(disambiguated('.hidden', '1AbC', false)).toBe('.hidden (1AbC)');
    expect(disambiguated('Notes. final draft', '1AbC', false)).toBe('Notes. final draft (1AbC)');
    expect(disambiguated('noext', '1AbC', false)).toBe('noext (1AbC)');
  });

  it('gives the first claimant the plain name, per folder, and never the same name twice', () => {
    const n = new SiblingNames();
    expect(n.claim('p', 'a.txt', 'id1', false)).toBe('a.txt');
    expect(n.claim('p', 'a.txt', 'id2', false)).toBe('a (id2).txt');
    expect(n.claim('q', 'a.txt', 'id3', false)).toBe('a.txt');
    expect(n.claim('p', 'a (id4).txt', 'id4', false)).toBe('a (id4).txt');
    expect(n.claim('p', 'a.txt', 'id4', false)).toBe('a (id4-2).txt');
    expect(byId([{ id: 'b' }, { id: 'a' }, { id: 'c' }]).map((x) => x.id)).toEqual(['a', 'b', 'c']);
  });

  it('encodes only what a path segment cannot hold, reversibly', () => {
    const cases: Array<[string, string]> = [
      ['plain.txt', 'plain.txt'],
      ['percent%20name.txt', 'percent%20name.txt'],
      ['a/b', 'a%2Fb'],
      ['a%2Fb', 'a%252Fb'],
      ['100%', '100%'],
      ['%25', '%2525'],
      ['tab\t', 'tab%09'],
      ['del\x7f', 'del%7F'],
      ['.', '%2E'],
      ['..', '%2E%2E'],
      ['', '%_'],
      ['日本語', '日本語'],
    ];
    for (const [name, seg] of cases) {
      expect(segmentOf(name), name).toBe(seg);
      expect(nameOf(seg), seg).toBe(name);
    }
    for (let i = 0; i < 500; i++) {
      const alphabet = ['a', '%', '2', 'F', '5', '/', '\n', '.', '0', 'é', '7f', '1'];
      const name = Array.from({ length: 1 + (i % 9) }, (_, j) => alphabet[(i * 7 + j * 13) % alphabet.length]).join('');
      expect(nameOf(segmentOf(name)), JSON.stringify(name)).toBe(name);
      expect(segmentOf(name).includes('/')).toBe(false);
    }
  });

  it('makes relative link texts between snapshot paths', () => {
    expect(relativeLink('/a/B/link', '/a/A/f.txt')).toBe('../A/f.txt');
    expect(relativeLink('/a/link', '/a/f.txt')).toBe('f.txt');
    expect(relativeLink('/a/B/link', '/a/B')).toBe('.');
    expect(relativeLink('/x/y/z/link', '/q')).toBe('../../../q');
  });

  it('picks the first export format each native type offers', () => {
    const c = exportChoice(['pdf', 'docx', 'xlsx']);
    expect(c.get(NATIVE.document)?.ext).toBe('pdf');
    expect(c.get(NATIVE.spreadsheet)?.ext).toBe('pdf');
    expect(exportChoice(['docx', 'xlsx']).get(NATIVE.presentation)).toBeUndefined();
    expect(kindOf(NATIVE.presentation, exportChoice(['docx']))).toBe('unexportable');
    expect(kindOf('application/vnd.google-apps.form', exportChoice(['docx', 'pdf']))).toBe('unexportable');
    expect(kindOf('text/plain', c)).toBe('file');
    expect(exportedName('Budget', c.get(NATIVE.spreadsheet) as never)).toBe('Budget.pdf');
  });
});

describe('gdrive options: locations', () => {
  it('parses gdrive://[/path] with encoded names', () => {
    expect(parseLocation('gdrive://', 'gdrive')).toEqual({ segments: [], path: '/' });
    expect(parseLocation('gdrive:///', 'gdrive')).toEqual({ segments: [], path: '/' });
    expect(parseLocation('gdrive:///Backups/laptop', 'gdrive')).toEqual({ segments: ['Backups', 'laptop'], path: '/Backups/laptop' });
    expect(parseLocation('gdrive://Backups//x/', 'gdrive')).toEqual({ segments: ['Backups', 'x'], path: '/Backups/x' });
    expect(parseLocation('gdrive:///a%2Fb/100%25 done', 'gdrive')).toEqual({ segments: ['a/b', '100% done'], path: '/a%2Fb/100% done' });
    expect(() => parseLocation('gdrive:///a/../b', 'gdrive')).toThrow('option location: expected a path without "." or ".." segments');
  });
});

describe('gdrive client: errors and classification', () => {
  const gaxiosError = (status: number, body: unknown, headers: Record<string, string> = {}): unknown =>
    Object.assign(new Error('Request failed'), { status, response: { status, data: body, headers: new Headers(headers) } });

  it('refuses answers that are not Drive API objects (HTML, empty, foreign JSON) with a message naming the call', () => {
    expect(driveAnswer<{ id: string }>({ id: 'x' }, 'look up My Drive', 'id').id).toBe('x');
    expect(driveAnswer({}, 'list')).toEqual({});
    expect(() => driveAnswer('<html>hi</html>', 'look up My Drive', 'id')).toThrow('look up My Drive: the answer is not a Google Drive API answer (text that is not JSON); check api_url');
    expect(() => driveAnswer('', 'sign in to Google Drive')).toThrow('sign in to Google Drive: the answer is not a Google Drive API answer (an empty body); check api_url');
    expect(() => driveAnswer({ value: [] }, 'look up My Drive', 'id')).toThrow('(an object without id)');
    expect(() => driveAnswer([1], 'list')).toThrow('(an array)');
  });

  it('reads Google error bodies, including the stream form where gaxios keeps the body in the message', async () => {
    const e = (await normalizeError(gaxiosError(403, { error: { code: 403, message: 'User Rate Limit Exceeded', errors: [{ reason: 'userRateLimitExceeded', domain: 'usageLimits' }] } }, { 'retry-after': '7' }))) as DriveError;
    expect(e).toBeInstanceOf(DriveError);
    expect(e.message).toBe('403 userRateLimitExceeded: User Rate Limit Exceeded');
    expect(e.retryAfterMs).toBe(7000);
    const streamed = (await normalizeError(Object.assign(new Error('{"error":{"code":404,"message":"File not found: x.","errors":[{"reason":"notFound"}]}}'), { status: 404, response: { status: 404, data: undefined } }))) as DriveError;
    expect(streamed.message).toBe('404 notFound: File not found: x.');
    const html = (await normalizeError(gaxiosError(502, '<html><body><h1>Bad Gateway</h1></body></html>'))) as DriveError;
    expect(html.message).toBe('502 http502: Bad Gateway');
    const quota = await normalizeError(gaxiosError(403, { error: { message: "The user's Drive storage quota has been exceeded.", errors: [{ reason: 'storageQuotaExceeded' }] } }));
    expect(quota).toBeInstanceOf(QuotaError);
  });

  it('classifies throttling, server errors, auth and permanent failures', () => {
    const c = (status: number, reason: string, retryAfterMs?: number): string => {
      const r = classify(new DriveError(status, reason, 'x', { retryAfterMs }));
      return r.kind === 'throttle' ? `throttle:${r.retryAfterMs ?? '-'}` : r.kind;
    };
    expect(c(403, 'userRateLimitExceeded')).toBe('throttle:-');
    expect(c(403, 'rateLimitExceeded', 2000)).toBe('throttle:2000');
    expect(c(429, 'rateLimitExceeded')).toBe('throttle:-');
    expect(c(503, 'backendError')).toBe('throttle:-');
    expect(c(500, 'internalError')).toBe('transient');
    expect(c(502, 'http502')).toBe('transient');
    expect(c(401, 'authError')).toBe('transient');
    expect(c(403, 'insufficientFilePermissions')).toBe('permanent');
    expect(c(404, 'notFound')).toBe('permanent');
    expect(classify(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })).kind).toBe('transient');
    expect(classify(new Error('boom')).kind).toBe('permanent');
  });

  it('removes upload credentials from messages and quotes query values', () => {
    expect(sanitize('request to https://www.googleapis.com/upload/drive/v3/files?uploadType=resumable&upload_id=SECRET failed')).toBe(
      'request to https://www.googleapis.com/upload/drive/v3/files?… failed',
    );
    expect(quoteQuery("it's a \\ test")).toBe("'it\\'s a \\\\ test'");
  });
});

describe('gdrive oauth: service account assertion', () => {
  it('is an RS256 JWT with the claims Google expects', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwt = serviceAccountAssertion({ kind: 'service', email: 'sa@p.iam.gserviceaccount.com', privateKey, keyId: 'k1', subject: 'bob@example.com' }, 'https://oauth2.googleapis.com/token', 'scope-x', 1_700_000_000_000);
    const [h, c, sig] = jwt.split('.') as [string, string, string];
    expect(JSON.parse(Buffer.from(h, 'base64url').toString())).toEqual({ alg: 'RS256', typ: 'JWT', kid: 'k1' });
    expect(JSON.parse(Buffer.from(c, 'base64url').toString())).toEqual({
      iss: 'sa@p.iam.gserviceaccount.com',
      scope: 'scope-x',
      aud: 'https://oauth2.googleapis.com/token',
      iat: 1_700_000_000,
      exp: 1_700_003_600,
      sub: 'bob@example.com',
    });
    expect(verify('RSA-SHA256', Buffer.from(`${h}.${c}`), publicKey, Buffer.from(sig, 'base64url'))).toBe(true);
  });
});

describe('gdrive upload: chunk reader', () => {
  it('returns exact chunks and knows the last one before it is sent', async () => {
    const pieces = [Buffer.alloc(100, 1), Buffer.alloc(250, 2), Buffer.alloc(50, 3)];
    const r = new ChunkReader(Readable.from(pieces));
    const a = await r.read(200);
    expect(a.length).toBe(200);
    expect(r.done).toBe(false);
    const b = await r.read(200);
    expect(b.length).toBe(200);
    expect(r.done).toBe(true);
    expect(Buffer.concat([a, b]).equals(Buffer.concat(pieces))).toBe(true);
    const f = new ChunkReader(Readable.from(pieces));
    const buf = Buffer.alloc(300);
    expect(await f.fill(buf, 0)).toBe(300);
    expect(f.done).toBe(false);
    expect(buf.equals(Buffer.concat(pieces).subarray(0, 300))).toBe(true);
    expect(await f.fill(buf, 0)).toBe(100);
    expect(f.done).toBe(true);
    expect(buf.subarray(0, 100).equals(Buffer.concat(pieces).subarray(300))).toBe(true);
    const empty = new ChunkReader(Readable.from([]));
    expect((await empty.read(10)).length).toBe(0);
    expect(empty.done).toBe(true);
  });
});
