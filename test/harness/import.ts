// The host's Import driver: reads records, opens content with bounded workers, acks in completion order, half-closes.
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { HostAbortError, HostError } from './errors.ts';
import { goModeProblem, isRegular, isSymlink } from './file-mode.ts';
import type { PluginHost } from './host.ts';
import {
  bool,
  bytes,
  contentKey,
  decodeMessage,
  encodeMessage,
  has,
  recordFromProto,
  recordToProto,
  sub,
  type WireRecord,
} from './messages.ts';
import { EofError, GrpcError, STATUS, type Call, type CallStatus } from './transport.ts';

/** Options of `importAll`. */
export interface ImportOptions {
  /** Workers that process records (and so concurrent Opens). The real host ran at most 2. Default 2. */
  maxConcurrency?: number;
  /** Records buffered before the host stops reading the stream. Default: Init's maxconcurrency (kloset's channel size). */
  readAhead?: number;
  /** Whether a regular-file/xattr record gets opened (false = like a cached, unchanged file). Default true. */
  openContent?: boolean | ((record: WireRecord) => boolean);
  /** Delay in ms before each ack is sent. */
  ackDelay?: number;
  /** Like `backup -dry-run`: every record is acked, nothing is opened. */
  dryRun?: boolean;
  /** Keep content as bytes (default), as a sha256 hex digest, or stream it into a writable (undefined = discard). */
  content?: 'bytes' | 'sha256' | ((record: WireRecord) => Writable | undefined);
  /** How long the plugin has to end Import after the half-close (default 10 000 ms). */
  endTimeoutMs?: number;
  /** Called for each record as it arrives (after validation). */
  onRecord?: (record: WireRecord) => void;
}

/** A per-item failure the host records in the snapshot and goes on (a failed Open, an empty chunk…). */
export interface ItemError {
  pathname: string;
  /** `contentKey` of the record. */
  key: string;
  /** The host's words, e.g. `failed to receive file data: <message>` or `unexpected response: `. */
  message: string;
}

/** What an import produced. */
export interface ImportOutcome {
  /** Records in arrival order. */
  records: WireRecord[];
  /** Ack headers in the order they were sent (completion order). */
  acks: WireRecord[];
  /** Content by `contentKey`: bytes, or a sha256 hex digest with `content: 'sha256'`. */
  contents: Map<string, Buffer | string>;
  /** Error records the plugin sent. */
  errors: { pathname: string; error: string }[];
  /** Per-item failures (Open errors, empty chunks, oversized chunks). */
  itemErrors: ItemError[];
  /** Warnings raised during this import. */
  warnings: string[];
  /** Contract violations raised during this import (only when the host is not strict). */
  violations: string[];
  /** The final status of the Import call. */
  status: CallStatus;
  stats: {
    opens: number;
    maxConcurrentOpens: number;
    /** Largest number of records received but not yet acked at one time. */
    maxUnacked: number;
  };
}

/** Runs one Import as the host does; see ImportOptions. */
export async function importAll(host: PluginHost, options: ImportOptions = {}): Promise<ImportOutcome> {
  const conn = host.connection;
  const workers = Math.max(1, options.maxConcurrency ?? 2);
  const readAhead = Math.max(1, options.readAhead ?? host.initOptions?.maxConcurrency ?? 2);
  const contentMode = options.content ?? 'bytes';
  const warningsBefore = host.warnings.length;
  const violationsBefore = host.violations.length;

  const outcome: ImportOutcome = {
    records: [],
    acks: [],
    contents: new Map(),
    errors: [],
    itemErrors: [],
    warnings: [],
    violations: [],
    status: { code: STATUS.OK, details: '', trailers: {} },
    stats: { opens: 0, maxConcurrentOpens: 0, maxUnacked: 0 },
  };

  const call = await conn.stream(host.path('Import'));
  let consumed = 0;
  let finished = false;
  let readerDone = false;
  let fatal: Error | undefined;
  let ackFailure = false;
  let unacked = 0;
  let openNow = 0;
  const queue: WireRecord[] = [];
  const seen = new Set<string>();
  let wake: (() => void) | undefined;
  let space: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const setFatal = (err: unknown): void => {
    fatal ??= err instanceof Error ? err : new Error(String(err));
    const s = space;
    space = undefined;
    s?.();
    notify();
    call.cancel();
  };

  // The plugin must not end the call before the host's half-close.
  let endedBeforeHalfClose: CallStatus | undefined;
  void call.status.then((s) => {
    if (!call.isHalfClosed && s.code !== STATUS.CANCELLED) endedBeforeHalfClose = s;
  });

  const reader = async (): Promise<void> => {
    try {
      for (;;) {
        while (queue.length >= readAhead && fatal === undefined) {
          await new Promise<void>((resolve) => (space = resolve));
        }
        if (fatal !== undefined) return;
        const msg = await call.read();
        if (msg === undefined) return; // Ended (OK) without `finished`: the host takes it as the end of records.
        consumed++;
        const res = decodeMessage('importer.ImportResponse', msg);
        if (bool(res, 'finished')) {
          if (has(res, 'record')) host.violation('an ImportResponse carried both finished and a record; the host drops the record');
          finished = true;
          return;
        }
        const rm = sub(res, 'record');
        if (!rm) throw new HostAbortError('expected a record');
        const record = recordFromProto(rm);
        if (record.error === '' && !record.isXattr && !record.fileInfo) {
          throw new HostAbortError(`invalid record ${record.pathname}: missing fileinfo`);
        }
        validateRecord(host, record, seen);
        options.onRecord?.(record);
        outcome.records.push(record);
        if (record.error !== '') outcome.errors.push({ pathname: record.pathname, error: record.error });
        unacked++;
        outcome.stats.maxUnacked = Math.max(outcome.stats.maxUnacked, unacked);
        queue.push(record);
        notify();
      }
    } catch (err) {
      // A non-OK status before `finished` fails the backup with the raw status text.
      setFatal(err instanceof GrpcError ? new HostError(err.message, err) : err);
    } finally {
      readerDone = true;
      notify();
    }
  };

  let ackChain: Promise<void> = Promise.resolve();
  const sendAck = (header: WireRecord): void => {
    ackChain = ackChain.then(async () => {
      if (ackFailure || fatal !== undefined) return;
      if (options.ackDelay) await new Promise((r) => setTimeout(r, options.ackDelay));
      try {
        await call.write(encodeMessage('importer.ImportRequest', { result: { header: recordToProto(header) } }));
        outcome.acks.push(header);
        unacked--;
      } catch (err) {
        if (err instanceof EofError) ackFailure = true;
        else setFatal(err);
      }
    });
  };

  const wantsContent = (record: WireRecord): boolean => {
    if (record.error !== '') return false;
    if (!record.isXattr && !isRegular(record.fileInfo?.mode ?? 0)) return false;
    if (options.dryRun) return false;
    const open = options.openContent ?? true;
    return typeof open === 'function' ? open(record) : open;
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      if (fatal !== undefined) return;
      const record = queue.shift();
      if (!record) {
        if (readerDone) return;
        await new Promise<void>((resolve) => {
          const prev = wake;
          wake = () => {
            prev?.();
            resolve();
          };
        });
        continue;
      }
      const release = space;
      space = undefined;
      release?.();
      let size: number | undefined;
      if (wantsContent(record)) {
        openNow++;
        outcome.stats.opens++;
        outcome.stats.maxConcurrentOpens = Math.max(outcome.stats.maxConcurrentOpens, openNow);
        try {
          size = await openAndRead(host, record, contentMode, outcome);
        } finally {
          openNow--;
        }
      }
      sendAck(ackHeader(record, size));
    }
  };

  const readerDonePromise = reader();
  await Promise.all([readerDonePromise, ...Array.from({ length: workers }, () => worker())]);
  await ackChain;

  if (fatal !== undefined) {
    call.cancel();
    throw fatal;
  }
  if (ackFailure) {
    call.cancel();
    throw new HostAbortError(
      `EOF: the plugin ended Import (${describe(call.finalStatus)}) before the host half-closed; ` +
        `${unacked} ack(s) could not be sent`,
    );
  }
  if (endedBeforeHalfClose) {
    host.violation(
      `the plugin ended Import (${describe(endedBeforeHalfClose)}) before the host half-closed` +
        (finished ? '' : ' and without sending finished'),
    );
  } else if (!finished) {
    host.violation('Import ended without a finished message');
  }

  call.halfClose();
  const timeout = options.endTimeoutMs ?? 10_000;
  let timer: NodeJS.Timeout | undefined;
  const status = await Promise.race([
    call.status,
    new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeout))),
  ]);
  clearTimeout(timer);
  if (!status) {
    call.cancel();
    host.violation(`the plugin did not end Import within ${timeout} ms of the host's half-close`);
  } else {
    outcome.status = status;
    if (status.code !== STATUS.OK && !endedBeforeHalfClose) {
      host.violation(`the plugin ended Import with a non-OK status after finished: ${describe(status)}`);
    }
  }
  // The real host cancels the stream as soon as it is over (PROTOCOL §9); a no-op once the stream is closed.
  call.cancel();
  const extra = call.received - consumed;
  if (finished && extra > 0) host.violation(`${extra} message(s) after finished, which the host never reads`);

  outcome.warnings = host.warnings.slice(warningsBefore);
  outcome.violations = host.violations.slice(violationsBefore);
  return outcome;
}

/** Opens one record's content like the host's lazy reader; returns bytes read, or undefined after an item error. */
async function openAndRead(
  host: PluginHost,
  record: WireRecord,
  mode: NonNullable<ImportOptions['content']>,
  outcome: ImportOutcome,
): Promise<number | undefined> {
  const key = contentKey(record);
  const fail = (message: string): undefined => {
    outcome.itemErrors.push({ pathname: record.pathname, key, message });
    return undefined;
  };
  const request = encodeMessage('importer.OpenRequest', {
    record: {
      pathname: record.pathname,
      isXattr: record.isXattr,
      xattrName: record.xattrName,
      xattrType: record.xattrType,
      target: record.target,
    },
  });
  let call: Call;
  try {
    call = await host.connection.serverStream(host.path('Open'), request);
  } catch (err) {
    if (err instanceof GrpcError) return fail(err.message);
    throw err;
  }
  const parts: Buffer[] = [];
  const hash = mode === 'sha256' ? createHash('sha256') : undefined;
  const sink = typeof mode === 'function' ? mode(record) : undefined;
  let size = 0;
  let failure: string | undefined;
  for (;;) {
    let msg: Buffer | undefined;
    try {
      msg = await call.read();
    } catch (err) {
      if (err instanceof GrpcError) {
        failure = `failed to receive file data: ${err.hostMessage}`;
        break;
      }
      throw err;
    }
    if (msg === undefined) break;
    const chunk = bytes(decodeMessage('importer.OpenResponse', msg), 'chunk');
    if (chunk.length === 0) {
      // grpc-go decodes an empty proto3 bytes field as nil, which the host's reader rejects.
      failure = 'unexpected response: ';
      call.cancel();
      break;
    }
    size += chunk.length;
    if (hash) hash.update(chunk);
    else if (sink) await writeTo(sink, chunk);
    else if (mode === 'bytes') parts.push(chunk);
  }
  if (sink) await endWritable(sink);
  if (failure !== undefined) return fail(failure);
  if (hash) outcome.contents.set(key, hash.digest('hex'));
  else if (mode === 'bytes') outcome.contents.set(key, Buffer.concat(parts));
  return size;
}

/** The ack header as the host re-encodes the record (integration-grpc `RecordToProto`), with the size read. */
export function ackHeader(record: WireRecord, bytesRead?: number): WireRecord {
  const ok = record.error === '';
  const fi = record.fileInfo;
  const regular = isRegular(fi?.mode ?? 0);
  const header: WireRecord = {
    hasReader: ok && (record.isXattr || regular),
    pathname: record.pathname,
    error: record.error,
    isXattr: record.isXattr,
    xattrName: record.xattrName,
    xattrType: record.xattrType,
    target: record.target,
    extendedAttributes: record.extendedAttributes,
    fileAttributes: record.fileAttributes,
  };
  if (ok && !record.isXattr) {
    const base = fi ?? { name: '', size: 0, mode: 0, dev: 0, ino: 0, uid: 0, gid: 0, nlink: 0, username: '', groupname: '', flags: 0 };
    header.fileInfo = {
      ...base,
      size: bytesRead ?? base.size,
      nlink: base.nlink & 0xffff,
      modTime: base.modTime ?? { seconds: 0, nanos: 0 },
    };
  }
  return header;
}

/** Checks one record against the path, name and FileMode rules (violations) and the recommendations (warnings). */
function validateRecord(host: PluginHost, record: WireRecord, seen: Set<string>): void {
  const p = record.pathname;
  const where = JSON.stringify(p);
  if (!p.startsWith('/')) host.violation(`record ${where}: pathname is not absolute`);
  else if (p !== '/' && (path.posix.normalize(p) !== p || p.endsWith('/'))) {
    host.violation(`record ${where}: pathname is not clean (expected ${JSON.stringify(path.posix.normalize(p).replace(/(.)\/$/, '$1'))})`);
  }
  const key = contentKey(record);
  if (seen.has(key)) host.warn(`record ${where}${record.isXattr ? ` xattr ${record.xattrName}` : ''} was sent twice`);
  seen.add(key);
  const root = host.initResult?.root;
  if (root && root !== '/' && p !== root && !p.startsWith(root + '/') && !root.startsWith(p === '/' ? '/' : p + '/')) {
    host.warn(`record ${where} lies outside the Init root ${JSON.stringify(root)} (hidden from a default restore)`);
  }
  if (record.error !== '') return;
  if (record.isXattr) {
    if (record.xattrName === '') host.violation(`xattr record ${where}: empty xattrName`);
    if (record.xattrType !== 0 && record.xattrType !== 1) {
      host.violation(`xattr record ${where}: xattrType ${record.xattrType} (the host carries 0 = xattr, 1 = ADS)`);
    }
    if (!record.hasReader) host.warn(`xattr record ${where}: hasReader should be true`);
    return;
  }
  const fi = record.fileInfo;
  if (!fi) return;
  const expectedName = p === '/' ? '/' : path.posix.basename(p);
  if (fi.name !== expectedName) {
    host.violation(`record ${where}: fileInfo.name ${JSON.stringify(fi.name)} is not the last path element ${JSON.stringify(expectedName)}`);
  }
  const modeProblem = goModeProblem(fi.mode);
  if (modeProblem) host.violation(`record ${where}: ${modeProblem}`);
  if (isSymlink(fi.mode) && record.target === '') host.violation(`record ${where}: symlink without target`);
  if (!isSymlink(fi.mode) && record.target !== '') {
    host.violation(`record ${where}: target set on a non-symlink (kloset treats any record with a target as a symlink)`);
  }
  if (fi.size < -1) host.violation(`record ${where}: size ${fi.size} (only -1 means unknown)`);
  if (fi.nlink > 1) host.warn(`record ${where}: nlink ${fi.nlink} > 1 (the fs exporter hard-links records sharing dev:ino)`);
  if (!fi.modTime) host.warn(`record ${where}: no mod_time (the host reads the Unix epoch)`);
  else if (fi.modTime.nanos < 0 || fi.modTime.nanos >= 1e9) host.violation(`record ${where}: mod_time.nanos ${fi.modTime.nanos} out of range`);
  const regular = isRegular(fi.mode);
  if (record.hasReader !== regular) host.warn(`record ${where}: hasReader should be ${regular}`);
}

function describe(status: CallStatus | undefined): string {
  if (!status) return 'unknown status';
  return status.code === STATUS.OK ? 'status OK' : new GrpcError(status.code, status.details).message;
}

function writeTo(sink: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    sink.once('error', onError);
    const ok = sink.write(chunk);
    const done = (): void => {
      sink.off('error', onError);
      resolve();
    };
    if (ok) done();
    else sink.once('drain', done);
  });
}

function endWritable(sink: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    sink.once('error', reject);
    sink.end(() => resolve());
  });
}
