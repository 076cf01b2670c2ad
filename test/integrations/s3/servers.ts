// The S3 servers of the s3 tests (Ceph radosgw, Swift s3api), their connector configs and a plain AWS SDK client to seed and inspect.
import { execFile, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { spawnLogged } from '../../servers/process-utils.ts';
import { providedServer } from '../../servers/provided.ts';
import { startRadosgw, type RadosgwInfo } from '../../servers/radosgw.ts';
import { startSwift, type SwiftInfo } from '../../servers/swift.ts';

const run = promisify(execFile);
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** An S3 server for a test file: the run's shared one (global setup), or one started for the file. */
export type S3Server = (RadosgwInfo | SwiftInfo) & {
  /** Stops the server when this file started it; a no-op for the run's shared server. */
  stop(): Promise<void>;
};

async function withRetry<T>(start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch {
    // The one-node Ceph start is occasionally racy; one more try is enough in practice.
    return start();
  }
}

function provided<N extends 'radosgw' | 'swift'>(name: N): ReturnType<typeof providedServer<N>> | undefined {
  try {
    return providedServer(name);
  } catch {
    return undefined;
  }
}

/**
 * The radosgw of this run (started once by test/global-setup.ts for `npm test -- --project s3`), or a private one
 * when the file runs alone; `sseOverHttp` lets SSE-C requests through on plain HTTP (radosgw refuses them by default).
 * `own` always starts a private one (for tests that restart it).
 */
export async function radosgw(options: { sseOverHttp?: boolean; own?: boolean } = {}): Promise<RadosgwInfo & S3Server> {
  const shared = options.own ? undefined : provided('radosgw');
  const rgw: RadosgwInfo & S3Server = shared ? { ...shared, stop: async () => undefined } : await withRetry(() => startRadosgw());
  if (options.sseOverHttp) {
    await run('ceph', ['--admin-daemon', `${rgw.dir}/run/client.rgw.a.asok`, 'config', 'set', 'rgw_crypt_require_ssl', 'false']);
  }
  return rgw;
}

/** The Swift s3api of this run, or a private one when the file runs alone. */
export async function swift(): Promise<SwiftInfo & S3Server> {
  const shared = provided('swift');
  return shared ? { ...shared, stop: async () => undefined } : withRetry(() => startSwift());
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
 * Starts a private radosgw whose default placement also offers `classes` (e.g. GLACIER, STANDARD_IA): the classes are
 * added, then radosgw is restarted (in the foreground, as our child, dying with this process) so that it accepts
 * them. Objects of those classes stay readable (radosgw has no archive tier), which is enough to check what the
 * integration writes where. `stop()` stops the restarted radosgw too.
 */
export async function radosgwWithClasses(classes: readonly string[]): Promise<RadosgwInfo & S3Server> {
  const rgw = await radosgw({ own: true });
  const conf = ['-c', `${rgw.dir}/ceph.conf`];
  let restarted: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    const pid = restarted?.pid;
    if (pid !== undefined && alive(pid)) {
      process.kill(pid, 'SIGKILL');
      while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
    }
    await rgw.stop();
  };
  try {
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
    // Kill this cluster's radosgw (found by its unique ceph.conf path) and start it again as our own child.
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let argv: string[];
      try {
        argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      } catch {
        continue;
      }
      if (!argv.some((a) => a.endsWith('radosgw')) || !argv.includes(`${rgw.dir}/ceph.conf`)) continue;
      const pid = Number(entry);
      process.kill(pid, 'SIGKILL');
      while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
    }
    restarted = spawnLogged('radosgw', [...conf, '-f', '-n', 'client.rgw.a'], { logFile: `${rgw.dir}/log/client.rgw.a.restart.out`, cwd: rgw.dir });
    const until = Date.now() + 60_000;
    for (;;) {
      try {
        const r = await fetch(`${rgw.endpoint}/`);
        await r.arrayBuffer();
        if (r.status === 200) break;
      } catch {
        // not up yet
      }
      if (Date.now() > until) throw new Error('radosgw did not come back after adding storage classes');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { ...rgw, stop };
}
