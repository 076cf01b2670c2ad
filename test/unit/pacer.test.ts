// Unit tests of the pacer: retries with backoff, Retry-After, fatal/permanent classes, exhaustion messages, connection cap.
import { describe, expect, it } from 'vitest';
import { AuthError, FatalError, ServiceError } from '../../shared/errors.ts';
import { classifyHttpStatus, isTransientNetworkError, parseRetryAfter, type Classifier } from '../../shared/retry/classify.ts';
import { Pacer, RetriesExhaustedError } from '../../shared/retry/pacer.ts';

const fast = { minSleepMs: 1, maxSleepMs: 5, random: () => 0 };

function failing(times: number, err: unknown): { fn: () => Promise<string>; calls: () => number } {
  let calls = 0;
  return {
    fn: async () => {
      calls++;
      if (calls <= times) throw err;
      return 'ok';
    },
    calls: () => calls,
  };
}

describe('sdk retry: classification', () => {
  it('parses Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter('0.5')).toBe(500);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now)).toBe(10_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });

  it('classifies HTTP statuses and network errors', () => {
    expect(classifyHttpStatus(429, '2')).toEqual({ kind: 'throttle', retryAfterMs: 2000 });
    expect(classifyHttpStatus(503)).toEqual({ kind: 'throttle', retryAfterMs: undefined });
    expect(classifyHttpStatus(500)).toEqual({ kind: 'transient' });
    expect(classifyHttpStatus(404)).toEqual({ kind: 'permanent' });
    expect(classifyHttpStatus(200)).toBeUndefined();
    expect(isTransientNetworkError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isTransientNetworkError(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'ETIMEDOUT' }) }))).toBe(true);
    expect(isTransientNetworkError(new Error('NoSuchKey'))).toBe(false);
  });
});

describe('sdk retry: pacer', () => {
  it('retries transient failures and succeeds', async () => {
    const f = failing(3, Object.assign(new Error('reset'), { code: 'ECONNRESET' }));
    await expect(new Pacer(fast).call('GET x', f.fn)).resolves.toBe('ok');
    expect(f.calls()).toBe(4);
  });

  it('fails permanent errors at once', async () => {
    const err = Object.assign(new Error('not found'), { status: 404 });
    const f = failing(5, err);
    await expect(new Pacer(fast).call('GET x', f.fn)).rejects.toBe(err);
    expect(f.calls()).toBe(1);
  });

  it('says how many attempts, how long, and the last cause when retries run out', async () => {
    const f = failing(10, Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    const p = new Pacer({ ...fast, maxAttempts: 3 }).call('PUT s3://b/k', f.fn);
    await expect(p).rejects.toBeInstanceOf(RetriesExhaustedError);
    await expect(p).rejects.toThrow(/^PUT s3:\/\/b\/k: gave up after 3 attempts over \d+\.\ds: socket hang up$/);
    expect(f.calls()).toBe(3);
  });

  it('honours Retry-After on throttling', async () => {
    const classify: Classifier = () => ({ kind: 'throttle', retryAfterMs: 150 });
    const f = failing(1, new Error('SlowDown'));
    const t0 = Date.now();
    await new Pacer({ ...fast, classify }).call('x', f.fn);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it('refuses Retry-After waits longer than the limit', async () => {
    const classify: Classifier = () => ({ kind: 'throttle', retryAfterMs: 3_600_000 });
    await expect(new Pacer({ ...fast, classify, maxRetryAfterMs: 1000 }).call('x', failing(1, new Error('quota')).fn)).rejects.toThrow(
      /gave up after 1 attempts/,
    );
  });

  it('turns a fatal classification into a FatalError and never retries SDK errors', async () => {
    const fatal: Classifier = () => ({ kind: 'fatal' });
    await expect(new Pacer({ ...fast, classify: fatal }).call('login', failing(1, new Error('revoked')).fn)).rejects.toBeInstanceOf(FatalError);
    const auth = failing(5, new AuthError('denied'));
    await expect(new Pacer(fast).call('x', auth.fn)).rejects.toBeInstanceOf(AuthError);
    expect(auth.calls()).toBe(1);
    const svc = failing(1, new ServiceError('SlowDown', 'slow', { httpStatus: 503 }));
    await expect(new Pacer({ ...fast, classify: () => ({ kind: 'transient' }) }).call('x', svc.fn)).resolves.toBe('ok');
  });

  it('caps calls in flight', async () => {
    const pacer = new Pacer({ ...fast, connections: 2 });
    let active = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 8 }, () =>
        pacer.call('x', async () => {
          active++;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, 5));
          active--;
        }),
      ),
    );
    expect(peak).toBe(2);
  });

  it('stops waiting when aborted', async () => {
    const ac = new AbortController();
    const pacer = new Pacer({ minSleepMs: 10_000, maxSleepMs: 10_000, signal: ac.signal });
    const p = pacer.call('x', failing(5, Object.assign(new Error('reset'), { code: 'ECONNRESET' })).fn);
    setTimeout(() => ac.abort(new Error('stop')), 20);
    await expect(p).rejects.toThrow('stop');
  });
});
