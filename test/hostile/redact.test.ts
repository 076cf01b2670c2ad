// Hostile secrets: huge, unpaired surrogates, nested forms. Redaction must never throw (it runs on every error status).
import { describe, expect, it } from 'vitest';
import { Redactor } from '../../shared/redact.ts';

describe('hostile input: redaction of strange secrets', () => {
  it('redacts a 300 KB secret without "Regular expression too large"', () => {
    const r = new Redactor();
    const huge = 'A001 '.repeat(60_000);
    r.add(huge);
    for (let i = 0; i < 50; i++) r.add(`another-secret-${i}-${'x'.repeat(i * 1000)}`);
    expect(r.redact(`before ${huge} after`)).toBe('before *** after');
    expect(r.redact(`b64 ${Buffer.from(huge).toString('base64')}`)).toBe('b64 ***');
  });

  it('accepts a secret holding an unpaired surrogate (encodeURIComponent throws on it)', () => {
    const r = new Redactor();
    expect(() => r.add('pass\ud800word')).not.toThrow();
    expect(r.redact('x pass\ud800word y')).toBe('x *** y');
  });

  it('redacts a longer secret whole when a shorter one is inside it', () => {
    const r = new Redactor();
    r.add('inner-secret');
    r.add('outer-inner-secret-outer');
    expect(r.redact('[outer-inner-secret-outer] [inner-secret]')).toBe('[***] [***]');
  });

  it('treats regular-expression characters in secrets literally', () => {
    const r = new Redactor();
    r.add('a.*b(c)|$1');
    expect(r.redact('xa.*b(c)|$1y aXXb')).toBe('x***y aXXb');
  });
});
