// Unit tests of the s3 options: every location form of the official integration, root/port/endpoint rules, combinations.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../shared/index.ts';
import { parseConfig } from '../../../shared/options/parse.ts';
import { checkCombinations, exporterOptions, importerOptions, parseLocation, regionFromHost, storageOptions } from '../../../integrations/s3/options.ts';

function loc(config: Record<string, string>, env: NodeJS.ProcessEnv = {}) {
  const o = parseConfig(storageOptions, { access_key: 'AK', secret_access_key: 'SK', ...config });
  return parseLocation(o, 's3', env);
}

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('s3 options: location forms', () => {
  it('path style with a port and a prefix', () => {
    expect(loc({ location: 's3://127.0.0.1:9000/bucket/some/prefix' })).toEqual({
      host: '127.0.0.1:9000',
      bucket: 'bucket',
      prefix: 'some/prefix/',
      useTls: true,
      forcePathStyle: true,
      endpointUrl: 'https://127.0.0.1:9000',
      region: 'us-east-1',
      display: 's3://127.0.0.1:9000/bucket/some/prefix',
    });
  });

  it('path style without a prefix, plain HTTP', () => {
    const l = loc({ location: 's3://minio.lan:9000/bucket', use_tls: 'false' });
    expect([l.host, l.bucket, l.prefix, l.endpointUrl]).toEqual(['minio.lan:9000', 'bucket', '', 'http://minio.lan:9000']);
    expect(loc({ location: 's3://minio.lan:9000/bucket/' }).prefix).toBe('');
  });

  it('port is added when the location has none, and ignored when it has one', () => {
    expect(loc({ location: 's3://minio.lan/bucket', port: '9000' }).host).toBe('minio.lan:9000');
    expect(loc({ location: 's3://minio.lan:8000/bucket', port: '9000' }).host).toBe('minio.lan:8000');
  });

  it('virtual host: the bucket is the host minus .endpoint', () => {
    const l = loc({ location: 's3://my-bucket.s3.fr-par.scw.cloud/plakar/x', virtual_host: 'true', endpoint: 's3.fr-par.scw.cloud' });
    expect([l.host, l.bucket, l.prefix, l.forcePathStyle]).toEqual(['s3.fr-par.scw.cloud', 'my-bucket', 'plakar/x/', false]);
    const dotted = loc({ location: 's3://my.dotted.bucket.minio.lan/', virtual_host: 'true', endpoint: 'https://minio.lan/' });
    expect([dotted.bucket, dotted.host, dotted.prefix]).toEqual(['my.dotted.bucket', 'minio.lan', '']);
  });

  it('virtual host needs an endpoint the host ends with', () => {
    expect(configError(() => loc({ location: 's3://bucket.example.com/x', virtual_host: 'true' }))).toMatch(/option endpoint: is required with virtual_host=true/);
    expect(configError(() => loc({ location: 's3://bucket.example.com/x', virtual_host: 'true', endpoint: 'other.net' }))).toMatch(
      /option location: with virtual_host=true the host must be BUCKET\.other\.net/,
    );
  });

  it('virtual host: root carries the prefix and must agree with the location path', () => {
    expect(loc({ location: 's3://b.e.com', virtual_host: 'true', endpoint: 'e.com', root: '/from-root' }).prefix).toBe('from-root/');
    expect(configError(() => loc({ location: 's3://b.e.com/one', virtual_host: 'true', endpoint: 'e.com', root: '/two' }))).toMatch(/option root: conflicts/);
  });

  it('short bucket: a host that is not the endpoint is the bucket', () => {
    const l = loc({ location: 's3://my-bucket/prefix', endpoint: 's3.example.com' });
    expect([l.host, l.bucket, l.prefix, l.forcePathStyle]).toEqual(['s3.example.com', 'my-bucket', 'prefix/', true]);
    expect(loc({ location: 's3://my-bucket', endpoint: 'minio.lan:9000' })).toMatchObject({ host: 'minio.lan:9000', bucket: 'my-bucket', prefix: '' });
    // A location whose host is the endpoint stays path style.
    expect(loc({ location: 's3://s3.example.com/b/p', endpoint: 's3.example.com' })).toMatchObject({ host: 's3.example.com', bucket: 'b', prefix: 'p/' });
    expect(loc({ location: 's3://minio.lan/b', endpoint: 'minio.lan:9000' })).toMatchObject({ host: 'minio.lan:9000', bucket: 'b' });
    // port applies to the endpoint, not to the bucket name.
    expect(loc({ location: 's3://bkt/p', endpoint: 'minio.lan', port: '9000' })).toMatchObject({ host: 'minio.lan:9000', bucket: 'bkt', prefix: 'p/' });
  });

  it('an endpoint scheme decides TLS unless use_tls says otherwise', () => {
    expect(loc({ location: 's3://b/p', endpoint: 'http://minio.lan:9000' }).endpointUrl).toBe('http://minio.lan:9000');
    expect(loc({ location: 's3://b/p', endpoint: 'https://minio.lan' }).useTls).toBe(true);
    expect(configError(() => loc({ location: 's3://b/p', endpoint: 'http://minio.lan', use_tls: 'true' }))).toMatch(
      /option endpoint: its http:\/\/ scheme contradicts use_tls=true/,
    );
  });

  it('root as /bucket/prefix (first segment is the bucket, or no bucket in the location)', () => {
    expect(loc({ location: 's3://host:9000/bucket/ignored', root: '/bucket/from/root' })).toMatchObject({ bucket: 'bucket', prefix: 'from/root/' });
    expect(loc({ location: 's3://host:9000', root: '/other-bucket/p' })).toMatchObject({ bucket: 'other-bucket', prefix: 'p/' });
    expect(loc({ location: 's3://host:9000/', root: '/other-bucket' })).toMatchObject({ bucket: 'other-bucket', prefix: '' });
  });

  it('root as a prefix inside the location bucket, conflicting prefixes refused', () => {
    expect(loc({ location: 's3://host/bucket', root: '/inner/prefix' })).toMatchObject({ bucket: 'bucket', prefix: 'inner/prefix/' });
    expect(loc({ location: 's3://host/bucket/inner/prefix', root: '/inner/prefix' })).toMatchObject({ bucket: 'bucket', prefix: 'inner/prefix/' });
    expect(configError(() => loc({ location: 's3://host/bucket/a', root: '/b' }))).toMatch(/option root: the location path "\/bucket\/a" conflicts with root "\/b"/);
  });

  it('percent-encoded location paths are decoded', () => {
    expect(loc({ location: 's3://host/bucket/with%20space/x' }).prefix).toBe('with space/x/');
  });

  it('malformed locations name the key and the expected forms', () => {
    expect(configError(() => loc({ location: 'http://host/bucket' }))).toMatch(/option location: expected s3:\/\/HOST\[:PORT\]\/BUCKET/);
    expect(configError(() => loc({ location: 's3://host' }))).toMatch(/the bucket is missing/);
    expect(configError(() => loc({ location: 's3:///bucket' }))).toMatch(/the host is missing/);
    expect(configError(() => loc({ location: 's3://user:pw@host/bucket' }))).toMatch(/credentials do not belong in the location/);
  });

  it('AWS hosts: region from the host name and virtual-host requests for DNS-safe buckets', () => {
    const l = loc({ location: 's3://s3.eu-west-3.amazonaws.com/my-bucket/x' });
    expect([l.region, l.forcePathStyle]).toEqual(['eu-west-3', false]);
    expect(loc({ location: 's3://s3.amazonaws.com/My_Bucket' }).forcePathStyle).toBe(true);
    expect(loc({ location: 's3://s3.amazonaws.com/b.with.dots' }).forcePathStyle).toBe(true);
    expect(regionFromHost('bucket.s3-us-west-2.amazonaws.com')).toBe('us-west-2');
    expect(regionFromHost('s3.dualstack.ap-southeast-1.amazonaws.com')).toBe('ap-southeast-1');
    expect(regionFromHost('minio.lan:9000')).toBeUndefined();
  });

  it('region: option, then host, then AWS_REGION, then us-east-1', () => {
    expect(loc({ location: 's3://s3.eu-west-3.amazonaws.com/b', region: 'eu-central-1' }).region).toBe('eu-central-1');
    expect(loc({ location: 's3://minio/b' }, { AWS_REGION: 'garage' }).region).toBe('garage');
    expect(loc({ location: 's3://minio/b' }).region).toBe('us-east-1');
  });
});

describe('s3 options: parsing and combinations', () => {
  it('official keys parse as strings from the host', () => {
    const o = parseConfig(storageOptions, {
      location: 's3://h/b',
      access_key: 'AK',
      secret_access_key: 'SK',
      use_tls: 'true',
      tls_insecure_no_verify: 'false',
      virtual_host: 'false',
      storage_class: 'standard_ia',
      sse_customer_key: Buffer.alloc(32, 1).toString('base64'),
    });
    expect(o.storageClass).toBe('STANDARD_IA');
    expect(o.partSize).toBe(8 * 1024 * 1024);
    expect(o.uploadConcurrency).toBe(4);
    expect(o.requestChecksum).toBe('when_required');
    expect(o.maxRetries).toBe(10);
  });

  it('a bad sse_customer_key is refused without echoing it', () => {
    const msg = configError(() => parseConfig(storageOptions, { location: 's3://h/b', sse_customer_key: 'c2hvcnQta2V5' }));
    expect(msg).toMatch(/option sse_customer_key: expected the base64 encoding of exactly 32 bytes/);
    expect(msg).not.toContain('c2hvcnQta2V5');
  });

  it('every problem is listed at once with its key', () => {
    const msg = configError(() =>
      parseConfig(storageOptions, { location: 's3://h/b', part_size: 'huge', upload_concurrency: '0', storage_class: 'COLD', use_tls: 'maybe' }),
    );
    for (const key of ['part_size', 'upload_concurrency', 'storage_class', 'use_tls']) expect(msg).toContain(`option ${key}:`);
  });

  it('importer, exporter and storage accept each other’s keys (one entry reused for source and store)', () => {
    expect(() => parseConfig(importerOptions, { location: 's3://h/b', storage_class: 'GLACIER' }, { siblingKeys: ['storage_class'] })).not.toThrow();
    expect(exporterOptions.map((s) => s.key)).toContain('directory_markers');
  });

  it('cross-option checks', () => {
    expect(configError(() => checkCombinations({ accessKey: 'AK' }))).toMatch(/option secret_access_key: is required with access_key/);
    expect(configError(() => checkCombinations({ secretAccessKey: 'SK' }))).toMatch(/option access_key: is required with secret_access_key/);
    expect(configError(() => checkCombinations({ sse: 'AES256', sseCustomerKey: 'x' }))).toMatch(/option sse: cannot be combined with sse_customer_key/);
    expect(configError(() => checkCombinations({ sseKmsKeyId: 'k' }))).toMatch(/option sse_kms_key_id: needs sse=aws:kms/);
    expect(configError(() => checkCombinations({ uploadCutoff: 32, partSize: 16 }))).toMatch(/option upload_cutoff: must not exceed part_size/);
    expect(() => checkCombinations({})).not.toThrow();
    expect(() => checkCombinations({ accessKey: 'a', secretAccessKey: 'b', sessionToken: 't' })).not.toThrow();
  });
});
