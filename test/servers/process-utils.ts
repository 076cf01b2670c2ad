// Process helpers shared by the test-server starters: run a tool, wait for readiness, kill by PID, clean up at exit.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TRACE = process.env.KLOSET_TS_SERVERS_TRACE === '1';

/**
 * How long a server may take to become ready: 3 min. A start needs a few seconds of CPU, but on a shared 2-core
 * machine at load 30, Swift took 80 s and Xandikos over 60 s. A server that dies is noticed at once anyway.
 */
export const READY_TIMEOUT_MS = 180_000;

/**
 * Returns a step logger for one server start: silent unless `KLOSET_TS_SERVERS_TRACE=1`, in which case every step
 * prints its elapsed time to stderr (used to measure and tune start times).
 *
 * @param server - the server name
 */
export function tracer(server: string): (step: string) => void {
  if (!TRACE) return () => undefined;
  const t0 = performance.now();
  return (step) => process.stderr.write(`[${server}] ${Math.round(performance.now() - t0)} ms ${step}\n`);
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Creates a fresh private directory under `os.tmpdir()` named `kloset-ts-<name>-XXXXXX`.
 *
 * @param name - the server name, for humans looking at /tmp
 * @returns the absolute path
 */
export function makeTempDir(name: string): string {
  return mkdtempSync(join(tmpdir(), `kloset-ts-${name}-`));
}

/**
 * Tells whether a process exists and is not a zombie.
 *
 * Server children outlive their parent (Dovecot's, once the master is killed) and are re-parented to PID 1, which in
 * a container may never reap them, so a killed process can linger as a zombie; `kill(pid, 0)` alone would call it
 * alive.
 *
 * @param pid - the process id
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state letter follows the parenthesised command name, which may itself contain spaces or parentheses.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Sends `signal` to every live PID, waits up to `graceMs` for them to exit, then sends SIGKILL to the rest and
 * waits until they are gone.
 *
 * @param pids - the processes (undefined entries are skipped)
 * @param options - `signal` (default SIGTERM) and `graceMs` (default 10 s)
 * @returns the PIDs that were still alive after SIGKILL and 5 more seconds (normally none)
 */
export async function killAndWait(
  pids: ReadonlyArray<number | undefined>,
  options: { signal?: NodeJS.Signals; graceMs?: number } = {},
): Promise<number[]> {
  const signal = options.signal ?? 'SIGTERM';
  const live = pids.filter((p): p is number => p !== undefined && p > 0 && isAlive(p));
  for (const pid of live) signalQuietly(pid, signal);
  let until = Date.now() + (signal === 'SIGKILL' ? 5000 : (options.graceMs ?? 10_000));
  while (live.some(isAlive) && Date.now() < until) await sleep(20);
  if (signal !== 'SIGKILL' && live.some(isAlive)) {
    for (const pid of live.filter(isAlive)) signalQuietly(pid, 'SIGKILL');
    until = Date.now() + 5000;
    while (live.some(isAlive) && Date.now() < until) await sleep(20);
  }
  return live.filter(isAlive);
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Lists the live descendants of a process (children, grandchildren…), read from /proc.
 *
 * @param pid - the ancestor
 * @returns their PIDs, parents before children
 */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // the process went away while we looked
    }
  }
  const out: number[] = [];
  const queue = [...(children.get(pid) ?? [])];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out.filter(isAlive);
}

/**
 * Runs a command to completion and returns its stdout.
 *
 * The command's stdin is closed. On a non-zero exit the error message carries the command line, the exit status
 * and the end of its stderr and stdout.
 *
 * @param cmd - the executable
 * @param args - its arguments
 * @param options - working directory, environment and a timeout (default {@link READY_TIMEOUT_MS})
 */
export function run(
  cmd: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { cwd: options.cwd, env: options.env, timeout: options.timeoutMs ?? READY_TIMEOUT_MS, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const out = `${stderr}\n${stdout}`.trim().split('\n').slice(-20).join('\n');
        reject(new Error(`${cmd} ${args.join(' ')} failed (${err.code ?? err.signal ?? err.message}):\n${out}`));
      },
    );
    child.stdin?.end();
  });
}

const SETPRIV = '/usr/bin/setpriv';
const HAS_SETPRIV = existsSync(SETPRIV);

/**
 * Spawns a long-running server with stdout and stderr appended to `logFile` and stdin closed.
 *
 * The child is not detached, and vitest and tsx do not wait for it: callers keep the PID and stop it themselves.
 * Where `/usr/bin/setpriv` exists, the child also dies with this process (parent-death signal).
 *
 * @param cmd - the executable
 * @param args - its arguments
 * @param options - the log file and an optional working directory and environment
 */
export function spawnLogged(
  cmd: string,
  args: readonly string[],
  options: { logFile: string; cwd?: string; env?: NodeJS.ProcessEnv },
): ChildProcess {
  const fd = openSync(options.logFile, 'a');
  try {
    // setpriv (util-linux) makes the kernel SIGKILL the server when this process dies, even by SIGKILL (a vitest
    // worker killed on timeout), where no exit hook runs. It execs the server, so the PID stays the server's.
    const [file, argv] = HAS_SETPRIV
      ? [SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args]]
      : [cmd, [...args]];
    const child = spawn(file, argv, { cwd: options.cwd, env: options.env, stdio: ['ignore', fd, fd] });
    // A failed spawn (ENOENT…) leaves no PID, which the readiness check reports; the log says why.
    child.on('error', (err) => appendFileSync(options.logFile, `spawn ${cmd} failed: ${err.message}\n`));
    child.unref();
    return child;
  } finally {
    closeSync(fd);
  }
}

/**
 * Polls `check` until it returns true, throwing after `timeoutMs`.
 *
 * @param what - what is awaited, for the error message
 * @param check - returns true when ready; throwing aborts the wait with that error
 * @param options - timeout (default {@link READY_TIMEOUT_MS}) and poll interval (default 50 ms)
 */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const timeout = options.timeoutMs ?? READY_TIMEOUT_MS;
  const until = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(options.intervalMs ?? 50);
  }
}

/**
 * Tells whether something accepts TCP connections on 127.0.0.1:`port`.
 *
 * @param port - the port
 */
export function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.setTimeout(1000);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Issues one GET and returns its status, or undefined when the connection fails.
 *
 * @param url - the URL
 */
export async function httpStatus(url: string): Promise<number | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return undefined;
  }
}

/**
 * Returns the last `lines` lines of a text file, or a note that it does not exist.
 *
 * @param file - the path
 * @param lines - how many lines (default 40)
 */
export function tailFile(file: string, lines = 40): string {
  if (!existsSync(file)) return `(no log file ${file})`;
  const text = readFileSync(file, 'utf8').trimEnd();
  return text.split('\n').slice(-lines).join('\n');
}

/**
 * Builds the error thrown when a server fails to start: the cause followed by the end of each log file.
 *
 * @param server - the server name
 * @param cause - what went wrong
 * @param logFiles - the logs to quote (40 lines in all, split between them)
 */
export function startError(server: string, cause: unknown, logFiles: readonly string[]): Error {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const per = Math.max(10, Math.floor(40 / Math.max(1, logFiles.length)));
  const logs = logFiles.map((f) => `--- ${f}\n${tailFile(f, per)}`).join('\n');
  return new Error(`${server} failed to start: ${reason}\n${logs}`, { cause });
}

/** What must be killed and removed if the test process exits without calling `stop()`. */
export interface Leftover {
  /** Returns the PIDs to SIGKILL. */
  pids(): Array<number | undefined>;
  /** The temp directory to remove. */
  dir: string;
}

const LEFTOVERS: Set<Leftover> = ((globalThis as { __klosetTsLeftovers?: Set<Leftover> }).__klosetTsLeftovers ??=
  new Set());

/**
 * Registers a server for last-resort cleanup when the process exits (normally, by an uncaught error, or on
 * SIGINT/SIGTERM/SIGHUP when nothing else handles them). Server processes outlive the Node process that started
 * them, so they would otherwise survive an interrupted or crashed test run.
 *
 * @param leftover - the PIDs and directory of one server
 * @returns a function that unregisters it (call it from `stop()`)
 */
export function registerLeftover(leftover: Leftover): () => void {
  installExitHook();
  LEFTOVERS.add(leftover);
  return () => LEFTOVERS.delete(leftover);
}

/**
 * Synchronously SIGKILLs everything still registered, waits (up to 3 s) until those processes are gone, and
 * removes their directories. Runs at process exit, where nothing asynchronous can happen any more: vitest answers
 * SIGINT with `process.exit()` without running the global teardown.
 */
export function killLeftoversNow(): void {
  const pids: number[] = [];
  for (const l of LEFTOVERS) for (const pid of l.pids()) if (pid !== undefined && pid > 0) pids.push(pid);
  for (const pid of pids) signalQuietly(pid, 'SIGKILL');
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (const until = Date.now() + 3000; pids.some(isAlive) && Date.now() < until; ) Atomics.wait(nap, 0, 0, 10);
  for (const l of LEFTOVERS) {
    try {
      rmSync(l.dir, { recursive: true, force: true });
    } catch {
      // a process may still be writing into it; nothing more can be done at exit
    }
  }
  LEFTOVERS.clear();
}

function installExitHook(): void {
  const g = globalThis as { __klosetTsExitHook?: boolean };
  if (g.__klosetTsExitHook) return;
  g.__klosetTsExitHook = true;
  process.once('exit', killLeftoversNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Only act when nobody else handles the signal, so vitest's own handling and teardown stay in charge.
    process.once(sig, () => {
      if (process.listenerCount(sig) > 0) return;
      killLeftoversNow();
      process.kill(process.pid, sig);
    });
  }
}
