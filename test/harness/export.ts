// The host's Export driver: pre-order records, 1 MiB chunks plus an empty terminator, result checks that mirror its panics.
import fs from 'node:fs';
import path from 'node:path';
import { HostAbortError, HostError } from './errors.ts';
import { goModeFromStat, isDir, isRegular, MODE } from './file-mode.ts';
import type { PluginHost } from './host.ts';
import {
  decodeMessage,
  encodeMessage,
  has,
  makeFileInfo,
  recordToProto,
  resultFromProto,
  sub,
  type FileInfo,
  type WireRecord,
} from './messages.ts';
import { EofError, GrpcError, STATUS, type CallStatus } from './transport.ts';

/** One entry of a restored tree. */
export interface ExportEntry {
  /** Path relative to the restore target; `/` is the target itself. */
  path: string;
  /** File info; `name` defaults to the base name (and to `root-dir` for `/`, which is never `/` in a real restore). */
  info: Partial<FileInfo> & { mode: number };
  /** Symlink target. */
  target?: string;
  /** Names listed in `extendedAttributes`. */
  xattrs?: string[];
  /** Content of a regular file (default empty). */
  content?: Uint8Array | (() => AsyncIterable<Uint8Array>);
}

/** Options of `exportTree`. */
export interface ExportOptions {
  /** Largest content chunk (default 1 MiB, the host's buffer). */
  chunkSize?: number;
  /**
   * Restore of a single file: the host first sends a synthetic `/` (dir|0700, mtime now, name `/`).
   * Default: true when `entries` is one regular file not at `/`.
   */
  singleFile?: boolean;
  /** Simulates the host failing to read snapshot data inside this file: stop after `afterBytes`, no terminator, half-close. */
  failAt?: { path: string; afterBytes: number };
  /** How long to wait for the plugin's results and status after the half-close (default 30 000 ms). */
  endTimeoutMs?: number;
}

/** One result the plugin sent. */
export interface ExportResult {
  pathname: string;
  error: string;
  header: WireRecord;
}

/** What an export produced. */
export interface ExportOutcome {
  /** Records in the order they were sent. */
  sent: WireRecord[];
  /** Results in arrival order. */
  results: ExportResult[];
  /** Results that carried an error (the host reports them and keeps going). */
  itemErrors: { pathname: string; error: string }[];
  /** True when `failAt` cut the stream. */
  aborted: boolean;
  /** Final status of the Export call. */
  status: CallStatus;
  warnings: string[];
  violations: string[];
}

/** The panic text of the Go host on a nil result or header. */
const NIL_PANIC = 'panic: runtime error: invalid memory address or nil pointer dereference';

/** Compares two strings by their UTF-8 bytes, like Go's `strings.Compare`. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Sorts paths in the host's walk order: pre-order depth-first, siblings by name bytes. */
export function walkOrder(paths: string[]): string[] {
  const split = (p: string): string[] => (p === '/' ? [] : p.slice(1).split('/'));
  return [...paths].sort((a, b) => {
    const pa = split(a);
    const pb = split(b);
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
      const c = compareBytes(pa[i] as string, pb[i] as string);
      if (c !== 0) return c;
    }
    return pa.length - pb.length;
  });
}

/** Restores `entries` through the plugin's Export as the host does; see ExportOptions. */
export async function exportTree(host: PluginHost, entries: ExportEntry[], options: ExportOptions = {}): Promise<ExportOutcome> {
  const chunkSize = options.chunkSize ?? 1024 * 1024;
  const warningsBefore = host.warnings.length;
  const violationsBefore = host.violations.length;
  const plan = planRecords(entries, options.singleFile);

  const outcome: ExportOutcome = {
    sent: [],
    results: [],
    itemErrors: [],
    aborted: false,
    status: { code: STATUS.OK, details: '', trailers: {} },
    warnings: [],
    violations: [],
  };

  const call = await host.connection.stream(host.path('Export'));
  let fatal: Error | undefined;
  const setFatal = (err: unknown): void => {
    fatal ??= err instanceof Error ? err : new Error(String(err));
    call.cancel();
  };
  let endedEarly = false;
  let timedOut = false;
  let endedBeforeHalfClose = false;
  void call.status.then(() => {
    if (!call.isHalfClosed && fatal === undefined) endedBeforeHalfClose = true;
  });

  const sender = async (): Promise<void> => {
    const send = (value: object): Promise<void> => call.write(encodeMessage('plakar.exporter.ExportRequest', value));
    try {
      for (const { record, entry } of plan) {
        if (fatal !== undefined) return;
        await send({ record: recordToProto(record) });
        outcome.sent.push(record);
        if (!record.hasReader) continue;
        const failAt = options.failAt?.path === record.pathname ? options.failAt.afterBytes : undefined;
        let sentBytes = 0;
        for await (const piece of contentPieces(entry?.content, chunkSize)) {
          let chunk = piece;
          if (failAt !== undefined && sentBytes + chunk.length > failAt) chunk = chunk.subarray(0, failAt - sentBytes);
          if (chunk.length > 0) await send({ chunk });
          sentBytes += chunk.length;
          if (failAt !== undefined && sentBytes >= failAt) break;
        }
        if (failAt !== undefined) {
          outcome.aborted = true;
          return;
        }
        await send({ chunk: Buffer.alloc(0) }); // end-of-file terminator: bytes `12 00`
      }
    } catch (err) {
      if (err instanceof EofError) endedEarly = true;
      else setFatal(err);
    } finally {
      call.halfClose();
    }
  };

  const receiver = async (): Promise<void> => {
    try {
      for (;;) {
        const msg = await call.read();
        if (msg === undefined) return;
        const res = decodeMessage('plakar.exporter.ExportResponse', msg);
        const rm = has(res, 'result') ? sub(res, 'result') : undefined;
        if (!rm) throw new HostAbortError(`${NIL_PANIC} (an ExportResponse without result)`);
        const result = resultFromProto(rm);
        const header = result.header;
        if (!header) throw new HostAbortError(`${NIL_PANIC} (a Result without header)`);
        if (header.error === '' && !header.isXattr && !header.fileInfo) {
          throw new HostAbortError(`invalid record ${header.pathname}: missing fileinfo`);
        }
        outcome.results.push({ pathname: header.pathname, error: result.error, header });
        if (result.error !== '') outcome.itemErrors.push({ pathname: header.pathname, error: result.error });
      }
    } catch (err) {
      if (err instanceof GrpcError) {
        // A non-OK status fails the whole restore with the raw status text (not after our own cancel or a cut stream).
        if (fatal === undefined && !outcome.aborted && !timedOut) setFatal(new HostError(err.message, err));
      } else {
        setFatal(err);
      }
    }
  };

  const timeout = options.endTimeoutMs ?? 30_000;
  const receiving = receiver();
  await sender();
  let timer: NodeJS.Timeout | undefined;
  const finishedInTime = await Promise.race([
    receiving.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeout))),
  ]);
  clearTimeout(timer);
  if (!finishedInTime) {
    timedOut = true;
    call.cancel();
    await receiving;
    if (fatal === undefined) host.violation(`the plugin did not end Export within ${timeout} ms of the host's half-close`);
  }
  if (fatal !== undefined) throw fatal;
  const status = await call.status;
  outcome.status = status;
  if (endedEarly && !outcome.aborted) {
    throw new HostAbortError('EOF: the plugin ended Export before the host half-closed (the restore fails)');
  }
  if (endedBeforeHalfClose && !outcome.aborted) host.violation('the plugin ended Export before the host half-closed');

  checkResults(host, outcome);
  outcome.warnings = host.warnings.slice(warningsBefore);
  outcome.violations = host.violations.slice(violationsBefore);
  return outcome;
}

function checkResults(host: PluginHost, outcome: ExportOutcome): void {
  const sent = new Map<string, WireRecord>();
  for (const r of outcome.sent) sent.set(r.pathname, r);
  const counts = new Map<string, number>();
  for (const res of outcome.results) {
    counts.set(res.pathname, (counts.get(res.pathname) ?? 0) + 1);
    const original = sent.get(res.pathname);
    if (!original) {
      host.violation(`result for ${JSON.stringify(res.pathname)}, which the host never sent`);
      continue;
    }
    const a = original.fileInfo;
    const b = res.header.fileInfo;
    if (a && b && (a.mode !== b.mode || a.name !== b.name || a.size !== b.size)) {
      host.warn(`result header for ${JSON.stringify(res.pathname)} does not echo the record's fileInfo`);
    }
  }
  if (outcome.aborted) return;
  for (const r of outcome.sent) {
    const n = counts.get(r.pathname) ?? 0;
    if (n === 0) host.warn(`no result for ${JSON.stringify(r.pathname)}`);
    if (n > 1) host.warn(`${n} results for ${JSON.stringify(r.pathname)}`);
  }
}

interface PlannedRecord {
  record: WireRecord;
  entry?: ExportEntry;
}

function planRecords(entries: ExportEntry[], singleFileOption?: boolean): PlannedRecord[] {
  const byPath = new Map<string, ExportEntry>();
  for (const e of entries) {
    if (!e.path.startsWith('/') || (e.path !== '/' && (path.posix.normalize(e.path) !== e.path || e.path.endsWith('/')))) {
      throw new Error(`harness misuse: export path ${JSON.stringify(e.path)} is not absolute and clean`);
    }
    if (byPath.has(e.path)) throw new Error(`harness misuse: export path ${e.path} given twice`);
    byPath.set(e.path, e);
  }
  const only = entries.length === 1 ? entries[0] : undefined;
  const singleFile = singleFileOption ?? (only !== undefined && only.path !== '/' && isRegular(only.info.mode));
  const planned: PlannedRecord[] = [];
  if (singleFile) {
    if (!only || only.path === '/' || path.posix.dirname(only.path) !== '/') {
      throw new Error('harness misuse: a single-file restore has exactly one entry, /<name>');
    }
    // kloset's Export: the synthetic parent record of a single-file restore.
    const now = Date.now();
    planned.push({
      record: toRecord({
        path: '/',
        info: { name: '/', mode: (MODE.DIR | 0o700) >>> 0, modTime: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 } },
      }),
    });
  } else {
    if (!byPath.has('/')) throw new Error('harness misuse: the first exported record is always /, the restore target');
    for (const p of byPath.keys()) {
      if (p === '/') continue;
      const parent = byPath.get(path.posix.dirname(p));
      if (!parent || !isDir(parent.info.mode)) throw new Error(`harness misuse: ${p} has no parent directory entry`);
    }
  }
  for (const p of walkOrder([...byPath.keys()])) {
    const entry = byPath.get(p) as ExportEntry;
    if (entry.content !== undefined && !isRegular(entry.info.mode)) {
      throw new Error(`harness misuse: ${p} has content but is not a regular file`);
    }
    planned.push({ record: toRecord(entry), entry });
  }
  return planned;
}

/** The record the host sends for an entry (integration-grpc `RecordToProto` of a kloset record). */
function toRecord(entry: ExportEntry): WireRecord {
  const name = entry.info.name ?? (entry.path === '/' ? 'root-dir' : path.posix.basename(entry.path));
  const fileInfo = makeFileInfo({ ...entry.info, name, modTime: entry.info.modTime ?? { seconds: 0, nanos: 0 } });
  fileInfo.mode = fileInfo.mode >>> 0;
  return {
    hasReader: isRegular(fileInfo.mode),
    pathname: entry.path,
    error: '',
    isXattr: false,
    xattrName: '',
    xattrType: 0,
    target: entry.target ?? '',
    fileInfo,
    extendedAttributes: entry.xattrs ?? [],
    fileAttributes: 0,
  };
}

async function* contentPieces(
  content: ExportEntry['content'],
  chunkSize: number,
): AsyncGenerator<Buffer> {
  if (content === undefined) return;
  const source: AsyncIterable<Uint8Array> | Uint8Array = content instanceof Uint8Array ? content : content();
  const pieces = source instanceof Uint8Array ? [source] : source;
  // The host reads into one buffer of `chunkSize` and sends what each read returned; re-chunk to stay within it.
  for await (const piece of pieces) {
    const buf = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    for (let off = 0; off < buf.length; off += chunkSize) yield buf.subarray(off, off + chunkSize);
  }
}

/** A nested in-memory tree: strings/bytes are files, objects are directories. */
export type TreeSpec = { [name: string]: string | Uint8Array | TreeSpec };

/** Builds export entries from an in-memory tree (files 0644, directories dir|0755, fixed mtime). */
export function entriesFromTree(
  tree: TreeSpec,
  options: { rootName?: string; modTime?: { seconds: number; nanos: number } } = {},
): ExportEntry[] {
  const modTime = options.modTime ?? { seconds: 1_700_000_000, nanos: 0 };
  const out: ExportEntry[] = [
    { path: '/', info: { name: options.rootName ?? 'root-dir', mode: (MODE.DIR | 0o755) >>> 0, modTime } },
  ];
  const walk = (node: TreeSpec, prefix: string): void => {
    for (const [name, value] of Object.entries(node)) {
      const p = `${prefix}/${name}`;
      if (typeof value === 'string' || value instanceof Uint8Array) {
        const content = typeof value === 'string' ? Buffer.from(value) : value;
        out.push({ path: p, info: { name, mode: 0o644, size: content.length, modTime }, content });
      } else {
        out.push({ path: p, info: { name, mode: (MODE.DIR | 0o755) >>> 0, modTime } });
        walk(value, p);
      }
    }
  };
  walk(tree, '');
  return out;
}

/**
 * Builds export entries from a local directory (lstat → Go FileMode, mtime with nanoseconds, ids, nlink) as a
 * snapshot of it would restore them. A regular file gives a single-file restore.
 */
export function entriesFromDirectory(source: string): ExportEntry[] {
  const abs = path.resolve(source);
  const info = (p: string, name: string): Partial<FileInfo> & { mode: number } => {
    const st = fs.lstatSync(p, { bigint: true });
    return {
      name,
      size: Number(st.size),
      mode: goModeFromStat(Number(st.mode)),
      modTime: { seconds: Number(st.mtimeNs / 1_000_000_000n), nanos: Number(st.mtimeNs % 1_000_000_000n) },
      dev: Number(st.dev),
      ino: Number(st.ino),
      uid: Number(st.uid),
      gid: Number(st.gid),
      nlink: Number(st.nlink),
    };
  };
  const entry = (p: string, rel: string, name: string): ExportEntry => {
    const i = info(p, name);
    const e: ExportEntry = { path: rel, info: i };
    if (i.mode & MODE.SYMLINK) e.target = fs.readlinkSync(p);
    else if (isRegular(i.mode)) e.content = () => fs.createReadStream(p);
    return e;
  };
  const top = fs.lstatSync(abs);
  if (!top.isDirectory()) return [entry(abs, `/${path.basename(abs)}`, path.basename(abs))];
  const out: ExportEntry[] = [entry(abs, '/', path.basename(abs) || '/')];
  const walk = (dir: string, rel: string): void => {
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name);
      const r = rel === '/' ? `/${name}` : `${rel}/${name}`;
      const e = entry(p, r, name);
      out.push(e);
      if (isDir(e.info.mode)) walk(p, r);
    }
  };
  walk(abs, '/');
  return out;
}
