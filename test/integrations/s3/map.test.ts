// Unit tests of the s3 mapping: keys ↔ paths (lossless), metadata xattr encoding v1, mtimes, escapes, error classification.
import { describe, expect, it } from 'vitest';
import { AuthError, NotFoundError, ServiceError } from '../../../shared/index.ts';
import { classify, decodeListedKey, errorFacts, isKmsRefusal } from '../../../integrations/s3/client.ts';
import {
  ancestorsBelow,
  escapesPrefix,
  formatMtime,
  guessContentType,
  keyToPath,
  markerToPath,
  metadataFromXattrNames,
  metadataToXattrs,
  parseMtime,
  pathToKey,
  prefixToPath,
  selfPath,
  taggingHeader,
  type ObjectMetadata,
} from '../../../integrations/s3/map.ts';
import { partSizeFor } from '../../../integrations/s3/upload.ts';

const AWKWARD = [
  'plain/key.txt',
  'a//double',
  'trailing/slash/',
  '/leading',
  'dots/./here',
  'dots/../there',
  '..',
  '.',
  'ctl\x01\x1f\x7fchars',
  'percent%20literal',
  'spaces and ≠ 日本',
  'x'.repeat(1000),
  '%_',
  '%self',
];

describe('s3 map: keys and paths', () => {
  it('every awkward key survives key → path → key and the path is clean', () => {
    for (const key of AWKWARD) {
      const path = keyToPath(key);
      expect(path.startsWith('/')).toBe(true);
      expect(path.split('/').slice(1).every((s) => s !== '' && s !== '.' && s !== '..'), path).toBe(true);
      expect(/[\x00-\x1f\x7f]/.test(path)).toBe(false);
      expect(pathToKey(path)).toBe(key);
      expect(pathToKey(selfPath(key))).toBe(key);
    }
  });

  it('a file that is also a directory lives at %self inside it', () => {
    expect(selfPath('a/b')).toBe('/a/b/%self');
    expect(keyToPath('a/b/c').startsWith('/a/b/')).toBe(true);
    expect(keyToPath('a/%self')).not.toBe(selfPath('a'));
  });

  it('markers, prefixes and ancestors', () => {
    expect(markerToPath('photos/2024/')).toBe('/photos/2024');
    expect(markerToPath('a//')).toBe('/a/%_');
    expect(pathToKey(markerToPath('a//')) + '/').toBe('a//');
    expect(prefixToPath('')).toBe('/');
    expect(prefixToPath('photos/')).toBe('/photos');
    expect(ancestorsBelow('/a/b/c/d', '/a')).toEqual(['/a/b', '/a/b/c']);
    expect(ancestorsBelow('/a/b', '/')).toEqual(['/a']);
    expect(ancestorsBelow('/a', '/')).toEqual([]);
  });

  it('keys climbing above the prefix are detected', () => {
    expect(escapesPrefix('../x')).toBe(true);
    expect(escapesPrefix('a/../../x')).toBe(true);
    expect(escapesPrefix('a/../b')).toBe(false);
    expect(escapesPrefix('a/..')).toBe(false);
    expect(escapesPrefix('./a')).toBe(false);
  });

  it('listed keys with EncodingType=url decode like Go url.QueryUnescape', () => {
    expect(decodeListedKey('p%2Fa%20b%2Bc%2525d', 'url')).toBe('p/a b+c%25d');
    expect(decodeListedKey('p/a+b', 'url')).toBe('p/a b');
    expect(decodeListedKey('p/ctl%01x', 'url')).toBe('p/ctl\x01x');
    expect(decodeListedKey('raw+key', undefined)).toBe('raw+key');
  });
});

describe('s3 map: metadata encoding v1', () => {
  const meta: ObjectMetadata = {
    system: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'max-age=60', expires: 'Wed, 21 Oct 2026 07:28:00 GMT' },
    info: { 'storage-class': 'STANDARD_IA', etag: 'abc-2' },
    user: { mtime: '1600000000.5', 'with.dot': 'a=b&c/d%e', empty: '' },
    tags: { team: 'ops', 'k=weird/key': 'v&w', 'ümlaut': '日本' },
  };

  it('names carry values and round-trip', () => {
    const attrs = metadataToXattrs(meta);
    const names = attrs.map((a) => a.name);
    expect(names).toContain('s3.v1.content-type=text%2Fplain%3B%20charset%3Dutf-8');
    expect(names).toContain('s3.v1.tag.team=ops');
    expect(names).toContain('s3.v1.meta.with.dot=a%3Db%26c%2Fd%25e');
    for (const n of names) expect(n).toMatch(/^s3\.v1\.[A-Za-z0-9._~*'()!%-]+=[A-Za-z0-9._~*'()!%-]*$/);
    expect(attrs.find((a) => a.name.startsWith('s3.v1.tag.team='))?.value).toBe('ops');
    const back = metadataFromXattrNames(names);
    expect(back.ignored).toEqual([]);
    expect(back.meta).toEqual({ ...meta, system: { ...meta.system } });
  });

  it('foreign and future names are ignored, markers flagged', () => {
    const { meta: m, ignored } = metadataFromXattrNames(['user.xdg.origin', 's3.v2.content-type=x', 's3.v1.future-field=1', 's3.v1.directory-marker=true', 's3.v1.meta.bad=%E0%A4%A']);
    expect(m.marker).toBe(true);
    expect(ignored).toEqual(['user.xdg.origin', 's3.v2.content-type=x', 's3.v1.future-field=1', 's3.v1.meta.bad=%E0%A4%A']);
  });

  it('tagging header, mtimes and content types', () => {
    expect(taggingHeader({})).toBeUndefined();
    expect(taggingHeader({ a: 'b c', 'k&': '=' })).toBe('a=b%20c&k%26=%3D');
    expect(formatMtime(new Date(1_600_000_000_500))).toBe('1600000000.500');
    expect(formatMtime(new Date(1_600_000_000_000))).toBe('1600000000');
    expect(parseMtime('1600000000.5')?.getTime()).toBe(1_600_000_000_500);
    expect(parseMtime('1600000000.123456789')?.getTime()).toBe(1_600_000_000_123);
    expect(parseMtime('2020-09-13T12:26:40Z')?.getTime()).toBe(1_600_000_000_000);
    expect(parseMtime('garbage')).toBeUndefined();
    expect(guessContentType('a/b/photo.JPG')).toBe('image/jpeg');
    expect(guessContentType('notes.txt')).toBe('text/plain; charset=utf-8');
    expect(guessContentType('.hidden')).toBe('application/octet-stream');
    expect(guessContentType('dir.d/noext')).toBe('application/octet-stream');
  });

  it('part size grows for huge known sizes only', () => {
    const MiB = 1024 * 1024;
    expect(partSizeFor(-1, 16 * MiB)).toBe(16 * MiB);
    expect(partSizeFor(100 * MiB, 16 * MiB)).toBe(16 * MiB);
    expect(partSizeFor(1024 * 1024 * MiB, 16 * MiB)).toBe(105 * MiB);
  });
});

describe('s3 client: error classification', () => {
  const s3err = (name: string, status: number, headers: Record<string, string> = {}) =>
    Object.assign(new Error('UnknownError'), { name, $metadata: { httpStatusCode: status }, $response: { statusCode: status, headers } });

  it('throttling, transient, fatal and permanent', () => {
    expect(classify(s3err('SlowDown', 503, { 'retry-after': '2' }))).toEqual({ kind: 'throttle', retryAfterMs: 2000 });
    expect(classify(s3err('Unknown', 429))).toMatchObject({ kind: 'throttle' });
    expect(classify(s3err('InternalError', 500))).toEqual({ kind: 'transient' });
    expect(classify(s3err('RequestTimeout', 400))).toEqual({ kind: 'transient' });
    expect(classify(s3err('Unknown', 502))).toEqual({ kind: 'transient' });
    expect(classify(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toEqual({ kind: 'transient' });
    expect(classify(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toEqual({ kind: 'transient' });
    expect(classify(s3err('TimeoutError', 0))).toEqual({ kind: 'transient' });
    for (const code of ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken']) expect(classify(s3err(code, 403))).toEqual({ kind: 'fatal' });
    expect(classify(new AuthError('x'))).toEqual({ kind: 'fatal' });
    expect(classify(s3err('NoSuchKey', 404))).toEqual({ kind: 'permanent' });
    expect(classify(s3err('NotImplemented', 501))).toEqual({ kind: 'permanent' });
    expect(classify(s3err('InvalidObjectState', 403))).toEqual({ kind: 'permanent' });
    expect(classify(new ServiceError('SlowDown', 'x', { cause: s3err('SlowDown', 503) }))).toMatchObject({ kind: 'throttle' });
    expect(classify(new NotFoundError('x'))).toEqual({ kind: 'permanent' });
    // A refused SSE-KMS key concerns that key, not the credentials: the object fails, the run goes on.
    const kms = (code: string, status: number, message: string) => Object.assign(s3err(code, status), { message });
    expect(classify(kms('InvalidAccessKeyId', 403, 'Failed to retrieve the actual key, kms-keyid: k1'))).toEqual({ kind: 'permanent' });
    expect(classify(kms('KMS.NotFoundException', 400, 'Invalid keyId k1'))).toEqual({ kind: 'permanent' });
    expect(classify(kms('AccessDenied', 403, 'User: arn:aws:iam::1:user/u is not authorized to perform: kms:GenerateDataKey on resource: k1'))).toEqual({
      kind: 'permanent',
    });
    expect(isKmsRefusal(errorFacts(kms('AccessDenied', 403, 'Access Denied')))).toBe(false);
  });

  it('codes of body-less answers come from the status', () => {
    expect(errorFacts(s3err('Unknown', 404)).code).toBe('NotFound');
    expect(errorFacts(s3err('Unknown', 403)).code).toBe('Forbidden');
    expect(errorFacts(s3err('UnknownError', 500)).code).toBe('HTTP500');
    expect(errorFacts(s3err('NoSuchBucket', 404)).code).toBe('NoSuchBucket');
  });
});
