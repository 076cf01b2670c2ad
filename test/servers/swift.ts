// OpenStack Swift with the s3api middleware for tests: account, container, object and proxy servers plus memcached.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { freePorts } from './ports.ts';
import {
  httpStatus,
  isAlive,
  killAndWait,
  makeTempDir,
  registerLeftover,
  spawnLogged,
  startError,
  tcpOpen,
  tracer,
  waitFor,
} from './process-utils.ts';

/** What a client needs to reach Swift's S3 API (JSON-serialisable: this is what the global setup provides). */
export interface SwiftInfo {
  /** `http://127.0.0.1:PORT` of the proxy, to be used with `forcePathStyle: true`. */
  endpoint: string;
  /** tempauth's `account:user`. */
  accessKey: 'test:tester';
  /** tempauth's password, which s3api uses as the secret key. */
  secretKey: 'testing';
  /** The s3api `location`. */
  region: 'us-east-1';
  /** The temp directory (confs, rings, devices and one log file per daemon). */
  dir: string;
}

/** A running Swift. */
export interface Swift extends SwiftInfo {
  /** Kills the four Swift daemons and memcached by PID, waits until they are gone and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

const STORAGE = ['account', 'container', 'object'] as const;
const DAEMONS = [...STORAGE, 'proxy'] as const;

/**
 * Starts Swift 2.30 (Debian) on free ports of 127.0.0.1 with the proxy pipeline of TEST-SERVERS.md §1: s3api in
 * front of tempauth (user `test:tester`, password `testing`), `slo` for multipart uploads and `account_autocreate`.
 * Everything, including `swift.conf` and the rings, lives in a private `swift_dir`, so /etc is never read.
 *
 * tempauth keeps its tokens in memcache and answers 500 without the cache filter, so a private memcached is started
 * too. Daemons run with `workers = 0` (one process each) as the current user, since Swift otherwise switches to the
 * `swift` user when started as root; `-v` sends their logs to `<dir>/<name>.log` (by default they go to syslog,
 * which does not exist here).
 *
 * @returns the endpoint, credentials and `stop()`
 * @throws Error with the end of the daemons' logs when a daemon does not come up
 * @example
 * const swift = await startSwift();
 * const s3 = new S3Client({ endpoint: swift.endpoint, region: swift.region, forcePathStyle: true,
 *   credentials: { accessKeyId: swift.accessKey, secretAccessKey: swift.secretKey } });
 * await swift.stop();
 */
export async function startSwift(): Promise<Swift> {
  const trace = tracer('swift');
  const dir = makeTempDir('swift');
  const pids: number[] = [];
  const unregister = registerLeftover({ dir, pids: () => pids });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      // SIGKILL: the objects are thrown away anyway, and eventlet servers can take a while to drain on SIGTERM.
      await killAndWait(pids, { signal: 'SIGKILL' });
      unregister();
      rmSync(dir, { recursive: true, force: true });
    })());
  const logs = [...DAEMONS, 'memcached'].map((d) => join(dir, `${d}.log`));

  try {
    const [proxyPort, accountPort, containerPort, objectPort, memcachePort] = (await freePorts(5)) as [
      number, number, number, number, number,
    ];
    const ports = { account: accountPort, container: containerPort, object: objectPort, proxy: proxyPort };
    const endpoint = `http://127.0.0.1:${proxyPort}`;
    mkdirSync(join(dir, 'devices', 'd1'), { recursive: true });

    const user = userInfo().username;
    const spawnDaemon = (name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): void => {
      const child = spawnLogged(cmd, args, { logFile: join(dir, `${name}.log`), cwd: dir, env });
      if (child.pid === undefined) throw new Error(`could not run ${cmd}`);
      pids.push(child.pid);
    };
    // -P (a PID file) puts the directory on memcached's command line too, so the process is easy to attribute.
    const mc = ['-l', '127.0.0.1', '-p', String(memcachePort), '-U', '0', '-m', '64', '-u', user];
    spawnDaemon('memcached', 'memcached', [...mc, '-P', join(dir, 'memcached.pid')]);

    writeFileSync(
      join(dir, 'swift.conf'),
      '[swift-hash]\nswift_hash_path_suffix = kloset\nswift_hash_path_prefix = kloset\n\n' +
        '[storage-policy:0]\nname = Policy-0\ndefault = yes\n',
    );
    for (const kind of STORAGE) writeFileSync(join(dir, `${kind}.ring.gz`), ringFile(ports[kind]));

    for (const kind of STORAGE) {
      writeFileSync(join(dir, `${kind}-server.conf`), storageConf(kind, dir, ports[kind], user));
    }
    writeFileSync(join(dir, 'proxy-server.conf'), proxyConf(dir, proxyPort, memcachePort, user));

    mkdirSync(join(dir, 'python'));
    writeFileSync(join(dir, 'python', 'sitecustomize.py'), SITECUSTOMIZE);
    const env = { ...process.env, PYTHONPATH: join(dir, 'python'), PYTHONDONTWRITEBYTECODE: '1' };
    for (const kind of DAEMONS) {
      // Debian's python3 on PATH may be pyenv's; the swift-* scripts carry /usr/bin/python3 in their shebang.
      spawnDaemon(kind, `swift-${kind}-server`, [join(dir, `${kind}-server.conf`), '-v'], env);
    }
    const allAlive = (): void => {
      const dead = pids.filter((p) => !isAlive(p));
      if (dead.length > 0) throw new Error(`a daemon exited (pid ${dead.join(', ')})`);
    };
    await waitFor(
      'the Swift daemons to listen',
      async () => {
        allAlive();
        const open = await Promise.all([...Object.values(ports), memcachePort].map(tcpOpen));
        return open.every(Boolean) && (await httpStatus(`${endpoint}/healthcheck`)) === 200;
      },
    );
    trace('daemons listening');
    return { endpoint, accessKey: 'test:tester', secretKey: 'testing', region: 'us-east-1', dir, stop };
  } catch (err) {
    const error = startError('swift', err, logs);
    await stop();
    throw error;
  }
}

/**
 * The bytes of a `<kind>.ring.gz` with one device (`127.0.0.1:<port>/d1`), 2^6 partitions and one replica, in the
 * format Swift's `RingData.serialize_v1` writes. Writing it here replaces nine `swift-ring-builder` runs (Python,
 * about 0.3 s each).
 *
 * @param port - the port of the account, container or object server the ring points to
 */
export function ringFile(port: number): Buffer {
  const PART_POWER = 6;
  const meta = {
    byteorder: 'little',
    devs: [{ device: 'd1', id: 0, ip: '127.0.0.1', meta: '', port, region: 1, weight: 1.0, zone: 1 }],
    part_shift: 32 - PART_POWER,
    replica_count: 1,
    version: 2,
  };
  const json = Buffer.from(JSON.stringify(meta), 'ascii');
  const head = Buffer.alloc(10);
  head.write('R1NG', 0, 'ascii');
  head.writeUInt16BE(1, 4);
  head.writeUInt32BE(json.length, 6);
  // replica2part2dev_id: one array('H') per replica, every partition on device 0, in `byteorder`.
  const part2dev = Buffer.alloc(2 * 2 ** PART_POWER);
  return gzipSync(Buffer.concat([head, json, part2dev]));
}

/**
 * Loaded by every Swift daemon through PYTHONPATH. eventlet 0.33's monkey_patch() replaces each existing native
 * RLock and runs a full `gc.collect()` per lock, which costs ~0.8 s of CPU per daemon (over 40% of its start).
 * This does the same replacement with one collection; later eventlet releases made the same change.
 */
const SITECUSTOMIZE = `
import gc
import threading
import eventlet.patcher


def _green_existing_locks():
    rlock_type = type(threading.RLock())
    pyrlock_type = type(threading._PyRLock())
    olds = [o for o in gc.get_objects() if isinstance(o, rlock_type) and not isinstance(o, pyrlock_type)]
    if not olds:
        return
    news = {}
    for old in olds:
        new = threading._PyRLock()
        while old._is_owned():
            old.release()
            new.acquire()
        news[id(old)] = (old, new)
    gc.collect()
    for ref in gc.get_referrers(*olds):
        try:
            ref_vars = vars(ref)
        except TypeError:
            continue
        for k, v in list(ref_vars.items()):
            pair = news.get(id(v))
            if pair is not None and pair[0] is v:
                setattr(ref, k, pair[1])


eventlet.patcher._green_existing_locks = _green_existing_locks
`;

function defaults(dir: string, port: number, user: string, name: string): string {
  return `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${port}
workers = 0
user = ${user}
swift_dir = ${dir}
devices = ${dir}/devices
mount_check = false
log_name = ${name}
log_level = INFO
`;
}

function storageConf(kind: (typeof STORAGE)[number], dir: string, port: number, user: string): string {
  return `${defaults(dir, port, user, kind)}
[pipeline:main]
pipeline = ${kind}-server

[app:${kind}-server]
use = egg:swift#${kind}
`;
}

function proxyConf(dir: string, port: number, memcachePort: number, user: string): string {
  // The pipeline value continues on an indented line (ConfigParser syntax).
  return `${defaults(dir, port, user, 'proxy')}
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo
  proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${memcachePort}

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
`;
}
