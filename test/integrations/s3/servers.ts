// The S3 servers of the s3 tests (Ceph radosgw, Swift s3api), their connector configs and a plain AWS SDK client to seed and inspect.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { startRadosgw, type Radosgw } from '../../servers/radosgw.ts';
import { startSwift, type Swift } from '../../servers/swift.ts';

const run = promisify(execFile);
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** A running S3 server. */
export type S3Server = Radosgw | Swift;

async function withRetry<T>(start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch {
    // The one-node Ceph start is occasionally racy; one more try is enough in practice.
    return start();
  }
}

/** Starts radosgw; `sseOverHttp` lets SSE-C requests through on plain HTTP (radosgw refuses them by default). */
export async function radosgw(options: { sseOverHttp?: boolean } = {}): Promise<Radosgw> {
  const rgw = await withRetry(() => startRadosgw());
  if (options.sseOverHttp) {
    await run('ceph', ['--admin-daemon', `${rgw.dir}/run/client.rgw.a.asok`, 'config', 'set', 'rgw_crypt_require_ssl', 'false']);
  }
  return rgw;
}

/** Starts Swift with s3api. */
export async function swift(): Promise<Swift> {
  return withRetry(() => startSwift());
}

/** `host:port` of a server. */
export function hostOf(server: { endpoint: string }): string {
  return server.endpoint.replace(/^https?:\/\//, '');
}

/** A connector config for `bucket/prefix` on `server` (plain HTTP, static keys). */
export function configFor(server: S3Server, bucket: string, prefix = '', extra: Record<string, string> = {}): Record<string, string> {
  return {
    location: `s3://${hostOf(server)}/${bucket}${prefix ? `/${prefix}` : ''}`,
    access_key: server.accessKey,
    secret_access_key: server.secretKey,
    use_tls: 'false',
    ...extra,
  };
}

/** A plain AWS SDK client on `server` (for seeding and inspection, not through the integration). */
export function sdkClient(server: S3Server, endpoint = server.endpoint): S3Client {
  return new S3Client({
    endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKey, secretAccessKey: server.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

let counter = 0;

/** A fresh, valid, unique bucket name. */
export function bucketName(tag: string): string {
  return `${tag}-${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}`.toLowerCase().slice(0, 63);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Adds storage classes (e.g. GLACIER, DEEP_ARCHIVE) to radosgw's default placement and restarts radosgw so that it
 * accepts them. Objects of those classes stay readable (radosgw has no archive tier), which is enough to check what
 * the integration writes where.
 */
export async function addStorageClasses(rgw: Radosgw, classes: readonly string[]): Promise<void> {
  const conf = ['-c', `${rgw.dir}/ceph.conf`];
  for (const cls of classes) {
    await run('radosgw-admin', [...conf, 'zonegroup', 'placement', 'add', '--rgw-zonegroup', 'default', '--placement-id', 'default-placement', '--storage-class', cls]);
    await run('radosgw-admin', [
      ...conf,
      'zone',
      'placement',
      'add',
      '--rgw-zone',
      'default',
      '--placement-id',
      'default-placement',
      '--storage-class',
      cls,
      '--data-pool',
      `default.rgw.${cls.toLowerCase()}.data`,
    ]);
  }
  // radosgw writes no pid file here: find this cluster's radosgw by its unique ceph.conf path.
  const { readdirSync, readFileSync } = await import('node:fs');
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const argv = cmdline.split('\0');
    if (!argv[0]?.endsWith('radosgw') || !argv.includes(`${rgw.dir}/ceph.conf`)) continue;
    const pid = Number(entry);
    process.kill(pid, 'SIGKILL');
    while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
  }
  await run('radosgw', [...conf, '-n', 'client.rgw.a'], { cwd: rgw.dir });
  const until = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`${rgw.endpoint}/`);
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error('radosgw did not come back after adding storage classes');
    await new Promise((r) => setTimeout(r, 100));
  }
}
