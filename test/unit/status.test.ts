// Unit tests of error → gRPC status mapping: exact texts, one prefix, redaction, and no CANCELLED/UNAVAILABLE.
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { AuthError, ConfigError, FatalError, ItemError, KlosetError, NotFoundError, QuotaError, ServiceError } from '../../shared/errors.ts';
import { toStatus } from '../../shared/protocol/status.ts';
import { redactor } from '../../shared/redact.ts';

describe('sdk errors: status and text', () => {
  it.each([
    [new ConfigError([{ key: 'port', message: 'expected a whole number, got "x"' }]), status.INVALID_ARGUMENT, 's3 storage: option port: expected a whole number, got "x"'],
    [new AuthError('cannot open bucket "b": access denied (hint: check access_key)'), status.UNAUTHENTICATED, 's3 storage: cannot open bucket "b": access denied (hint: check access_key)'],
    [new AuthError('read-only', { denied: true }), status.PERMISSION_DENIED, 's3 storage: read-only'],
    [new NotFoundError('no repository at s3://h/b'), status.NOT_FOUND, 's3 storage: no repository at s3://h/b'],
    [new QuotaError('bucket quota exceeded'), status.RESOURCE_EXHAUSTED, 's3 storage: bucket quota exceeded'],
    [new ServiceError('SlowDown', 'put packfile ab12: SlowDown: please reduce your request rate'), status.UNKNOWN, 's3 storage: put packfile ab12: SlowDown: please reduce your request rate'],
    [new ItemError('/a/b', new Error('NoSuchKey')), status.UNKNOWN, 's3 storage: NoSuchKey'],
    [new FatalError('token revoked'), status.UNKNOWN, 's3 storage: token revoked'],
    [new TypeError("Cannot read properties of undefined (reading 'x')"), status.INTERNAL, "internal error in s3 storage: Cannot read properties of undefined (reading 'x')"],
  ])('maps %s', (err, code, text) => {
    const s = toStatus(err, 's3 storage');
    expect(s.code).toBe(code);
    expect(s.details).toBe(text);
  });

  it('never adds the prefix twice', () => {
    expect(toStatus(new NotFoundError('s3 storage: gone'), 's3 storage').details).toBe('s3 storage: gone');
  });

  it('never uses CANCELLED or UNAVAILABLE', () => {
    expect(toStatus(new KlosetError('x', status.CANCELLED), 'a b').code).toBe(status.UNKNOWN);
    expect(toStatus(new FatalError('x', { code: status.UNAVAILABLE }), 'a b').code).toBe(status.UNKNOWN);
  });

  it('redacts secrets from messages', () => {
    redactor.add('s3cr3t-value-123');
    expect(toStatus(new Error('bad key s3cr3t-value-123'), 'a b').details).toBe('internal error in a b: bad key ***');
  });

  it('keeps multi-line causes on one line without Error: prefixes', () => {
    expect(toStatus(new NotFoundError('Error: first\n  second'), 'x y').details).toBe('x y: first second');
  });
});
