// The suite-wide secret check itself: what it records, what it finds, and what it leaves alone.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isSecretKey, recordOutput, recordSecrets, SCAN_DIR_ENV } from '../harness/secret-scan.ts';
import { findLeaks } from './secret-reporter.ts';

describe('secret check: the scan behind every test run', () => {
  const saved = process.env[SCAN_DIR_ENV];
  afterEach(() => {
    process.env[SCAN_DIR_ENV] = saved;
  });

  it('finds a secret raw, URL-encoded, base64 and base64url, naming the key and place but never the value', () => {
    const secret = 'p@ss/w0rd+?-recognisable';
    const forms = [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url')];
    for (const form of forms) {
      const leaks = findLeaks([{ key: 'password', value: secret }], [{ where: 'the stderr of x', text: `a ${form} b` }], new Set());
      expect(leaks, form).toHaveLength(1);
      expect(leaks[0]).toMatch(/^the value of password \(24 characters\) appears .* in the stderr of x$/);
      expect(leaks[0]).not.toContain(secret);
    }
  });

  it('leaves ignored and absent values alone', () => {
    const texts = [{ where: 'out', text: 'Infinity constructor ***' }];
    expect(findLeaks([{ key: 'password', value: 'Infinity' }], texts, new Set(['Infinity']))).toEqual([]);
    expect(findLeaks([{ key: 'password', value: 'not-there-at-all' }], texts, new Set())).toEqual([]);
  });

  it('records the values of declared secret keys only, and executables’ output, into the run directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'secret-scan-'));
    try {
      process.env[SCAN_DIR_ENV] = dir;
      expect(isSecretKey('secret_access_key')).toBe(true);
      expect(isSecretKey('sse_customer_key')).toBe(true);
      expect(isSecretKey('service_account_key')).toBe(true);
      expect(isSecretKey('access_key')).toBe(false);
      recordSecrets({ location: 's3://h/b', access_key: 'AKIA-public-id', secret_access_key: 'sk-recorded-value', password: 'short' });
      recordOutput('the stderr of s3 (pid 1)', 'line\n');
      const files = readdirSync(dir).sort();
      const secrets = readFileSync(join(dir, files.find((f) => f.startsWith('secrets-')) as string), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown);
      expect(secrets).toEqual([{ key: 'secret_access_key', value: 'sk-recorded-value' }]);
      expect(readFileSync(join(dir, files.find((f) => f.startsWith('output-')) as string), 'utf8')).toBe('the stderr of s3 (pid 1)\nline\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
