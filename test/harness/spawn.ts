// Spawns a plugin executable the way Plakar does: absolute argv[0], manifest args, inherited cwd/env, two real pipes.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { parse as parseYaml } from 'yaml';
import { recordOutput } from './secret-scan.ts';

/**
 * How fd 0 and fd 1 are provided: `pipes` = two distinct FIFOs (read-only fd 0, write-only fd 1, like Plakar v1.1.x),
 * `socketpair` = Node's default stdio pipes (two socketpairs), `one-socket` = the same unix socket on fd 0 and fd 1.
 */
export type StdioMode = 'pipes' | 'socketpair' | 'one-socket';

/** The connector kinds a manifest can declare. */
export type ConnectorKind = 'importer' | 'exporter' | 'storage';

/** How a child ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when `close()` had to kill the child because it did not exit on EOF in time. */
  timedOut: boolean;
}

/** Spawn options. */
export interface SpawnOptions {
  /** argv[1..] (the manifest's `args`). */
  args?: string[];
  /** Working directory (default: inherited, like Plakar). */
  cwd?: string;
  /** Extra environment merged over the inherited one (set a key to undefined to remove it). */
  env?: NodeJS.ProcessEnv;
  /** Default `pipes`. */
  mode?: StdioMode;
  /** Also copy the child's stderr to ours (it is always captured). */
  passStderr?: boolean;
}

/** A running plugin process and the host side of its stdio. */
export interface PluginProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly mode: StdioMode;
  /** The absolute executable path, also argv[0]. */
  readonly executable: string;
  /** Host-side bytes: readable = the child's fd 1, writable = the child's fd 0. */
  readonly duplex: Duplex;
  /** Resolves when the child has exited. */
  readonly exited: Promise<ExitInfo>;
  /** Exit code once exited (null before, or when killed by a signal). */
  readonly exitCode: number | null;
  /** Signal that ended the child, if any. */
  readonly signalCode: NodeJS.Signals | null;
  /** Everything the child wrote on stderr so far. */
  stderr(): string;
  /** Closes the host's write end: the child reads EOF on fd 0. */
  endInput(): void;
  /** Closes both host ends (as when Plakar exits), then waits for exit; SIGKILL after `timeoutMs` (default 5000). */
  close(timeoutMs?: number): Promise<ExitInfo>;
  /** Sends a signal (default SIGKILL). */
  kill(signal?: NodeJS.Signals): void;
}

interface StdioSetup {
  stdio: [number | net.Socket | 'pipe', number | net.Socket | 'pipe', 'pipe'];
  afterSpawn(child: ChildProcess): { duplex: Duplex; endInput(): void; destroyAll(): void };
  cleanup(): void;
}

/** Spawns `executable` with Plakar's process setup and returns the host side. */
export async function spawnPlugin(executable: string, options: SpawnOptions = {}): Promise<PluginProcess> {
  const exe = path.resolve(executable);
  fs.accessSync(exe, fs.constants.X_OK);
  const mode = options.mode ?? 'pipes';
  const setup = mode === 'pipes' ? fifoSetup() : mode === 'socketpair' ? socketpairSetup() : await oneSocketSetup();
  const env: NodeJS.ProcessEnv = { ...process.env, ...(options.env ?? {}) };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];

  let child: ChildProcess;
  try {
    child = spawn(exe, options.args ?? [], { cwd: options.cwd, env, stdio: setup.stdio, argv0: exe });
  } finally {
    setup.cleanup();
  }
  const ends = setup.afterSpawn(child);
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    ends.destroyAll();
    throw new Error(`cannot spawn ${exe}: ${err.message}`);
  }
  child.on('error', () => {
    // Exit is reported through 'exit'.
  });

  const stderrChunks: Buffer[] = [];
  child.stderr?.on('data', (chunk: Buffer) => {
    stderrChunks.push(chunk);
    if (options.passStderr) process.stderr.write(chunk);
  });

  let exitCode: number | null = null;
  let signalCode: NodeJS.Signals | null = null;
  let killedForTimeout = false;
  const stderrDone = new Promise<void>((resolve) => {
    if (!child.stderr) resolve();
    else child.stderr.once('close', () => resolve());
  });
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      exitCode = code;
      signalCode = signal;
      // 'exit' can precede the last stderr bytes; give the pipe a moment to drain (a grandchild may hold it open).
      const grace = new Promise<void>((r) => setTimeout(r, 1000).unref());
      void Promise.race([stderrDone, grace]).then(() => {
        recordOutput(`the stderr of ${path.basename(exe)} (pid ${pid})`, Buffer.concat(stderrChunks).toString('utf8'));
        resolve({ code, signal, timedOut: killedForTimeout });
      });
    });
  });

  return {
    child,
    pid,
    mode,
    executable: exe,
    duplex: ends.duplex,
    exited,
    get exitCode() {
      return exitCode;
    },
    get signalCode() {
      return signalCode;
    },
    stderr: () => Buffer.concat(stderrChunks).toString('utf8'),
    endInput: () => ends.endInput(),
    close: async (timeoutMs = 5000) => {
      ends.destroyAll();
      const timer = setTimeout(() => {
        killedForTimeout = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      const info = await exited;
      clearTimeout(timer);
      return { ...info, timedOut: killedForTimeout };
    },
    kill: (signal: NodeJS.Signals = 'SIGKILL') => {
      child.kill(signal);
    },
  };
}

/**
 * Two FIFOs in a private directory. Opening order avoids blocking: a throw-away non-blocking reader lets the host
 * open its write end, whose presence lets the child's read end open; the child's write end opens because the host's
 * non-blocking read end exists. The child's ends are blocking fds, as Go's exec gives; ours are close-on-exec.
 */
function fifoSetup(): StdioSetup {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kloset-host-'));
  const inPath = path.join(dir, 'stdin');
  const outPath = path.join(dir, 'stdout');
  const { O_RDONLY, O_WRONLY, O_NONBLOCK } = fs.constants;
  const opened: number[] = [];
  try {
    execFileSync('mkfifo', ['-m', '600', inPath, outPath]);
    const probe = fs.openSync(inPath, O_RDONLY | O_NONBLOCK);
    opened.push(probe);
    const hostWrite = fs.openSync(inPath, O_WRONLY);
    opened.push(hostWrite);
    const childRead = fs.openSync(inPath, O_RDONLY);
    opened.push(childRead);
    fs.closeSync(probe);
    opened.shift();
    const hostRead = fs.openSync(outPath, O_RDONLY | O_NONBLOCK);
    opened.push(hostRead);
    const childWrite = fs.openSync(outPath, O_WRONLY);
    opened.push(childWrite);
    return {
      stdio: [childRead, childWrite, 'pipe'],
      cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
      afterSpawn: () => {
        fs.closeSync(childRead);
        fs.closeSync(childWrite);
        const writer = new net.Socket({ fd: hostWrite, readable: false, writable: true });
        const reader = new net.Socket({ fd: hostRead, readable: true, writable: false });
        writer.on('error', () => undefined);
        reader.on('error', () => undefined);
        const duplex = Duplex.from({ readable: reader, writable: writer });
        duplex.on('error', () => undefined); // a half closing early is normal here (EOF, exit)
        return {
          duplex,
          // end(), not destroy(): Duplex.from would take a destroyed half as a premature close and drop the reader too.
          endInput: () => writer.end(),
          destroyAll: () => {
            writer.destroy();
            reader.destroy();
            duplex.destroy();
          },
        };
      },
    };
  } catch (err) {
    for (const fd of opened) fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

function socketpairSetup(): StdioSetup {
  return {
    stdio: ['pipe', 'pipe', 'pipe'],
    cleanup: () => undefined,
    afterSpawn: (child) => {
      const stdin = child.stdin;
      const stdout = child.stdout;
      if (!stdin || !stdout) throw new Error('socketpair mode: missing child stdio streams');
      stdin.on('error', () => undefined);
      stdout.on('error', () => undefined);
      const duplex = Duplex.from({ readable: stdout, writable: stdin });
      duplex.on('error', () => undefined);
      return {
        duplex,
        endInput: () => stdin.end(),
        destroyAll: () => {
          stdin.destroy();
          stdout.destroy();
          duplex.destroy();
        },
      };
    },
  };
}

/** One unix socket on both fd 0 and fd 1 (TEST-SERVERS §5 "passfd"): accept a connection and hand it to the child. */
async function oneSocketSetup(): Promise<StdioSetup> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kloset-host-'));
  const sockPath = path.join(dir, 'sock');
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sockPath, resolve);
  });
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(sockPath);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const childEnd = await accepted;
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
  client.on('error', () => undefined);
  return {
    stdio: [childEnd, childEnd, 'pipe'],
    cleanup: () => undefined,
    afterSpawn: () => {
      childEnd.destroy();
      return {
        duplex: client,
        endInput: () => client.end(),
        destroyAll: () => client.destroy(),
      };
    },
  };
}

/** A connector entry resolved from a manifest. */
export interface ManifestConnector {
  kind: ConnectorKind;
  /** Absolute executable path: the manifest directory joined with `executable`. */
  executable: string;
  args: string[];
  protocols: string[];
  locationFlags: string[];
  /** The package name. */
  name: string;
}

/** Reads `manifest.yaml` and resolves the first connector of `kind` (or the one serving `protocol`). */
export function readManifest(manifestPath: string, kind: ConnectorKind, protocol?: string): ManifestConnector {
  const text = fs.readFileSync(manifestPath, 'utf8');
  const doc = parseYaml(text) as { name?: unknown; connectors?: unknown };
  const connectors = Array.isArray(doc.connectors) ? (doc.connectors as Record<string, unknown>[]) : [];
  const candidates = connectors.filter((c) => c['type'] === kind);
  const match = protocol
    ? candidates.find((c) => Array.isArray(c['protocols']) && (c['protocols'] as unknown[]).includes(protocol))
    : candidates[0];
  if (!match) throw new Error(`${manifestPath}: no ${kind} connector${protocol ? ` for protocol ${protocol}` : ''}`);
  const executable = typeof match['executable'] === 'string' ? match['executable'] : '';
  if (!executable) throw new Error(`${manifestPath}: ${kind} connector has no executable`);
  const dir = path.dirname(path.resolve(manifestPath));
  // pkg joins the path to the package dir and refuses anything that escapes it.
  const joined = path.join(dir, executable);
  if (joined !== dir && !joined.startsWith(dir + path.sep)) {
    throw new Error(`${manifestPath}: executable ${executable} escapes the package directory`);
  }
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
  return {
    kind,
    executable: joined,
    args: list(match['args']),
    protocols: list(match['protocols']),
    locationFlags: list(match['location_flags']),
    name: typeof doc.name === 'string' ? doc.name : '',
  };
}

/** Spawns the `kind` connector of a manifest with its `executable` and `args`, relative to the manifest directory. */
export async function spawnFromManifest(
  manifestPath: string,
  kind: ConnectorKind,
  options: Omit<SpawnOptions, 'args'> & { protocol?: string } = {},
): Promise<PluginProcess & { connector: ManifestConnector }> {
  const connector = readManifest(manifestPath, kind, options.protocol);
  const proc = await spawnPlugin(connector.executable, { ...options, args: connector.args });
  return Object.assign(proc, { connector });
}
