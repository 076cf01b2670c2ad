// The importer service: Init, Ping, Import (records, finished, acks, half-close) and Open (content in chunk messages, see streams.ts writeChunks), per PROTOCOL.md §3.4.
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { ContentSource, ImporterDefinition, ImporterInstance, ImportItem, Integration, XattrItem } from '../define.ts';
import { describeError, KlosetError } from '../errors.ts';
import { log } from '../log.ts';
import { baseName, cleanPath } from '../paths.ts';
import { encodeChunkMessage, serviceDefinition } from './codec.ts';
import { fileInfo, GoMode } from './fileinfo.ts';
import { ConnectorRuntime, configFrom, hostOptionsFrom } from './runtime.ts';
import { toStatus } from './status.ts';
import { cancellationSignal, writeChunks, writeMessage } from './streams.ts';

/** Location flag bits (PROTOCOL.md §3.2). */
export const LocationFlag = { localfs: 1, file: 2, stream: 4, needack: 8, nomerge: 16 } as const;

type Opener = () => Promise<ContentSource>;

/** Content openers of records sent and not yet acked, keyed like the Go SDK (path, or xattr name), queued per key. */
export class OpenTable {
  private readonly entries = new Map<string, Opener[]>();
  /** Records whose content is still held. */
  size = 0;

  add(key: string, open: Opener): void {
    const list = this.entries.get(key);
    if (list) list.push(open);
    else this.entries.set(key, [open]);
    this.size++;
  }
  peek(key: string): Opener | undefined {
    return this.entries.get(key)?.[0];
  }
  /** Releases the oldest opener of `key` (the host is done with that record). */
  ack(key: string): void {
    const list = this.entries.get(key);
    if (!list) return;
    list.shift();
    this.size--;
    if (list.length === 0) this.entries.delete(key);
  }
}

interface WireRecord {
  pathname?: string;
  isXattr?: boolean;
  xattrName?: string;
  xattrType?: number;
}

/** The table key of a record: its path, or `xattr:<path><:|@><name>` for an extended attribute (ADS uses `@`). */
export function recordKey(r: WireRecord): string {
  if (r.isXattr) return `xattr:${r.pathname ?? ''}${r.xattrType === 1 ? '@' : ':'}${r.xattrName ?? ''}`;
  return r.pathname ?? '';
}

function xattrOpener(x: XattrItem): Opener {
  const v = x.value;
  if (typeof v === 'function') return v;
  const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
  return async () => bytes;
}

/** Wire records for one item, registering content openers in `table`. */
export function recordsFor(item: ImportItem, table: OpenTable): Array<Record<string, unknown>> {
  const path = typeof item.path === 'string' && item.path.startsWith('/') ? cleanPath(item.path) : undefined;
  if (path === undefined) {
    return [{ pathname: cleanPath(`/${String(item.path ?? '')}`), error: `invalid path ${JSON.stringify(item.path)} from the importer` }];
  }
  if (item.type === 'error') return [{ pathname: path, error: describeError(item.error) }];
  const name = baseName(path);
  const out: Array<Record<string, unknown>> = [];
  switch (item.type) {
    case 'file': {
      const size = Number.isInteger(item.size) && item.size >= -1 ? item.size : -1;
      const names = item.xattrNames ?? (item.xattrs ?? []).map((x) => x.name);
      out.push({
        pathname: path,
        hasReader: true,
        fileInfo: fileInfo({ name, size, mode: (item.perm ?? 0o644) & 0o7777 & GoMode.perm, mtime: item.mtime }),
        extendedAttributes: names,
      });
      table.add(path, item.open);
      break;
    }
    case 'dir': {
      const names = item.xattrNames ?? (item.xattrs ?? []).map((x) => x.name);
      out.push({
        pathname: path,
        hasReader: false,
        fileInfo: fileInfo({ name, size: 0, mode: (GoMode.dir | ((item.perm ?? 0o755) & GoMode.perm)) >>> 0, mtime: item.mtime ?? new Date(0) }),
        extendedAttributes: names,
      });
      break;
    }
    case 'symlink':
      out.push({
        pathname: path,
        hasReader: false,
        target: item.target,
        fileInfo: fileInfo({ name, size: Buffer.byteLength(item.target), mode: (GoMode.symlink | 0o777) >>> 0, mtime: item.mtime ?? new Date(0) }),
      });
      break;
  }
  const xattrs = item.type === 'file' || item.type === 'dir' ? (item.xattrs ?? []) : [];
  for (const x of xattrs) {
    const rec = { pathname: path, isXattr: true, xattrName: x.name, xattrType: x.kind === 'ads' ? 1 : 0, hasReader: true };
    table.add(recordKey(rec), xattrOpener(x));
    out.push(rec);
  }
  return out;
}

/** Builds the grpc-js implementation of `importer.Importer` for an integration's importer. */
export function importerService(integration: Integration, def: ImporterDefinition): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  runtime: ConnectorRuntime<ImporterInstance>;
} {
  const rt = new ConnectorRuntime<ImporterInstance>(integration, 'importer', def);
  let table = new OpenTable();

  const unary =
    (fn: (req: any) => Promise<unknown>) =>
    (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>): void => {
      fn(call.request).then(
        (res) => callback(null, res),
        (err: unknown) => callback(toStatus(err, rt.scope)),
      );
    };

  const implementation: grpc.UntypedServiceImplementation = {
    Init: unary(async (req) => {
      const inst = await rt.init(String(req.proto ?? ''), configFrom(req.config), hostOptionsFrom(req.options));
      if (!inst.origin) throw new KlosetError('the importer returned an empty origin', status.INTERNAL);
      const root = cleanPath(inst.root || '/');
      let flags = 0;
      if (inst.flags?.stream) flags |= LocationFlag.stream;
      if (inst.flags?.nomerge) flags |= LocationFlag.nomerge;
      return { origin: inst.origin, type: inst.type ?? String(req.proto ?? integration.name), root, flags };
    }),
    Ping: unary(async () => {
      await rt.require('Ping').ping?.();
      return {};
    }),
    Close: unary(async () => {
      await rt.close();
      return {};
    }),
    Import: (call: grpc.ServerDuplexStream<any, any>): void => {
      void runImport(call);
    },
    Open: (call: grpc.ServerWritableStream<any, any>): void => {
      void runOpen(call);
    },
  };

  async function runImport(call: grpc.ServerDuplexStream<any, any>): Promise<void> {
    const signal = cancellationSignal(call);
    const current = new OpenTable();
    table = current;
    const hostDone = new Promise<void>((resolve) => {
      call.on('end', resolve);
      call.on('cancelled', resolve);
    });
    call.on('data', (req: { result?: { header?: WireRecord } }) => {
      const header = req.result?.header;
      if (header) current.ack(recordKey(header));
    });
    call.on('error', () => undefined);
    let sent = 0;
    try {
      const inst = rt.require('Import');
      for await (const item of inst.records(signal)) {
        if (signal.aborted) break;
        for (const record of recordsFor(item, current)) {
          sent++;
          const pending = writeMessage(call, { record });
          if (pending) await pending;
        }
      }
      if (signal.aborted) return;
      const pending = writeMessage(call, { finished: true });
      if (pending) await pending;
    } catch (err) {
      if (signal.aborted) return;
      log.error(`import failed after ${sent} records: ${describeError(err)}`);
      call.emit('error', toStatus(err, rt.scope));
      return;
    }
    await hostDone;
    if (!signal.aborted) call.end();
  }

  async function runOpen(call: grpc.ServerWritableStream<any, any>): Promise<void> {
    const signal = cancellationSignal(call);
    const record = (call.request?.record ?? {}) as WireRecord;
    const path = record.pathname ?? '';
    try {
      rt.require('Open');
      const open = table.peek(recordKey(record));
      if (!open) {
        throw new KlosetError(`cannot open ${JSON.stringify(path)}: no such record in this import`, status.NOT_FOUND);
      }
      let source: ContentSource;
      try {
        source = await open();
      } catch (err) {
        throw new KlosetError(`cannot read ${path}: ${describeError(err)}`, status.UNKNOWN, { cause: err });
      }
      try {
        await writeChunks(call, source, Infinity, () => signal.aborted);
      } catch (err) {
        throw new KlosetError(`cannot read ${path}: ${describeError(err)}`, status.UNKNOWN, { cause: err });
      }
      if (!signal.aborted) call.end();
    } catch (err) {
      if (signal.aborted) return;
      log.debug(`open failed`, { path, cause: describeError(err) });
      call.emit('error', toStatus(err, rt.scope));
    }
  }

  return {
    definition: serviceDefinition('importer.Importer', { Open: encodeChunkMessage }),
    implementation,
    runtime: rt,
  };
}
