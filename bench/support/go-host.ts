// The Go host stand-in (bench/go-host/main.go): grpc-go over two pipes like the real Plakar host, so storage figures
// measure the plugin rather than the Node harness (whose http2 client costs more CPU per Get than the plugin).
// `goHost()` builds it once per source version (cached under node_modules/.cache/go-host/) and runs jobs; it answers
// `{ available: false, reason }` when Go or the grpc-go sources are missing (scripts/install-bench-tools.sh installs them)
// or when KLOSET_TS_BENCH_HOST=node asks for the Node harness (to compare the two hosts).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readManifest } from '../../test/harness/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const SOURCE_DIR = join(ROOT, 'bench', 'go-host');
const CACHE = join(ROOT, 'node_modules', '.cache', 'go-host');
/** Where Debian's golang-google-grpc-dev and golang-google-protobuf-dev put their sources (GOPATH mode). */
const DEBIAN_GOPATH = '/usr/share/gocode';
const NEEDED = ['google.golang.org/grpc/clientconn.go', 'google.golang.org/protobuf/encoding/protowire/wire.go'];

/** One operation of a job (see bench/go-host/main.go). */
export type GoHostStep =
  | { op: 'create'; config: string; name?: string }
  | { op: 'open' | 'close' | 'delete'; name?: string }
  /** Gets from a file of `mac-hex type offset length` lines, one at a time; `verify` maps mac hex → local copy. */
  | { op: 'replay'; gets: string; verify?: Record<string, string>; name?: string }
  /** `count` synthetic objects of `size` bytes (object i of `sizes[i % sizes.length]` when given), `concurrency` at once. */
  | { op: 'put'; count: number; size: number; sizes?: number[]; concurrency: number; name?: string }
  /** Reads back whole (and checks the length of) every object of the last put. */
  | { op: 'get'; concurrency: number; name?: string };

export interface GoHostJob {
  executable: string;
  args: string[];
  proto: string;
  config: Record<string, string>;
  steps: GoHostStep[];
}

export interface GoHostStepResult {
  op: string;
  name?: string;
  /** Wall seconds (for replay: the sum of the Gets' own times, verification excluded). */
  seconds: number;
  calls: number;
  bytes: number;
  /** CPU seconds of the plugin process during the step (10 ms ticks). */
  pluginCpu: number;
  /** CPU seconds of the Go host itself during the step. */
  hostCpu: number;
  verified?: number;
  /** Per-Get wall time quantiles in ms (replay only). */
  latencyMs?: { p50: number; p90: number; p99: number; max: number };
}

export interface GoHostOutput {
  ok: boolean;
  error?: string;
  /** `grpc-go <version>`. */
  host: string;
  init?: { origin: string; type: string; root: string; flags: number };
  steps: GoHostStepResult[];
  plugin: { pid: number; peakRssBytes: number; exitCode: number };
}

export interface GoHost {
  available: true;
  /** `Go host (grpc-go 1.33.3, go1.19.8)`, for labels. */
  label: string;
  /** Runs one job with a freshly spawned plugin; rejects when the job fails (with the plugin's message). */
  run(job: GoHostJob): Promise<GoHostOutput>;
}

let cached: Promise<GoHost | { available: false; reason: string }> | undefined;

/** The Go host, built when needed, or why it is not available. */
export function goHost(): Promise<GoHost | { available: false; reason: string }> {
  cached ??= prepare();
  return cached;
}

/** Executable and argv[1..] of the manifest's storage connector, for a job. */
export function storageExecutable(manifest: string): { executable: string; args: string[] } {
  const c = readManifest(manifest, 'storage');
  return { executable: c.executable, args: c.args };
}

function goEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GO111MODULE: 'off',
    GOPATH: `${DEBIAN_GOPATH}:${join(CACHE, 'gopath')}`,
    GOCACHE: join(CACHE, 'gocache'),
    GOFLAGS: '',
  };
}

async function prepare(): Promise<GoHost | { available: false; reason: string }> {
  if (process.env.KLOSET_TS_BENCH_HOST === 'node') return { available: false, reason: 'KLOSET_TS_BENCH_HOST=node asks for the Node harness' };
  const version = spawnSync('go', ['version'], { encoding: 'utf8', env: goEnv() });
  if (version.error || version.status !== 0) {
    return { available: false, reason: 'the go command is not installed (scripts/install-bench-tools.sh installs it)' };
  }
  const missing = NEEDED.filter((f) => !existsSync(join(DEBIAN_GOPATH, 'src', f)));
  if (missing.length > 0) {
    return { available: false, reason: `grpc-go / protobuf sources missing under ${DEBIAN_GOPATH} (scripts/install-bench-tools.sh installs them)` };
  }
  const goVersion = version.stdout.trim().split(' ')[2] ?? 'go';
  const source = readFileSync(join(SOURCE_DIR, 'main.go'));
  const hash = createHash('sha256').update(source).update(goVersion).digest('hex').slice(0, 16);
  const binary = join(CACHE, `go-host-${hash}`);
  if (!existsSync(binary)) {
    mkdirSync(join(CACHE, 'gopath'), { recursive: true });
    const tmp = `${binary}.tmp-${process.pid}`;
    const built = spawnSync('go', ['build', '-o', tmp, '.'], { cwd: SOURCE_DIR, encoding: 'utf8', env: goEnv() });
    if (built.error || built.status !== 0) {
      return { available: false, reason: `go build of bench/go-host failed: ${(built.stderr || String(built.error)).trim().slice(0, 500)}` };
    }
    renameSync(tmp, binary);
    // Builds of older sources are not needed any more.
    for (const f of readdirSync(CACHE)) {
      if (/^go-host-[0-9a-f]{16}$/.test(f) && join(CACHE, f) !== binary) rmSync(join(CACHE, f), { force: true });
    }
  }
  const grpcVersion = grpcGoVersion();
  return {
    available: true,
    label: `Go host (grpc-go ${grpcVersion}, ${goVersion})`,
    run: (job) => runJob(binary, job),
  };
}

function grpcGoVersion(): string {
  try {
    const text = readFileSync(join(DEBIAN_GOPATH, 'src', 'google.golang.org', 'grpc', 'version.go'), 'utf8');
    return /Version = "([^"]+)"/.exec(text)?.[1] ?? '?';
  } catch {
    return '?';
  }
}

function runJob(binary: string, job: GoHostJob): Promise<GoHostOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => (stdout += s));
    child.once('error', reject);
    child.once('close', (code) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      let out: GoHostOutput;
      try {
        out = JSON.parse(line) as GoHostOutput;
      } catch {
        reject(new Error(`go-host exited with ${code} without a result line`));
        return;
      }
      if (!out.ok || code !== 0) reject(new Error(`go-host: ${out.error ?? `exited with ${code}`}`));
      else resolve(out);
    });
    child.stdin.end(JSON.stringify(job));
  });
}
