// The storage service: Init, Create, Open, Mode, Size, List, Put (client stream), Get (ranged, chunked), Delete, Ping, Close — PROTOCOL.md §3.6.
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { PassThrough } from 'node:stream';
import { ReadAheadCache } from '../cache/read-ahead.ts';
import { MAX_CHUNK } from '../content.ts';
import type { Integration, Resource, StorageDefinition, StorageInstance } from '../define.ts';
import { describeError, KlosetError } from '../errors.ts';
import { log } from '../log.ts';
import { encodeChunkMessage, serviceDefinition } from './codec.ts';
import { int64ToNumber } from './fileinfo.ts';
import { ConnectorRuntime, configFrom } from './runtime.ts';
import { toStatus } from './status.ts';
import { writeChunks } from './streams.ts';

/** Wire numbers of the storage resource types. */
export const RESOURCE_BY_NUMBER: Readonly<Record<number, Resource>> = {
  1: 'packfile',
  2: 'state',
  3: 'lock',
  4: 'ecc-packfile',
  5: 'ecc-state',
};

/** The host's receive limit for one message (grpc-go default). */
export const HOST_MAX_MESSAGE = 4 * 1024 * 1024;

/** Bytes one MAC takes in an encoded ListResponse (tag, length, 32 bytes). */
const LIST_ENTRY_BYTES = 34;

/** The most MACs one ListResponse can carry under the host's 4 MiB limit (123,361). */
export const MAX_LIST_ENTRIES = Math.floor(HOST_MAX_MESSAGE / LIST_ENTRY_BYTES);

/** Bytes of a Put buffered between the host stream and the store before the host is paused. */
const PUT_BUFFER = 4 * 1024 * 1024;

/** The resource named by a wire number; throws INVALID_ARGUMENT for 0 and unknown values. */
export function resourceOf(n: unknown): Resource {
  const r = RESOURCE_BY_NUMBER[Number(n)];
  if (!r) throw new KlosetError(`unsupported resource type ${String(n)}`, status.INVALID_ARGUMENT);
  return r;
}

function macOf(mac: unknown): Buffer {
  const b = Buffer.isBuffer(mac) ? mac : mac instanceof Uint8Array ? Buffer.from(mac) : Buffer.alloc(0);
  if (b.length !== 32) throw new KlosetError(`invalid MAC: expected 32 bytes, got ${b.length}`, status.INVALID_ARGUMENT);
  return b;
}

async function* iterate<T>(source: AsyncIterable<T> | Promise<Iterable<T>>): AsyncGenerator<T> {
  if (source instanceof Promise) yield* await source;
  else yield* source;
}

/** Builds the grpc-js implementation of `store.Store`. */
export function storageService(integration: Integration, def: StorageDefinition): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  runtime: ConnectorRuntime<StorageInstance>;
} {
  const rt = new ConnectorRuntime<StorageInstance>(integration, 'storage', def);
  let readAhead: ReadAheadCache | undefined;

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
      const inst = await rt.init(String(req.proto ?? ''), configFrom(req.config), undefined);
      installReadAhead(inst);
      const type = inst.type ?? String(req.proto ?? integration.name);
      if (type === 'fs' || type === 'ptar') throw new KlosetError(`storage type ${type} is reserved by Plakar`, status.INTERNAL);
      let flags = 0;
      if (inst.flags?.localfs) flags |= 1;
      if (inst.flags?.file) flags |= 2;
      return { origin: inst.origin, type, root: inst.root ?? '', flags };
    }),
    Create: unary(async (req) => {
      await rt.require('Create').create(Buffer.from(req.config ?? []));
      return {};
    }),
    Open: unary(async () => ({ config: await rt.require('Open').open() })),
    Ping: unary(async () => {
      await rt.require('Ping').ping?.();
      return {};
    }),
    Mode: unary(async () => ({ mode: (await rt.require('Mode').mode?.()) ?? 6 })),
    Size: unary(async () => ({ size: (await rt.require('Size').size?.()) ?? -1 })),
    List: unary(async (req) => {
      const resource = resourceOf(req.type);
      const inst = rt.require('List');
      const seen = new Set<string>();
      const macs: Buffer[] = [];
      for await (const mac of iterate(inst.list(resource))) {
        if (mac.length !== 32) {
          log.debug(`list skipped a name that is not a 32-byte MAC`, { resource, length: mac.length });
          continue;
        }
        const hex = mac.toString('hex');
        if (seen.has(hex)) continue;
        seen.add(hex);
        macs.push(mac);
        if (macs.length > MAX_LIST_ENTRIES) {
          throw new KlosetError(
            `cannot list ${resource}s: more than ${MAX_LIST_ENTRIES.toLocaleString('en-US')} objects do not fit in one List reply under Plakar's 4 MiB message limit`,
            status.RESOURCE_EXHAUSTED,
          );
        }
      }
      return { macs };
    }),
    Delete: unary(async (req) => {
      await rt.require('Delete').delete(resourceOf(req.type), macOf(req.mac));
      return {};
    }),
    Close: unary(async () => {
      await rt.close();
      return {};
    }),
    Put: (call: grpc.ServerReadableStream<any, any>, callback: grpc.sendUnaryData<any>): void => {
      void runPut(call, callback);
    },
    Get: (call: grpc.ServerWritableStream<any, any>): void => {
      void runGet(call);
    },
  };

  /** Puts the SDK's read-ahead cache in front of `get` when the connector offers a whole-object fetch and the user left `cache` on. */
  function installReadAhead(inst: StorageInstance): void {
    const fetch = inst.readAhead?.fetch;
    const o = rt.options as { cache?: boolean; cacheSize?: number; cacheDir?: string; cachePrefetch?: number };
    if (!fetch || o.cache === false || readAhead) return;
    const direct = inst.get.bind(inst);
    const cache = new ReadAheadCache(
      { dir: o.cacheDir, maxBytes: o.cacheSize ?? 1024 ** 3, prefetch: o.cachePrefetch ?? 2 },
      {
        fetch: (resource, mac) => fetch.call(inst, resource, mac),
        direct,
        list: async (resource) => {
          const out: Buffer[] = [];
          const listed = inst.list(resource);
          if (listed instanceof Promise) out.push(...(await listed));
          else for await (const m of listed) out.push(m);
          return out;
        },
      },
      log,
    );
    readAhead = cache;
    inst.get = (resource, mac, range) => cache.get(resource, mac, range);
    const del = inst.delete.bind(inst);
    inst.delete = async (resource, mac) => {
      cache.invalidate(resource, mac);
      await del(resource, mac);
    };
    const put = inst.put.bind(inst);
    inst.put = async (resource, mac, content, info) => {
      cache.invalidate(resource, mac);
      try {
        return await put(resource, mac, content, info);
      } finally {
        cache.invalidate(resource, mac);
      }
    };
    rt.cleanups.push(() => cache.dispose());
  }

  async function runPut(call: grpc.ServerReadableStream<any, any>, callback: grpc.sendUnaryData<any>): Promise<void> {
    let content: PassThrough | undefined;
    let stored: Promise<number | void> | undefined;
    let failure: unknown;
    let received = 0;
    const fail = (err: unknown): void => {
      failure ??= err;
      if (content && !content.destroyed) content.destroy();
    };
    try {
      // Every message is read to the end even after a failure: an early status would reach the host as "EOF" (PROTOCOL.md §3.6.3).
      for await (const req of call as AsyncIterable<any>) {
        if (!content && failure === undefined) {
          try {
            const inst = rt.require('Put');
            const resource = resourceOf(req.type);
            const mac = macOf(req.mac);
            const hot = Number(req.flags ?? 0) === 1;
            content = new PassThrough({ highWaterMark: PUT_BUFFER });
            content.on('error', () => undefined);
            stored = inst.put(resource, mac, content, { hot });
            stored.catch(fail);
          } catch (err) {
            fail(err);
          }
        }
        const chunk: Buffer | undefined = req.chunk;
        if (!chunk || chunk.length === 0) continue;
        received += chunk.length;
        if (failure !== undefined || !content || content.destroyed) continue;
        if (!content.write(chunk)) {
          const c = content;
          await new Promise<void>((resolve) => {
            const done = (): void => {
              c.off('drain', done);
              c.off('close', done);
              resolve();
            };
            c.on('drain', done);
            c.on('close', done);
          });
        }
      }
      if (failure === undefined && !content) throw new KlosetError('Put carried no message', status.INVALID_ARGUMENT);
      if (failure === undefined) {
        content?.end();
        const n = await stored;
        callback(null, { bytes_written: typeof n === 'number' ? n : received });
        return;
      }
    } catch (err) {
      fail(err);
    }
    callback(toStatus(failure, rt.scope));
  }

  async function runGet(call: grpc.ServerWritableStream<any, any>): Promise<void> {
    // No AbortController here: this is the hot path of every restore, so cancellation is read from `call.cancelled`.
    try {
      const inst = rt.require('Get');
      const req = call.request;
      const resource = resourceOf(req.type);
      const mac = macOf(req.mac);
      const range = req.range ? { offset: int64ToNumber(req.range.offset), length: Number(req.range.length ?? 0) } : undefined;
      if (range && range.length === 0) {
        call.end();
        return;
      }
      const source = await inst.get(resource, mac, range);
      const limit = range ? range.length : Infinity;
      if (source instanceof Uint8Array && source.length <= MAX_CHUNK) {
        // Fast path for the host's thousands of tiny ranged Gets (PROTOCOL.md §9): one message, no generator.
        const bytes = source.length > limit ? source.subarray(0, limit) : source;
        if (call.cancelled) return;
        if (bytes.length > 0) call.write({ chunk: bytes });
        call.end();
        return;
      }
      await writeChunks(call, source, limit, () => call.cancelled);
      if (!call.cancelled) call.end();
    } catch (err) {
      if (call.cancelled) return;
      log.debug(`get failed: ${describeError(err)}`);
      call.emit('error', toStatus(err, rt.scope));
    }
  }

  return { definition: serviceDefinition('store.Store', { Get: encodeChunkMessage }), implementation, runtime: rt };
}
