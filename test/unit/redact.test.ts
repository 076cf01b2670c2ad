// Unit tests of redaction: declared secrets in every encoding, and token shapes in headers, URLs and JSON.
import { describe, expect, it } from 'vitest';
import { Redactor } from '../../shared/redact.ts';

describe('sdk redact', () => {
  it('removes a secret in raw, URL-encoded and base64 forms', () => {
    const r = new Redactor();
    const secret = 'p@ss/w0rd+=?';
    r.add(secret);
    const text = `raw ${secret} url ${encodeURIComponent(secret)} b64 ${Buffer.from(secret).toString('base64')} b64url ${Buffer.from(secret).toString('base64url')}`;
    const out = r.redact(text);
    expect(out).toBe('raw *** url *** b64 *** b64url ***');
  });

  it('ignores values too short to be secrets', () => {
    const r = new Redactor();
    r.add('ab');
    expect(r.redact('ab cab')).toBe('ab cab');
  });

  it.each([
    ['Authorization: Bearer abcdefghijkl', 'Authorization: ***'],
    ['authorization=Basic dXNlcjpwYXNzd29yZA==', 'authorization=***'],
    ['imap://alice:alicepw@127.0.0.1:143/INBOX', 'imap://alice:***@127.0.0.1:143/INBOX'],
    ['GET /b/k?X-Amz-Signature=deadbeef&X-Amz-Date=1', 'GET /b/k?X-Amz-Signature=***&X-Amz-Date=1'],
    ['https://x/cb?code=4/0Abc&state=1', 'https://x/cb?code=***&state=1'],
    ['{"access_token":"ya29.secret","expires_in":3599}', '{"access_token":"***","expires_in":3599}'],
    ['{"refresh_token": "1//0g-secret"}', '{"refresh_token": "***"}'],
    ['x-amz-security-token: FQoGZXIvYXdzE', 'x-amz-security-token: ***'],
  ])('scrubs %j', (input, output) => expect(new Redactor().redact(input)).toBe(output));
});
