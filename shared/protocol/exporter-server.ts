// The exporter service: Init, Ping, Export (records, chunks, empty terminator, echoed results) and Close, per PROTOCOL.md §3.5.
import type * as grpc from '@grpc/grpc-js';
import { PassThrough, type Readable } from 'node:stream';
import pLimit from 'p-limit';
import type { ExportEntry, ExporterDefinition, ExporterInstance, Integration } from '../define.ts';
import { describeError, FatalError, KlosetError } from '../errors.ts';
import { log } from '../log.ts';
import { unsafePathReason } from '../paths.ts';
import { serviceDefinition } from './codec.ts';
import { dateFromTimestamp, int64ToNumber, isDirMode, isRegularMode, isSymlinkMode, unixPermFromGoMode } from './fileinfo.ts';
import { ConnectorRuntime, configFrom, hostOptionsFrom } from './runtime.ts';
import { toStatus } from './status.ts';
import { cancellationSignal, writeMessage } from './streams.ts';

/** Bytes of file content buffered between the host stream and a writer before the host is paused. */
const CONTENT_BUFFER = 4 * 1024 * 1024;

interface WireRecord {
  pathname?: string;
  hasReader?: boolean;
  error?: string;
  isXattr?: boolean;
  target?: string;
  extendedAttributes?: string[];
  fileInfo?: { name?: string; size?: unknown; mode?: number; mod_time?: { seconds?: unknown; nanos?: number } | null } | null;
}

/** The author-facing entry of a wire record. */
export function entryOf(record: WireRecord): ExportEntry {
  const fi = record.fileInfo ?? {};
  const mode = (fi.mode ?? 0) >>> 0;
  return {
    path: record.pathname ?? '',
    name: fi.name ?? '',
    size: int64ToNumber(fi.size),
    mode,
    perm: unixPermFromGoMode(mode),
    mtime: dateFromTimestamp(fi.mod_time),
    xattrNames: [...(record.extendedAttributes ?? [])],
    target: record.target ?? '',
  };
}

/** Builds the grpc-js implementation of `plakar.exporter.Exporter`. */
export function exporterService(integration: Integration, def: ExporterDefinition): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  runtime: ConnectorRuntime<ExporterInstance>;
} {
  const rt = new ConnectorRuntime<ExporterInstance>(integration, 'exporter', def);
  let maxConcurrency = 1;

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
      const host = hostOptionsFrom(req.options);
      maxConcurrency = host.maxConcurrency;
      const inst = await rt.init(String(req.proto ?? ''), configFrom(req.config), host);
      return { origin: inst.origin ?? '', type: inst.type ?? String(req.proto ?? integration.name), root: inst.root ?? '', flags: 0 };
    }),
    Ping: unary(async () => {
      await rt.require('Ping').ping?.();
      return {};
    }),
    Close: unary(async () => {
      await rt.close();
      return {};
    }),
    Export: (call: grpc.ServerDuplexStream<any, any>): void => {
      void runExport(call);
    },
  };

  async function runExport(call: grpc.ServerDuplexStream<any, any>): Promise<void> {
    const signal = cancellationSignal(call);
    let fatal: unknown;
    const results: Promise<void>[] = [];

    const sendResult = async (record: WireRecord, error: unknown): Promise<void> => {
      if (signal.aborted) return;
      const text = error === undefined ? '' : toStatus(error, rt.scope).details;
      if (error !== undefined) log.debug(`restore of an item failed`, { path: record.pathname, cause: text });
      const pending = writeMessage(call, { result: { header: record, error: text } });
      if (pending) await pending;
    };
    const noteFatal = (err: unknown): void => {
      if (err instanceof FatalError && fatal === undefined) fatal = err;
    };

    let inst: ExporterInstance;
    try {
      inst = rt.require('Export');
    } catch (err) {
      call.emit('error', toStatus(err, rt.scope));
      return;
    }
    const limit = pLimit(Math.max(1, inst.concurrency ?? maxConcurrency));

    let current: { record: WireRecord; content: PassThrough | undefined } | undefined;
    const endCurrent = (abortReason?: string): void => {
      if (!current) return;
      const content = current.content;
      current = undefined;
      if (!content || content.destroyed) return;
      if (abortReason) content.destroy(new Error(abortReason));
      else content.end();
    };

    try {
      // destroyOnReturn: false — the default async iterator destroys the duplex when the host half-closes, and the
      // results still to send and the final status would be lost.
      for await (const req of (call as unknown as Readable).iterator({ destroyOnReturn: false }) as AsyncIterable<any>) {
        if (signal.aborted) break;
        if (req.packet === 'chunk') {
          const chunk: Buffer = req.chunk;
          if (!current) {
            log.once('stray-chunk', 'warn', 'the host sent file content outside a file; ignored');
            continue;
          }
          if (chunk.length === 0) {
            endCurrent();
            continue;
          }
          const content = current.content;
          if (content && !content.destroyed && !content.write(chunk)) {
            await new Promise<void>((resolve) => {
              const done = (): void => {
                content.off('drain', done);
                content.off('close', done);
                resolve();
              };
              content.on('drain', done);
              content.on('close', done);
            });
          }
          continue;
        }
        if (req.packet !== 'record' || !req.record) continue;
        endCurrent('the host started a new record before the end of the previous file');
        const record = req.record as WireRecord;
        const unsafe = unsafePathReason(record.pathname ?? '');
        const fi = record.fileInfo;
        if (record.hasReader) current = { record, content: undefined };
        if (unsafe) {
          results.push(sendResult(record, new KlosetError(`refusing to restore ${JSON.stringify(record.pathname)}: ${unsafe}`, 2)));
          continue;
        }
        if (record.error) {
          results.push(sendResult(record, undefined));
          continue;
        }
        if (record.isXattr || !fi) {
          results.push(sendResult(record, undefined));
          continue;
        }
        const entry = entryOf(record);
        const mode = entry.mode;
        if (isDirMode(mode)) {
          try {
            await inst.mkdir?.(entry);
            results.push(sendResult(record, undefined));
          } catch (err) {
            noteFatal(err);
            results.push(sendResult(record, err));
          }
        } else if (isSymlinkMode(mode)) {
          try {
            if (!inst.symlink) throw new KlosetError(`cannot restore symbolic link ${entry.path}: not supported by ${integration.name}`, 2);
            await inst.symlink(entry);
            results.push(sendResult(record, undefined));
          } catch (err) {
            noteFatal(err);
            results.push(sendResult(record, err));
          }
        } else if (isRegularMode(mode) && record.hasReader) {
          const content = new PassThrough({ highWaterMark: CONTENT_BUFFER });
          current = { record, content };
          content.on('error', () => undefined);
          results.push(
            limit(async () => {
              if (fatal !== undefined) {
                content.destroy();
                return sendResult(record, fatal);
              }
              try {
                await inst.write(entry, content);
                if (!content.readableEnded && !content.destroyed) {
                  // The writer returned without reading everything: drain the rest so the host can move on.
                  content.resume();
                }
                await sendResult(record, undefined);
              } catch (err) {
                noteFatal(err);
                if (!content.destroyed) content.destroy();
                await sendResult(record, err);
              }
            }),
          );
        } else {
          log.once('special-file', 'warn', `special files (devices, sockets, pipes) cannot be restored to ${integration.name}; skipped`, {
            path: entry.path,
          });
          results.push(sendResult(record, undefined));
        }
      }
      endCurrent('the host stopped sending in the middle of this file');
      await Promise.all(results);
      if (signal.aborted) return;
      if (fatal !== undefined) throw fatal;
      await inst.finish?.();
      call.end();
    } catch (err) {
      endCurrent('the restore was interrupted');
      if (signal.aborted) return;
      log.error(`restore failed: ${describeError(err)}`);
      call.emit('error', toStatus(err, rt.scope));
    }
  }

  return { definition: serviceDefinition('plakar.exporter.Exporter'), implementation, runtime: rt };
}
