// Ceph radosgw for tests: one monitor, one memstore OSD and one radosgw on 127.0.0.1 (TEST-SERVERS.md §1).
import type { ChildProcess } from 'node:child_process';
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePorts } from './ports.ts';
import {
  httpStatus,
  isAlive,
  killAndWait,
  makeTempDir,
  READY_TIMEOUT_MS,
  registerLeftover,
  run,
  sleep,
  spawnLogged,
  startError,
  tcpOpen,
  tracer,
  waitFor,
} from './process-utils.ts';

/**
 * Memstore device size: 6 GiB. Memstore keeps every object in the OSD's RAM, so this is also the most memory the
 * OSD can use for data; it leaves room for test runs that write about 3 GB in all (deleted objects are freed).
 * The machines running the tests have 24 GiB.
 */
export const RADOSGW_MEMSTORE_BYTES = 6 * 1024 ** 3;

/** Options of {@link startRadosgw}. */
export interface RadosgwOptions {
  /**
   * Disable Nagle's algorithm on radosgw's sockets (`tcp_nodelay=1`, default true). With the stock setting, Nagle
   * plus delayed ACKs add about 40 ms to every small response: benchmarks can use `false` as a stand-in for a
   * remote store's per-request latency.
   */
  nodelay?: boolean;
  /** Memstore device size in bytes (default {@link RADOSGW_MEMSTORE_BYTES}). */
  memstoreBytes?: number;
}

/** What a client needs to reach the radosgw (JSON-serialisable: this is what the global setup provides). */
export interface RadosgwInfo {
  /** `http://127.0.0.1:PORT`, to be used with `forcePathStyle: true`. */
  endpoint: string;
  /** Access key of the S3 user `test`. */
  accessKey: string;
  /** Secret key of the S3 user `test` (random per start, so leak checks can search for it). */
  secretKey: string;
  /** Always `us-east-1`. */
  region: 'us-east-1';
  /** The cluster's temp directory (`ceph.conf`, `log/`, `run/`). */
  dir: string;
}

/** A running radosgw. */
export interface Radosgw extends RadosgwInfo {
  /** Kills radosgw, the OSD and the monitor by PID, waits until they are gone and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

const DAEMONS = ['client.rgw.a', 'osd.0', 'mon.a'] as const;

/** The SSE-KMS key id every test radosgw knows (Ceph's "testing" KMS backend), and its 256-bit key (not a secret). */
export const RADOSGW_KMS_KEY_ID = 'kloset-test-key';
const RADOSGW_KMS_KEY = Buffer.alloc(32, 0x4b).toString('base64');
type Daemon = (typeof DAEMONS)[number];

/**
 * Starts a throw-away Ceph cluster (one monitor, one memstore OSD, auth none, pool size 1) with radosgw on a free
 * port of 127.0.0.1, creates the S3 user `test`, and creates and deletes one bucket so that the pools exist before
 * the first test (the first bucket creation otherwise takes noticeably longer).
 *
 * The monitor proposes map changes every 10 ms instead of every second, which cuts the start from about 14 s to
 * about 3 s: radosgw creates its pools one map epoch at a time.
 *
 * @param options - see {@link RadosgwOptions}
 * @returns the endpoint, credentials and `stop()`
 * @throws Error with the end of the daemons' logs when the cluster does not come up
 * @example
 * const rgw = await startRadosgw();
 * const s3 = new S3Client({ endpoint: rgw.endpoint, region: rgw.region, forcePathStyle: true,
 *   credentials: { accessKeyId: rgw.accessKey, secretAccessKey: rgw.secretKey } });
 * await rgw.stop();
 */
export async function startRadosgw(options: RadosgwOptions = {}): Promise<Radosgw> {
  const trace = tracer('radosgw');
  const dir = makeTempDir('radosgw');
  for (const d of ['run', 'log', 'mon.a', 'osd.0', 'rgw']) mkdirSync(join(dir, d));
  // The daemons run in the foreground (-f), so their PIDs are known at once and Node reaps them.
  const daemons = new Map<Daemon, ChildProcess>();
  const pids = (): Array<number | undefined> => [...daemons.values()].map((d) => d.pid);
  const unregister = registerLeftover({ dir, pids });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      // SIGKILL: the data is thrown away anyway, radosgw takes ~5 s to honour SIGTERM, and on SIGTERM memstore first
      // writes every object to osd_data.
      await killAndWait(pids(), { signal: 'SIGKILL' });
      unregister();
      rmSync(dir, { recursive: true, force: true });
    })());

  const logs = DAEMONS.map((d) => join(dir, 'log', `${d}.log`));
  try {
    const [port, monPort] = (await freePorts(2)) as [number, number];
    const endpoint = `http://127.0.0.1:${port}`;
    const conf = join(dir, 'ceph.conf');
    const fsid = randomUUID();
    const nodelay = options.nodelay ?? true;
    writeFileSync(conf, cephConf({ dir, fsid, port, monPort, nodelay, bytes: options.memstoreBytes }));
    const c = ['-c', conf];
    const opts = { cwd: dir };
    const daemon = (name: Daemon, cmd: string, args: string[]): ChildProcess => {
      const child = spawnLogged(cmd, [...c, '-f', ...args], { logFile: join(dir, 'log', `${name}.out`), cwd: dir });
      daemons.set(name, child);
      return child;
    };
    const alive = (name: Daemon): boolean => {
      const p = daemons.get(name)?.pid;
      return p !== undefined && isAlive(p);
    };

    await Promise.all([
      run('ceph-authtool', ['--create-keyring', 'keyring', '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'], {
        cwd: dir,
      }),
      run('monmaptool', ['--create', '--add', 'a', `v1:127.0.0.1:${monPort}`, '--fsid', fsid, 'monmap'], opts),
    ]);
    await run('ceph-mon', [...c, '--mkfs', '-i', 'a', '--monmap', 'monmap', '--keyring', 'keyring'], opts);
    daemon('mon.a', 'ceph-mon', ['-i', 'a']);
    await waitFor(
      'ceph-mon to listen',
      async () => {
        if (!alive('mon.a')) throw new Error('ceph-mon exited');
        return tcpOpen(monPort);
      },
    );
    // Both talk to the monitor and are independent. (An initial osdmap from `osdmaptool --createsimple` would save
    // the slow Python CLI, but it carries a zero fsid, and the OSD's first commands then fail with "wrong fsid".)
    await Promise.all([run('ceph', [...c, 'osd', 'create'], opts), run('ceph-osd', [...c, '-i', '0', '--mkfs'], opts)]);
    trace('monitor up, osd created');
    // radosgw waits for the OSD by itself; starting both at once overlaps their start-up.
    daemon('client.rgw.a', 'radosgw', ['-n', 'client.rgw.a']);
    await startOsd(dir, () => daemon('osd.0', 'ceph-osd', ['-i', '0']), trace);
    trace('osd booted');
    await waitFor(
      `radosgw on ${endpoint}`,
      async () => {
        if (!alive('client.rgw.a')) throw new Error('radosgw exited');
        if (!alive('osd.0')) throw new Error('ceph-osd exited');
        return (await httpStatus(`${endpoint}/`)) === 200;
      },
    );
    trace('radosgw answers');

    const accessKey = `KLOSETTEST${randomBytes(5).toString('hex').toUpperCase()}`;
    const secretKey = randomBytes(20).toString('base64url');
    const keys = [`--access-key=${accessKey}`, `--secret-key=${secretKey}`];
    await run('radosgw-admin', [...c, 'user', 'create', '--uid=test', '--display-name=test', ...keys], opts);
    trace('user created');
    const info: RadosgwInfo = { endpoint, accessKey, secretKey, region: 'us-east-1', dir };
    await warmUp(info);
    trace('warmed up');
    return { ...info, stop };
  } catch (err) {
    const error = startError('radosgw', err, logs);
    await stop();
    throw error;
  }
}

/**
 * Starts the OSD and waits until the monitor has seen it boot, starting it once more when it exits first: the
 * one-node start is racy, and the OSD can ask for the map before the monitor is ready ("wrong fsid") and exit.
 */
async function startOsd(dir: string, spawnOsd: () => ChildProcess, trace: (step: string) => void): Promise<void> {
  const monLog = join(dir, 'log', 'mon.a.log');
  for (let attempt = 1; ; attempt++) {
    const osd = spawnOsd();
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (existsSync(monLog) && /osd\.0 \S+ boot/.test(readFileSync(monLog, 'utf8'))) return;
      if (osd.pid === undefined || !isAlive(osd.pid)) break;
      await sleep(50);
    }
    await killAndWait([osd.pid], { signal: 'SIGKILL' });
    if (attempt >= 2) throw new Error('ceph-osd did not boot (started twice)');
    trace('osd exited before booting: starting it again');
    await sleep(300);
  }
}

/** Creates and deletes one bucket and object, so that radosgw has created its index and data pools. */
async function warmUp(info: RadosgwInfo): Promise<void> {
  const bucket = 'kloset-ts-warm-up';
  await s3Request(info, 'PUT', `/${bucket}`);
  await s3Request(info, 'PUT', `/${bucket}/k`, 'x');
  await s3Request(info, 'DELETE', `/${bucket}/k`);
  await s3Request(info, 'DELETE', `/${bucket}`);
}

/**
 * Sends one SigV4-signed S3 request (unsigned payload) and throws unless it succeeds. Signing by hand keeps the AWS
 * SDK, its load time and its Node-version warning out of the process that starts the server.
 *
 * @see https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
 */
async function s3Request(info: RadosgwInfo, method: string, path: string, body?: string): Promise<void> {
  const url = new URL(path, info.endpoint);
  const amzDate = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${info.region}/s3/aws4_request`;
  const headers: Record<string, string> = {
    host: url.host,
    'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    'x-amz-date': amzDate,
  };
  const signed = Object.keys(headers).join(';');
  const canonical = [
    method,
    url.pathname,
    '',
    ...Object.entries(headers).map(([k, v]) => `${k}:${v}`),
    '',
    signed,
    'UNSIGNED-PAYLOAD',
  ].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  let key: Buffer = Buffer.from(`AWS4${info.secretKey}`);
  for (const part of [day, info.region, 's3', 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  const res = await fetch(url, {
    method,
    body,
    headers: {
      ...headers,
      authorization: `AWS4-HMAC-SHA256 Credential=${info.accessKey}/${scope}, SignedHeaders=${signed}, Signature=${signature}`,
    },
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`warm-up ${method} ${path} answered ${res.status}: ${text.slice(0, 200)}`);
}

interface CephConfParams {
  dir: string;
  fsid: string;
  port: number;
  monPort: number;
  nodelay: boolean;
  bytes?: number | undefined;
}

function cephConf(p: CephConfParams): string {
  const frontend = `beast endpoint=127.0.0.1:${p.port}${p.nodelay ? ' tcp_nodelay=1' : ''}`;
  return `[global]
fsid = ${p.fsid}
mon_host = v1:127.0.0.1:${p.monPort}
public_network = 127.0.0.1/32
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
# pools are created one map epoch at a time; the default 1 s proposal interval makes radosgw start in ~10 s
paxos_propose_interval = 0.01
# a nearly full /tmp must not make the monitor shut down
mon_data_avail_crit = 0
mon_data_avail_warn = 0
run_dir = ${p.dir}/run
admin_socket = ${p.dir}/run/$name.asok
log_file = ${p.dir}/log/$name.log
pid_file = ${p.dir}/run/$name.pid
keyring = ${p.dir}/keyring
[mon]
mon_data = ${p.dir}/mon.$id
[osd]
osd_data = ${p.dir}/osd.$id
osd_objectstore = memstore
memstore_device_bytes = ${p.bytes ?? RADOSGW_MEMSTORE_BYTES}
osd_max_object_name_len = 460
osd_max_object_namespace_len = 64
[client.rgw.a]
rgw_frontends = ${frontend}
rgw_data = ${p.dir}/rgw
# SSE-KMS with Ceph's static "testing" key store: the key id below encrypts objects for real (Pacific has no SSE-S3)
rgw_crypt_s3_kms_backend = testing
rgw_crypt_s3_kms_encryption_keys = ${RADOSGW_KMS_KEY_ID}=${RADOSGW_KMS_KEY}
`;
}
