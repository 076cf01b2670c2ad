// The fault matrix engine: every connector of an integration runs backup, restore or storage calls through the fault
// proxy under each fault class, and each cell must end complete and byte-identical, or failed with a clear message
// naming the item or the cause — never silent loss, corruption, a hang past the configured timeouts, or a crash.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import path from 'node:path';
import pLimit from 'p-limit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoSecrets, openConnector, spawnMode, type ConformanceTarget, type OpenConnector } from '../conformance/connect.ts';
import { pseudoRandom, randomMac } from '../conformance/data.ts';
import { isRegular, MODE, RESOURCE, type ConnectorKind, type ExportEntry, type ImportOutcome, type TreeSpec } from '../harness/index.ts';
import { startFaultProxy, type Fault, type FaultProxy } from './proxy.ts';

/** The fault classes of the matrix. */
export const FAULT_NAMES = ['reset', 'stall', 'latency', 'bandwidth', '429', '503', '500', 'truncate'] as const;
export type FaultName = (typeof FAULT_NAMES)[number];
/** Faults of the byte stream only (what applies to IMAP). */
export const TCP_FAULTS: readonly FaultName[] = ['reset', 'stall', 'latency', 'bandwidth'];

/** A service's own error body for an injected status (so its client classifies it as the real thing). */
export type ErrorBody = (status: number) => { contentType: string; text: string };

/** The fault of each class, for a connector whose request timeout is `timeoutMs` (stalls outlast it). */
export function faultOf(name: FaultName, o: { stallMs: number; errorBody?: ErrorBody }): Fault {
  switch (name) {
    case 'reset':
      // Every 300 kB of traffic one connection is reset, three times: big transfers are cut in the middle.
      return { kind: 'reset', afterBytes: 300_000, times: 3 };
    case 'stall':
      return { kind: 'stall', afterBytes: 200_000, ms: o.stallMs, times: 1 };
    case 'latency':
      return { kind: 'latency', ms: 40 };
    case 'bandwidth':
      return { kind: 'bandwidth', bytesPerSecond: 2_000_000 };
    case '429':
    case '503':
      return { kind: 'status', status: Number(name), burst: 2, period: 6, times: 4, retryAfter: '1', body: o.errorBody };
    case '500':
      return { kind: 'status', status: 500, burst: 2, period: 6, times: 4, body: o.errorBody };
    case 'truncate':
      return { kind: 'truncate', times: 2, minBytes: 2000, match: (r) => r.method === 'GET' };
  }
}

/** One integration under test: how to reach its server directly or through a proxy, and its seed data. */
export interface Subject {
  name: string;
  target: ConformanceTarget;
  kinds: ConnectorKind[];
  layer: 'tcp' | 'http';
  faults: readonly FaultName[];
  /** Where the proxy forwards to. */
  upstream(): string | number;
  /** How long a stall lasts: 30 s, or shorter where the connector's timeout cannot be lowered by option. */
  stallMs: number;
  errorBody?: ErrorBody;
  /** Importer or exporter config for the collection (folder, bucket prefix, mailbox…) `name`. */
  config(name: string, via?: FaultProxy): Record<string, string>;
  /** Storage config for a repository named `name`. */
  storeConfig(name: string, via?: FaultProxy): Record<string, string>;
  /** The seed tree, restored once into the source collection. */
  tree: TreeSpec;
  /** The snapshot path of the collection root `name` in this integration's importer records. */
  rootOf(name: string): string;
  /**
   * Whether the server serves objects in its own form (Radicale re-serialises iCalendar and adds collection
   * metadata): the seed is then checked by name, and restores are compared with the baseline backup.
   */
  serverRewrites?: boolean;
  /** Server-made files left out of comparisons (Radicale's `.collection.json` holds the collection's own name). */
  ignore?: RegExp;
  /** Whether file names survive a restore exactly (IMAP renames messages after their new UIDs). */
  exactNames: boolean;
  secrets: string[];
}

/** How one cell ended. */
export type CellResult = { ok: true; note?: string } | { ok: false; message: string };

/** The results of a run, printed as a table. */
export class Matrix {
  readonly rows = new Map<string, Map<FaultName, CellResult>>();
  record(connector: string, fault: FaultName, r: CellResult): void {
    let row = this.rows.get(connector);
    if (!row) this.rows.set(connector, (row = new Map()));
    row.set(fault, r);
  }
  /** A compact table: connector × fault → ok / FAIL, then the failure messages. */
  render(): string {
    const cols = FAULT_NAMES.filter((f) => [...this.rows.values()].some((r) => r.has(f)));
    const w = Math.max(...[...this.rows.keys()].map((k) => k.length), 9);
    const lines = [`${'connector'.padEnd(w)} | ${cols.map((c) => c.padEnd(9)).join(' | ')}`];
    lines.push(`${'-'.repeat(w)}-|-${cols.map(() => '-'.repeat(9)).join('-|-')}`);
    const notes: string[] = [];
    for (const [k, row] of this.rows) {
      const cells = cols.map((c) => {
        const r = row.get(c);
        if (!r) return 'n/a'.padEnd(9);
        if (r.ok) return 'ok'.padEnd(9);
        notes.push(`${k} × ${c}: ${r.message}`);
        return `fail[${notes.length}]`.padEnd(9);
      });
      lines.push(`${k.padEnd(w)} | ${cells.join(' | ')}`);
    }
    return [...lines, ...notes.map((n, i) => `[${i + 1}] ${n}`)].join('\n');
  }
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** A message is clear when it says something: not empty, not an object dump, not a bare "undefined". */
export function assertClear(message: string, where: string): void {
  expect(message.trim().length, `${where}: empty failure message`).toBeGreaterThan(5);
  expect(message, `${where}: unreadable failure message`).not.toMatch(/\[object Object\]|^undefined$|^Error$/);
}

/** Runs `fn` under a deadline; a run past it is a hang. */
async function deadline<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HangError(`${what} hung: still running after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

class HangError extends Error {}

/** Content digests of the regular files of an import, by path relative to `root`. */
function digests(outcome: ImportOutcome, root: string, ignore?: RegExp): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of outcome.records) {
    if (r.isXattr || r.error || !r.fileInfo || !isRegular(r.fileInfo.mode)) continue;
    const rel = relative(r.pathname, root);
    if (rel === undefined || ignore?.test(rel)) continue;
    const c = outcome.contents.get(r.pathname);
    if (c === undefined) continue;
    out.set(rel, typeof c === 'string' ? c : sha(c));
  }
  return out;
}

function relative(p: string, root: string): string | undefined {
  if (root === '/') return p;
  if (p === root) return '/';
  return p.startsWith(`${root}/`) ? p.slice(root.length) : undefined;
}

/** Comparable form of a digest map: exact paths, or directory + digest where names are not kept. */
function comparable(m: Map<string, string>, exactNames: boolean): string[] {
  return [...m].map(([p, d]) => (exactNames ? `${p} ${d}` : `${path.posix.dirname(p)}/* ${d}`)).sort();
}

/** Export entries restoring the files of `outcome` below `root` at the top of the destination. */
function entriesOf(outcome: ImportOutcome, root: string): ExportEntry[] {
  const out: ExportEntry[] = [];
  for (const r of outcome.records) {
    if (r.isXattr || r.error || !r.fileInfo) continue;
    const rel = relative(r.pathname, root);
    if (rel === undefined) continue;
    const c = outcome.contents.get(r.pathname);
    const bytes = typeof c === 'string' || c === undefined ? Buffer.alloc(0) : c;
    out.push({
      path: rel,
      info: { ...r.fileInfo, size: isRegular(r.fileInfo.mode) ? bytes.length : r.fileInfo.size },
      target: r.target || undefined,
      xattrs: r.extendedAttributes,
      content: isRegular(r.fileInfo.mode) ? bytes : undefined,
    });
  }
  out.sort((a, b) => (a.path === '/' ? -1 : b.path === '/' ? 1 : 0));
  if (out[0]?.path !== '/') out.unshift({ path: '/', info: { name: 'root', mode: (MODE.DIR | 0o755) >>> 0 } });
  return out;
}

/** Files of a seed tree by path, with their digests. */
function treeDigests(tree: TreeSpec, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, v] of Object.entries(tree)) {
    const p = `${prefix}/${name}`;
    if (typeof v === 'string' || v instanceof Uint8Array) out.set(p, sha(typeof v === 'string' ? Buffer.from(v) : v));
    else for (const [k, d] of treeDigests(v, p)) out.set(k, d);
  }
  return out;
}

/** Storage items of a cell: a tiny, a medium and a multi-part object. */
function storageItems(seed: number): Array<{ mac: Buffer; data: Buffer }> {
  return [1, 150_000, 1_300_000].map((size, i) => ({ mac: randomMac(), data: pseudoRandom(size, seed * 10 + i) }));
}

/** The connectors a cell opened (cells may run side by side: a failing cell closes only its own). */
const cellConnectors = new AsyncLocalStorage<OpenConnector[]>();

/** Runs every cell of a subject; returns the matrix rows it filled. */
export class MatrixRun {
  readonly subject: Subject;
  readonly matrix: Matrix;
  private readonly opened: OpenConnector[] = [];
  private readonly messages: string[] = [];
  private baseline!: ImportOutcome;
  private expected!: Map<string, string>;
  private seq = 0;
  /** Longest a cell may run before it counts as a hang. */
  readonly cellDeadlineMs: number;

  constructor(subject: Subject, matrix: Matrix, cellDeadlineMs = 90_000) {
    this.subject = subject;
    this.matrix = matrix;
    this.cellDeadlineMs = cellDeadlineMs;
  }

  private async open(kind: ConnectorKind, config: Record<string, string>): Promise<OpenConnector> {
    const c = await openConnector(this.subject.target, kind);
    this.opened.push(c);
    cellConnectors.getStore()?.push(c);
    await c.host.init(kind, this.subject.target.proto ?? this.subject.target.integration.protocols[0] ?? '', config, kind === 'storage' ? undefined : { maxConcurrency: 4 });
    return c;
  }

  private async close(c: OpenConnector): Promise<void> {
    const i = this.opened.indexOf(c);
    if (i >= 0) this.opened.splice(i, 1);
    try {
      await c.host.close();
    } catch {
      // A connector whose Close fails still has to exit cleanly on EOF: dispose checks that.
    }
    const err = c.stderr();
    await c.dispose();
    assertNoSecrets(err, this.subject.secrets, `${this.subject.name} stderr`);
  }

  /** Restores the seed tree into the source collection and takes the fault-free baseline import of it. */
  async seed(): Promise<void> {
    const s = this.subject;
    const exp = await this.open('exporter', s.config('fsrc'));
    const entries: ExportEntry[] = [{ path: '/', info: { name: 'fsrc', mode: (MODE.DIR | 0o755) >>> 0 } }];
    const walk = (node: TreeSpec, prefix: string): void => {
      for (const [name, v] of Object.entries(node)) {
        const p = `${prefix}/${name}`;
        if (typeof v === 'string' || v instanceof Uint8Array) {
          const content = typeof v === 'string' ? Buffer.from(v) : Buffer.from(v);
          entries.push({ path: p, info: { name, mode: 0o644, size: content.length, modTime: { seconds: 1_700_000_000, nanos: 0 } }, content });
        } else {
          entries.push({ path: p, info: { name, mode: (MODE.DIR | 0o755) >>> 0 } });
          walk(v, p);
        }
      }
    };
    walk(s.tree, '');
    const seeded = await exp.host.exportTree(entries);
    await this.close(exp);
    expect(seeded.status.code, seeded.status.details).toBe(0);
    expect(seeded.itemErrors).toEqual([]);
    this.baseline = await this.importFrom('fsrc');
    expect(this.baseline.status.code, this.baseline.status.details).toBe(0);
    expect(this.baseline.errors).toEqual([]);
    this.expected = digests(this.baseline, s.rootOf('fsrc'), s.ignore);
    const want = treeDigests(s.tree);
    if (s.serverRewrites) for (const p of want.keys()) expect([...this.expected.keys()]).toContain(p);
    else if (s.exactNames) expect(comparable(this.expected, true)).toEqual(comparable(want, true));
    else expect(this.expected.size).toBe(want.size);
  }

  private async importFrom(name: string, via?: FaultProxy): Promise<ImportOutcome> {
    const c = await this.open('importer', this.subject.config(name, via));
    try {
      return await c.host.importAll({ maxConcurrency: 4, content: 'bytes' });
    } finally {
      await this.close(c);
    }
  }

  /** Runs one cell and records it; throws (failing the test) on silent loss, corruption, a hang or a crash. */
  async cell(kind: ConnectorKind, fault: FaultName): Promise<CellResult> {
    return cellConnectors.run([], () => this.runCell(kind, fault));
  }

  private async runCell(kind: ConnectorKind, fault: FaultName): Promise<CellResult> {
    const s = this.subject;
    const proxy = await startFaultProxy({ layer: s.layer, target: s.upstream() });
    const name = `fdst-${kind.slice(0, 3)}-${fault}-${++this.seq}-${Date.now() % 100000}`;
    let result: CellResult;
    try {
      proxy.set(faultOf(fault, { stallMs: s.stallMs, errorBody: s.errorBody }));
      try {
        result = await deadline(this.cellDeadlineMs, `${s.name} ${kind} under ${fault}`, () =>
          kind === 'importer' ? this.importCell(proxy) : kind === 'exporter' ? this.exportCell(name, proxy) : this.storageCell(name, proxy),
        );
      } finally {
        proxy.set({ kind: 'none' });
      }
      // What a failed or finished cell left behind must be whole: checked directly, without the proxy.
      if (kind === 'exporter') await this.checkRestored(name, result);
      if (kind === 'storage') await this.checkStored(name);
    } catch (err) {
      // Close whatever the cell left open, then fail the test.
      for (const c of cellConnectors.getStore() ?? []) {
        const i = this.opened.indexOf(c);
        if (i < 0) continue;
        this.opened.splice(i, 1);
        await c.dispose().catch(() => undefined);
      }
      this.matrix.record(`${s.name} ${kind}`, fault, { ok: false, message: `BROKEN: ${(err as Error).message}` });
      throw err;
    } finally {
      await proxy.close();
    }
    if (!result.ok) {
      assertClear(result.message, `${s.name} ${kind} × ${fault}`);
      assertNoSecrets(result.message, s.secrets, 'a failure message');
      this.messages.push(result.message);
    }
    this.matrix.record(`${s.name} ${kind}`, fault, result);
    return result;
  }

  private async importCell(proxy: FaultProxy): Promise<CellResult> {
    const s = this.subject;
    let c: OpenConnector;
    try {
      c = await this.open('importer', s.config('fsrc', proxy));
    } catch (err) {
      return { ok: false, message: `Init: ${(err as Error).message}` };
    }
    let out: ImportOutcome;
    try {
      out = await c.host.importAll({ maxConcurrency: 4, content: 'sha256' });
    } catch (err) {
      await this.close(c).catch(() => undefined);
      return { ok: false, message: (err as Error).message };
    }
    await this.close(c);
    const got = digests(out, s.rootOf('fsrc'), s.ignore);
    const named = new Set([...out.errors.map((e) => e.pathname), ...out.itemErrors.map((e) => e.pathname)].map((p) => relative(p, s.rootOf('fsrc'))));
    // Whatever arrived must be intact, even in a failed run.
    for (const [p, d] of got) expect(d, `${s.name} importer delivered ${p} with wrong bytes`).toBe(this.expected.get(p));
    const failed = out.status.code !== 0;
    for (const p of this.expected.keys()) {
      if (got.has(p) || named.has(p) || failed) continue;
      throw new Error(`${s.name} importer: ${p} silently missing from a backup that reported success`);
    }
    const errors = [...out.errors.map((e) => `${e.pathname}: ${e.error}`), ...out.itemErrors.map((e) => `${e.pathname}: ${e.message}`)];
    for (const e of [...out.errors.map((x) => x.error), ...out.itemErrors.map((x) => x.message)]) assertClear(e, `${s.name} importer item error`);
    if (failed) return { ok: false, message: out.status.details || `status ${out.status.code}` };
    if (errors.length > 0) return { ok: false, message: errors.join('; ') };
    expect(got.size).toBe(this.expected.size);
    return { ok: true };
  }

  private async exportCell(name: string, proxy: FaultProxy): Promise<CellResult> {
    const s = this.subject;
    let c: OpenConnector;
    try {
      c = await this.open('exporter', s.config(name, proxy));
    } catch (err) {
      return { ok: false, message: `Init: ${(err as Error).message}` };
    }
    try {
      const out = await c.host.exportTree(entriesOf(this.baseline, s.rootOf('fsrc')), { endTimeoutMs: 60_000 });
      await this.close(c);
      for (const e of out.itemErrors) assertClear(e.error, `${s.name} exporter item error`);
      if (out.status.code !== 0) return { ok: false, message: out.status.details || `status ${out.status.code}` };
      if (out.itemErrors.length > 0) return { ok: false, message: out.itemErrors.map((e) => `${e.pathname}: ${e.error}`).join('; ') };
      return { ok: true };
    } catch (err) {
      await this.close(c).catch(() => undefined);
      return { ok: false, message: (err as Error).message };
    }
  }

  /** The restored collection, read back directly: every file present is whole; a success restored them all. */
  private async checkRestored(name: string, result: CellResult): Promise<void> {
    const s = this.subject;
    const back = await this.importFrom(name);
    if (back.status.code !== 0 && !result.ok) return; // nothing was created
    expect(back.status.code, back.status.details).toBe(0);
    const got = digests(back, s.rootOf(name), s.ignore);
    const want = comparable(this.expected, s.exactNames);
    const have = comparable(got, s.exactNames);
    for (const h of have) expect(want, `${s.name} exporter left ${h} that is not a whole restored file`).toContain(h);
    if (result.ok) expect(have, `${s.name} exporter reported success but the restore differs`).toEqual(want);
  }

  private async storageCell(name: string, proxy: FaultProxy): Promise<CellResult> {
    const s = this.subject;
    let c: OpenConnector;
    try {
      c = await this.open('storage', s.storeConfig(name, proxy));
    } catch (err) {
      return { ok: false, message: `Init: ${(err as Error).message}` };
    }
    const items = storageItems(this.seq);
    try {
      await c.host.create(Buffer.from(`_KLOSET_${name}`));
      await Promise.all(items.map((x) => c.host.put(RESOURCE.PACKFILE, x.mac, x.data)));
      for (const x of items) {
        const whole = await c.host.get(RESOURCE.PACKFILE, x.mac);
        if (sha(whole) !== sha(x.data)) throw new Error(`Get of a ${x.data.length}-byte packfile returned different bytes`);
        const offset = Math.floor(x.data.length / 3);
        const length = Math.max(1, Math.min(100_000, x.data.length - offset));
        const part = await c.host.get(RESOURCE.PACKFILE, x.mac, { offset, length });
        if (!part.equals(x.data.subarray(offset, offset + length))) throw new Error(`ranged Get of a ${x.data.length}-byte packfile returned different bytes`);
      }
      const listed = new Set((await c.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex')));
      for (const x of items) if (!listed.has(x.mac.toString('hex'))) throw new Error(`List misses a packfile that was Put`);
      expect((await c.host.open()).toString()).toBe(`_KLOSET_${name}`);
      await this.close(c);
      return { ok: true };
    } catch (err) {
      if (/different bytes|List misses/.test((err as Error).message)) throw err;
      await this.close(c).catch(() => undefined);
      return { ok: false, message: (err as Error).message };
    }
  }

  /** The repository read back directly: every packfile List shows opens whole (no half-written object is visible). */
  private async checkStored(name: string): Promise<void> {
    const s = this.subject;
    const c = await this.open('storage', s.storeConfig(name));
    try {
      let listed: Buffer[];
      try {
        listed = await c.host.list(RESOURCE.PACKFILE);
      } catch {
        return; // the repository was never created
      }
      const items = storageItems(this.seq);
      const sizes = new Set(items.map((x) => x.data.length));
      for (const mac of listed) {
        const data = await c.host.get(RESOURCE.PACKFILE, mac);
        expect(sizes, `${s.name} storage shows a packfile of ${data.length} bytes: half-written?`).toContain(data.length);
      }
    } finally {
      await this.close(c);
    }
  }

  /** Closes what is left and checks the messages gathered for secrets. */
  async finish(): Promise<void> {
    for (const c of this.opened.splice(0)) await c.dispose().catch(() => undefined);
    for (const m of this.messages) assertNoSecrets(m, this.subject.secrets, 'a failure message');
  }
}

/** One line telling how the matrix runs (in-process or spawned). */
export function modeLine(): string {
  return spawnMode() ? 'spawned executables (KLOSET_TS_SPAWN=1)' : 'in-process connectors';
}

/**
 * Registers one integration's matrix: the fault-free reference backup before, one test per connector × fault class,
 * then `after` (closing an emulator) and the rendered matrix printed under `fault matrix, <name> vs <against>`.
 */
export function describeMatrix(subject: Subject, against: string, after?: () => Promise<void>): void {
  const matrix = new Matrix();
  const run = new MatrixRun(subject, matrix);

  beforeAll(async () => {
    await run.seed();
  }, 120_000);

  afterAll(async () => {
    await run.finish();
    await after?.();
    process.stdout.write(`\nfault matrix, ${subject.name} vs ${against}, ${modeLine()}:\n${matrix.render()}\n`);
  });

  // Cells wait on stalls, timeouts and Retry-After far more than they compute, so they run three at a time: each has
  // its own proxy, and the emulators build the absolute URLs they hand out (upload sessions, downloads) from the
  // address each request was sent to, so a cell's uploads and downloads go through its own proxy.
  const limit = pLimit(3);
  describe(`fault matrix: ${subject.name}`, () => {
    for (const kind of subject.kinds) {
      for (const fault of subject.faults) {
        it.concurrent(`${kind} × ${fault}: complete and byte-identical, or a clear failure`, async () => {
          await limit(() => run.cell(kind, fault));
        }, 240_000);
      }
    }
  });
}
