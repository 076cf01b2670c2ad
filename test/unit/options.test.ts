// Unit tests of option declarations: parsing, validation messages naming the key, defaults, aliases, unknown keys.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors.ts';
import { opt } from '../../shared/options/builders.ts';
import { parseConfig } from '../../shared/options/parse.ts';
import { renderSchema } from '../../shared/options/schema.ts';
import { formatDuration, formatSize, parseDuration, parseSize } from '../../shared/options/units.ts';
import { redactor } from '../../shared/redact.ts';

const specs = [
  opt.string('access_key', { help: 'Access key id.', required: true }),
  opt.string('secret_access_key', { help: 'Secret key.', required: true, secret: true }),
  opt.bool('use_tls', { help: 'Use HTTPS.', default: true }),
  opt.int('port', { help: 'TCP port.', min: 1, max: 65535 }),
  opt.size('part_size', { help: 'Part size.', default: 16 * 1024 * 1024, min: 5 * 1024 * 1024, multipleOf: 1024 }),
  opt.duration('io_timeout', { help: 'Timeout.', default: 30_000 }),
  opt.enum('storage_class', ['STANDARD', 'GLACIER'] as const, { help: 'Class.', default: 'STANDARD' }),
  opt.list('include', { help: 'Patterns.', default: [] }),
  opt.url('token_url', { help: 'Token endpoint.', schemes: ['https', 'http'] }),
  opt.string('region', { help: 'Region.', deprecatedAlias: ['aws_region'] }),
] as const;

function problemsOf(config: Record<string, string>): string[] {
  try {
    parseConfig(specs, config);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.key}: ${p.message}`);
  }
  return [];
}

describe('sdk options: parsing', () => {
  it('parses every kind into typed camelCase values with defaults', () => {
    const v = parseConfig(specs, {
      location: 's3://h/b',
      access_key: 'AK',
      secret_access_key: 'SK-123456',
      use_tls: 'FALSE',
      port: '9000',
      part_size: '32MiB',
      io_timeout: '1m30s',
      storage_class: 'glacier',
      include: ' a, b ,,c ',
      token_url: 'http://127.0.0.1:1/token',
    });
    expect(v).toEqual({
      location: 's3://h/b',
      accessKey: 'AK',
      secretAccessKey: 'SK-123456',
      useTls: false,
      port: 9000,
      partSize: 32 * 1024 * 1024,
      ioTimeout: 90_000,
      storageClass: 'GLACIER',
      include: ['a', 'b', 'c'],
      tokenUrl: 'http://127.0.0.1:1/token',
    });
    const typed: { useTls: boolean; port: number | undefined; storageClass: 'STANDARD' | 'GLACIER' } = v;
    expect(typed.useTls).toBe(false);
  });

  it('treats an empty value as unset and applies the default', () => {
    const v = parseConfig(specs, { location: 'x://', access_key: 'a', secret_access_key: 'bbbb', use_tls: '', port: '' });
    expect(v.useTls).toBe(true);
    expect(v.port).toBeUndefined();
  });

  it('accepts deprecated aliases under the new name', () => {
    const v = parseConfig(specs, { location: 'x://', access_key: 'a', secret_access_key: 'bbbb', aws_region: 'eu-west-3' });
    expect(v.region).toBe('eu-west-3');
  });

  it('lists every problem at once, each naming its key and what was expected', () => {
    const problems = problemsOf({
      location: 's3://h/b',
      use_tls: 'maybe',
      port: '70000',
      part_size: '1MiB',
      io_timeout: 'soon',
      storage_class: 'COLD',
      token_url: 'not a url',
      acces_key: 'typo',
    });
    expect(problems).toEqual([
      'use_tls: expected true or false, got "maybe"',
      'port: expected a whole number at most 65535, got "70000"',
      'part_size: expected a size at least 5MiB, got "1MiB"',
      'io_timeout: expected a duration such as 30s, 5m or 1h30m, got "soon"',
      'storage_class: expected one of STANDARD, GLACIER, got "COLD"',
      'token_url: expected an absolute URL such as https://host/path, got "not a url"',
      'acces_key: unknown option (did you mean access_key?); known options: access_key, secret_access_key, use_tls, port, part_size, io_timeout, storage_class, include, token_url, region',
      'access_key: is required (Access key id)',
      'secret_access_key: is required (Secret key)',
    ]);
  });

  it('requires location', () => {
    expect(problemsOf({ access_key: 'a', secret_access_key: 'bbbb' })).toEqual(['location: is required']);
  });

  it('never echoes a secret value in a problem and registers it for redaction', () => {
    const secretSpecs = [opt.int('pin_password', { help: 'A numeric secret.', secret: true })] as const;
    let message = '';
    try {
      parseConfig(secretSpecs, { location: 'x://', pin_password: 'hunter2-not-a-number' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe('option pin_password: expected a whole number');
    expect(redactor.redact('leak hunter2-not-a-number here')).toBe('leak *** here');
  });

  it('accepts keys of sibling connectors and host keys silently', () => {
    const v = parseConfig(specs, { location: 'x://', access_key: 'a', secret_access_key: 'bbbb', passphrase: 'p', other_kind_key: '1' }, { siblingKeys: ['other_kind_key'] });
    expect(v.accessKey).toBe('a');
  });

  it('rejects a key given twice through an alias', () => {
    expect(problemsOf({ location: 'x://', access_key: 'a', secret_access_key: 'bbbb', region: 'a', aws_region: 'b' })).toEqual([
      'aws_region: given twice (also as region or one of its aliases)',
    ]);
  });

  it('checks multiples', () => {
    expect(problemsOf({ location: 'x://', access_key: 'a', secret_access_key: 'bbbb', part_size: '5242881' })).toEqual([
      'part_size: expected a multiple of 1KiB, got "5242881"',
    ]);
  });
});

describe('sdk options: units', () => {
  it.each([
    ['0', 0],
    ['1024', 1024],
    ['16MiB', 16 * 1024 ** 2],
    ['16M', 16 * 1024 ** 2],
    ['512k', 512 * 1024],
    ['1.5G', 1.5 * 1024 ** 3],
    ['10MB', 10_000_000],
    ['1 GiB', 1024 ** 3],
  ])('parses size %s', (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(['', 'abc', '-1', '1XB', '1e9'])('rejects size %j', (text) => expect(parseSize(text)).toBeUndefined());

  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['2', 2000],
    ['1d', 86_400_000],
  ])('parses duration %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', 's', '5x', '1h 30m', '-5s'])('rejects duration %j', (text) => expect(parseDuration(text)).toBeUndefined());

  it('formats what it parses', () => {
    for (const n of [0, 1, 1024, 16 * 1024 ** 2, 3 * 1024 ** 3 + 1]) expect(parseSize(formatSize(n))).toBe(n);
    for (const ms of [0, 500, 30_000, 5_400_000, 90_500]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});

describe('sdk options: schema', () => {
  it('renders a draft 2020-12 schema with required keys, secrets write-only and no default for secrets', () => {
    const schema = renderSchema('s3 storage', specs, 's3://host/bucket', '^s3://');
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.required).toEqual(['location', 'access_key', 'secret_access_key']);
    const props = schema.properties as Record<string, Record<string, unknown>>;
    expect(props.secret_access_key).toMatchObject({ writeOnly: true, type: 'string' });
    expect(props.use_tls).toMatchObject({ default: true });
    expect(props.storage_class).toMatchObject({ enum: ['STANDARD', 'GLACIER'], default: 'STANDARD' });
    expect(props.part_size).toMatchObject({ default: '16MiB' });
    expect(props.aws_region).toMatchObject({ deprecated: true });
    expect(props.location).toMatchObject({ pattern: '^s3://' });
    expect(schema.additionalProperties).toBe(false);
  });
});
