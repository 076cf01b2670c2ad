// Tests of the host harness against minimal grpc-js plugins written here (in-process and spawned over real pipes).
import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, type Duplex } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { serviceDefinition } from '../../shared/protocol/codec.ts';
import {
  connectInProcess,
  ContractError,
  decodeGrpcMessage,
  encodeMessage,
  entriesFromDirectory,
  entriesFromTree,
  FrameParser,
  frameMessage,
  GrpcError,
  HostAbortError,
  HostError,
  launchPlugin,
  MAX_RECEIVE_MESSAGE,
  MODE,
  RESOURCE,
  spawnPlugin,
  STATUS,
  walkOrder,
  type InProcessConnection,
  type PluginHost,
} from '../harness/index.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
const DIR_755 = (MODE.DIR | 0o755) >>> 0;
const MIB = 1024 * 1024;

type Impl = grpc.UntypedServiceImplementation;
type Service = 'importer.Importer' | 'plakar.exporter.Exporter' | 'store.Store';

/** Serves a hand-written implementation with grpc-js on the duplex, as a real plugin would. */
function mini(service: Service, impl: Impl): (duplex: Duplex) => { close(): void } {
  return (duplex) => {
    const server = new grpc.Server({ 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
    server.addService(serviceDefinition(service), impl);
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    injector.injectConnection(duplex);
    return {
      close: () => {
        injector.destroy();
        server.forceShutdown();
      },
    };
  };
}

const ok = (_call: unknown, cb: grpc.sendUnaryData<object>): void => cb(null, {});
const initReply =
  (reply: object, seen?: { req?: Record<string, unknown> }) =>
  (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>): void => {
    if (seen) seen.req = call.request;
    cb(null, reply);
  };

/** Asserts that `promise` rejects with an instance of `cls` whose message is exactly `message`. */
async function expectFailure(promise: Promise<unknown>, cls: new (...args: never[]) => Error, message: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(cls);
  expect((err as Error).message).toBe(message);
}

const open: InProcessConnection[] = [];
function connect(service: Service, impl: Impl): PluginHost {
  const c = connectInProcess(mini(service, impl), { callTimeoutMs: 20_000 });
  open.push(c);
  return c.host;
}
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

const IMPORTER_INIT = initReply({ origin: 'acct', type: 'mini', root: '/' });
const CONFIG = { location: 'mini://x' };

type ImportCall = grpc.ServerDuplexStream<Record<string, unknown>, object>;
type OpenCall = grpc.ServerWritableStream<Record<string, unknown>, object>;

/** An importer that sends `records` then `finished`, serves `files` through Open, and ends after the half-close. */
function importer(
  records: object[],
  files: Record<string, Buffer[]> = {},
  log: { acks: Record<string, unknown>[]; opens: Record<string, unknown>[]; halfClosedBeforeEnd?: boolean } = {
    acks: [],
    opens: [],
  },
): Impl {
  return {
    Init: IMPORTER_INIT,
    Ping: ok,
    Close: ok,
    Import: (call: ImportCall) => {
      for (const r of records) call.write(r);
      call.write({ finished: true });
      call.on('data', (req: Record<string, unknown>) => log.acks.push(req));
      call.on('end', () => {
        log.halfClosedBeforeEnd = true;
        call.end();
      });
    },
    Open: (call: OpenCall) => {
      const rec = call.request['record'] as Record<string, unknown>;
      log.opens.push(rec);
      const chunks = files[String(rec['pathname'])];
      if (!chunks) {
        call.emit('error', { code: grpc.status.NOT_FOUND, details: `no such file ${String(rec['pathname'])}` });
        return;
      }
      for (const c of chunks) call.write({ chunk: c });
      call.end();
    },
  };
}

const fileRecord = (p: string, size: number, extra: object = {}): object => ({
  record: {
    pathname: p,
    hasReader: true,
    fileInfo: { name: path.posix.basename(p), size, mode: 0o644, mod_time: { seconds: 1_700_000_000, nanos: 5 }, nlink: 1 },
    ...extra,
  },
});
const dirRecord = (p: string): object => ({
  record: { pathname: p, fileInfo: { name: p === '/' ? '/' : path.posix.basename(p), mode: DIR_755, mod_time: { seconds: 1 } } },
});

describe('harness transport: framing and status', () => {
  it('frames messages and reassembles them across arbitrary splits', () => {
    const a = frameMessage(Buffer.from('hello'));
    expect(a.toString('hex')).toBe('000000000568656c6c6f');
    const b = frameMessage(Buffer.alloc(0));
    const all = Buffer.concat([a, b, frameMessage(Buffer.alloc(70_000, 7))]);
    const parser = new FrameParser();
    const out: Buffer[] = [];
    for (let i = 0; i < all.length; i += 3) out.push(...parser.push(all.subarray(i, i + 3)));
    expect(out.map((m) => m.length)).toEqual([5, 0, 70_000]);
    expect(parser.pending).toBe(0);
  });

  it('enforces the 4 MiB receive limit on the length prefix, like grpc-go', () => {
    const atLimit = Buffer.alloc(5);
    atLimit.writeUInt32BE(MAX_RECEIVE_MESSAGE, 1);
    expect(new FrameParser().push(atLimit)).toEqual([]);
    const over = Buffer.alloc(5);
    over.writeUInt32BE(MAX_RECEIVE_MESSAGE + 1, 1);
    expect(() => new FrameParser().push(over)).toThrow('grpc: received message larger than max (4194305 vs. 4194304)');
    const compressed = Buffer.from([1, 0, 0, 0, 0]);
    expect(() => new FrameParser().push(compressed)).toThrow(/compressed flag/);
  });

  it('percent-decodes grpc-message leniently and formats errors like grpc-go', () => {
    expect(decodeGrpcMessage('a%20b%25%zz%E2%89%A0')).toBe('a b%%zz≠');
    const err = new GrpcError(STATUS.NOT_FOUND, 'gone');
    expect(err.message).toBe('rpc error: code = NotFound desc = gone');
    expect(err.hostMessage).toBe('gone');
    expect(new GrpcError(STATUS.UNAVAILABLE, 'x').hostMessage).toBe('I/O error communicating with the integration (x)');
    expect(new GrpcError(STATUS.CANCELLED, 'x').hostMessage).toBe('context canceled');
  });

  it('encodes like Go: defaults omitted, an empty oneof chunk kept as 12 00', () => {
    expect(encodeMessage('plakar.exporter.ExportRequest', { chunk: Buffer.alloc(0) }).toString('hex')).toBe('1200');
    expect(encodeMessage('store.PutRequest', { mac: Buffer.alloc(32, 1), type: 1 }).toString('hex')).toBe(
      '0a20' + '01'.repeat(32) + '1001',
    );
    expect(encodeMessage('plakar.connectors.FileInfo', { name: '', size: 0, mode: 0, nlink: 0 }).length).toBe(0);
    expect(encodeMessage('store.GetRequest', { range: { offset: 0, length: 0 } }).toString('hex')).toBe('1a00');
  });

  it('round-trips status details with special characters, including trailers-only errors', async () => {
    const host = connect('store.Store', {
      Init: initReply({ origin: 'o', type: 'mini' }),
      Open: (_c: unknown, cb: grpc.sendUnaryData<object>) => cb({ code: grpc.status.NOT_FOUND, details: 'no repo at "x": 100% ≠\ngone' }),
    });
    await host.init('storage', 'mini', CONFIG);
    const err = await host.open().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostError);
    expect((err as HostError).message).toBe('no repo at "x": 100% ≠\ngone');
    expect((err as HostError).code).toBe(STATUS.NOT_FOUND);
    // A method the plugin does not implement: grpc-js answers UNIMPLEMENTED.
    await expect(host.size()).rejects.toMatchObject({ code: STATUS.UNIMPLEMENTED });
  });

  it('fails a unary reply over 4 MiB with RESOURCE_EXHAUSTED and keeps the connection usable', async () => {
    const host = connect('store.Store', {
      Init: initReply({ origin: 'o', type: 'mini' }),
      Open: (_c: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { config: Buffer.alloc(MAX_RECEIVE_MESSAGE) }),
      Ping: ok,
    });
    await host.init('storage', 'mini', CONFIG);
    const err = (await host.open().catch((e: unknown) => e)) as HostError;
    expect(err).toBeInstanceOf(HostError);
    expect(err.code).toBe(STATUS.RESOURCE_EXHAUSTED);
    expect(err.message).toBe(`grpc: received message larger than max (${MAX_RECEIVE_MESSAGE + 5} vs. ${MAX_RECEIVE_MESSAGE})`);
    await host.ping();
  });
});

describe('harness importer: the host Import driver', () => {
  it('sends the host options, opens files with only the identity fields, acks everything, half-closes, ends OK', async () => {
    const seen: { req?: Record<string, unknown> } = {};
    const log = { acks: [] as Record<string, unknown>[], opens: [] as Record<string, unknown>[], halfClosedBeforeEnd: false };
    const impl = importer(
      [
        dirRecord('/'),
        fileRecord('/a.txt', -1),
        { record: { pathname: '/bad', error: 'permission denied' } },
        { record: { pathname: '/a.txt', isXattr: true, xattrName: 'user.k', hasReader: true } },
        fileRecord('/empty', 0),
      ],
      { '/a.txt': [Buffer.from('hel'), Buffer.from('lo')], '/empty': [] },
      log,
    );
    impl['Open'] = (call: OpenCall) => {
      const rec = call.request['record'] as Record<string, unknown>;
      log.opens.push(rec);
      if (rec['isXattr']) call.write({ chunk: Buffer.from('xv') });
      else if (rec['pathname'] === '/a.txt') ['hel', 'lo'].forEach((s) => call.write({ chunk: Buffer.from(s) }));
      call.end();
    };
    impl['Init'] = initReply({ origin: 'acct', type: 'mini', root: '/' }, seen);
    const host = connect('importer.Importer', impl);
    await host.init('importer', 'mini', { ...CONFIG, token: 't' }, { hostname: 'pc', maxConcurrency: 7, cwd: '/home/u' });
    const opts = seen.req?.['options'] as Record<string, unknown>;
    expect(opts['hostname']).toBe('pc');
    expect(opts['os']).toBe('linux');
    expect(opts['arch']).toBe('amd64');
    expect(opts['cwd']).toBe('/home/u');
    expect(Number(opts['maxconcurrency'])).toBe(7);
    expect(seen.req?.['proto']).toBe('mini');
    expect(seen.req?.['config']).toEqual({ location: 'mini://x', token: 't' });

    const out = await host.importAll();
    expect(out.records.map((r) => r.pathname)).toEqual(['/', '/a.txt', '/bad', '/a.txt', '/empty']);
    expect(out.contents.get('/a.txt')?.toString()).toBe('hello');
    expect(out.contents.get('xattr:/a.txt:user.k')?.toString()).toBe('xv');
    expect(out.contents.get('/empty')?.length).toBe(0);
    expect(out.errors).toEqual([{ pathname: '/bad', error: 'permission denied' }]);
    expect(out.itemErrors).toEqual([]);
    expect(out.status.code).toBe(STATUS.OK);
    expect(log.halfClosedBeforeEnd).toBe(true);
    // Open carries only pathname/isXattr/xattrName/xattrType/target, never a FileInfo.
    expect(log.opens).toHaveLength(3);
    for (const o of log.opens) expect(o['fileInfo']).toBeNull();
    // One ack per record; the file's ack carries the size actually read; the error record is echoed without FileInfo.
    expect(log.acks).toHaveLength(5);
    const headers = log.acks.map((a) => (a['result'] as Record<string, Record<string, unknown>>)['header'] as Record<string, unknown>);
    const fileAck = headers.find((h) => h['pathname'] === '/a.txt' && !h['isXattr']) as Record<string, Record<string, unknown>>;
    expect(Number(fileAck['fileInfo']?.['size'])).toBe(5);
    expect(fileAck['hasReader']).toBe(true);
    const errAck = headers.find((h) => h['pathname'] === '/bad') as Record<string, unknown>;
    expect(errAck['error']).toBe('permission denied');
    expect(errAck['fileInfo']).toBeNull();
    expect(out.acks).toHaveLength(5);
  });

  it('fails the item on an empty chunk ("unexpected response") and on an Open error, and goes on', async () => {
    const impl = importer([fileRecord('/e', 1), fileRecord('/missing', 1), fileRecord('/ok', 2)], { '/ok': [Buffer.from('ok')] });
    const baseOpen = impl['Open'] as (call: OpenCall) => void;
    impl['Open'] = (call: OpenCall) => {
      const rec = call.request['record'] as Record<string, unknown>;
      if (rec['pathname'] === '/e') {
        call.write({ chunk: Buffer.from('x') });
        call.write({ chunk: Buffer.alloc(0) });
        call.end();
      } else baseOpen(call);
    };
    const host = connect('importer.Importer', impl);
    await host.init('importer', 'mini', CONFIG);
    const out = await host.importAll();
    expect(out.itemErrors).toEqual(
      expect.arrayContaining([
        { pathname: '/e', key: '/e', message: 'unexpected response: ' },
        { pathname: '/missing', key: '/missing', message: 'failed to receive file data: no such file /missing' },
      ]),
    );
    expect(out.contents.get('/ok')?.toString()).toBe('ok');
    expect(out.acks).toHaveLength(3);
  });

  it('fails the item when an Open chunk message exceeds 4 MiB', async () => {
    const host = connect('importer.Importer', importer([fileRecord('/big', -1)], { '/big': [Buffer.alloc(MAX_RECEIVE_MESSAGE)] }));
    await host.init('importer', 'mini', CONFIG);
    const out = await host.importAll();
    expect(out.itemErrors).toHaveLength(1);
    expect(out.itemErrors[0]?.message).toMatch(/^failed to receive file data: grpc: received message larger than max \(4194309 vs\. 4194304\)$/);
  });

  it('aborts on a record without fileInfo, and on a message with neither record nor finished', async () => {
    const a = connect('importer.Importer', importer([{ record: { pathname: '/x' } }]));
    await a.init('importer', 'mini', CONFIG);
    await expectFailure(a.importAll(), HostAbortError, 'invalid record /x: missing fileinfo');
    const b = connect('importer.Importer', importer([{}]));
    await b.init('importer', 'mini', CONFIG);
    const err = await b.importAll().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostAbortError);
    expect((err as Error).message).toBe('expected a record');
  });

  it('reports path, name and mode violations as ContractError', async () => {
    const cases: [object, RegExp][] = [
      [fileRecord('a.txt', 1), /not absolute/],
      [fileRecord('/d/', 1), /not clean/],
      [{ record: { pathname: '/d/x', fileInfo: { name: 'y', mode: 0o644 } } }, /fileInfo.name "y"/],
      [{ record: { pathname: '/f', fileInfo: { name: 'f', mode: 0o100644 } } }, /Unix st_mode/],
    ];
    for (const [rec, re] of cases) {
      const host = connect('importer.Importer', importer([rec]));
      await host.init('importer', 'mini', CONFIG);
      const err = await host.importAll({ openContent: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ContractError);
      expect((err as Error).message).toMatch(re);
    }
  });

  it('fails a backup whose plugin ends Import before the half-close while acks are pending (EOF)', async () => {
    const host = connect('importer.Importer', {
      Init: IMPORTER_INIT,
      Import: (call: ImportCall) => {
        call.write(dirRecord('/'));
        call.write(dirRecord('/d'));
        call.write({ finished: true });
        call.end();
      },
    });
    await host.init('importer', 'mini', CONFIG);
    const err = await host.importAll({ ackDelay: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostAbortError);
    expect((err as Error).message).toMatch(/^EOF: the plugin ended Import/);
  });

  it('surfaces a non-OK Import status before finished as the raw rpc error', async () => {
    const host = connect('importer.Importer', {
      Init: IMPORTER_INIT,
      Import: (call: ImportCall) => {
        call.write(dirRecord('/'));
        call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'token revoked' });
      },
    });
    await host.init('importer', 'mini', CONFIG);
    await expectFailure(host.importAll(), HostError, 'rpc error: code = PermissionDenied desc = token revoked');
  });

  it('reports a plugin that does not end Import after the half-close', async () => {
    const impl = importer([dirRecord('/')]);
    impl['Import'] = (call: ImportCall) => {
      call.write(dirRecord('/'));
      call.write({ finished: true });
      call.on('data', () => undefined);
    };
    const host = connect('importer.Importer', impl);
    await host.init('importer', 'mini', CONFIG);
    await expectFailure(
      host.importAll({ endTimeoutMs: 300 }),
      ContractError,
      "the plugin did not end Import within 300 ms of the host's half-close",
    );
  });

  it('runs at most maxConcurrency Opens at once and acks in completion order', async () => {
    let now = 0;
    let peak = 0;
    const log = { acks: [] as Record<string, unknown>[], opens: [] as Record<string, unknown>[] };
    const impl = importer(
      ['/slow', '/f1', '/f2', '/f3'].map((p) => fileRecord(p, 1)),
      {},
      log,
    );
    impl['Open'] = (call: OpenCall) => {
      const p = String((call.request['record'] as Record<string, unknown>)['pathname']);
      now++;
      peak = Math.max(peak, now);
      setTimeout(
        () => {
          now--;
          call.write({ chunk: Buffer.from('z') });
          call.end();
        },
        p === '/slow' ? 800 : 10,
      );
    };
    const host = connect('importer.Importer', impl);
    await host.init('importer', 'mini', CONFIG, { maxConcurrency: 8 });
    const out = await host.importAll({ maxConcurrency: 2 });
    expect(peak).toBe(2);
    expect(out.stats.maxConcurrentOpens).toBe(2);
    expect(out.acks.map((a) => a.pathname).at(-1)).toBe('/slow');
    const dry = connect('importer.Importer', importer([fileRecord('/a', 1)]));
    await dry.init('importer', 'mini', CONFIG);
    const d = await dry.importAll({ dryRun: true });
    expect(d.stats.opens).toBe(0);
    expect(d.acks).toHaveLength(1);
  });
});

describe('harness exporter: the host Export driver', () => {
  type ExportCall = grpc.ServerDuplexStream<Record<string, unknown>, object>;
  interface Seen {
    packets: { kind: string; pathname?: string; name?: string; mode?: number; len?: number }[];
    halfClosed: boolean;
  }
  /** An exporter that records every packet and answers each record with `answer(record)`. */
  function exporter(seen: Seen, answer: (rec: Record<string, unknown>) => object | undefined = (rec) => ({ result: { header: rec } })): Impl {
    return {
      Init: initReply({ origin: 'o', type: 'mini', root: '/' }),
      Close: ok,
      Export: (call: ExportCall) => {
        call.on('data', (req: Record<string, unknown>) => {
          if (req['packet'] === 'record') {
            const rec = req['record'] as Record<string, unknown>;
            const fi = rec['fileInfo'] as Record<string, unknown>;
            seen.packets.push({ kind: 'record', pathname: String(rec['pathname']), name: String(fi['name']), mode: Number(fi['mode']) });
            const reply = answer(rec);
            if (reply) call.write(reply);
          } else if (req['packet'] === 'chunk') {
            seen.packets.push({ kind: 'chunk', len: (req['chunk'] as Uint8Array).length });
          } else seen.packets.push({ kind: 'none' });
        });
        call.on('end', () => {
          seen.halfClosed = true;
          call.end();
        });
      },
    };
  }

  it('sends / first (original name), pre-order by name bytes, ≤ chunkSize chunks and one empty terminator per file', async () => {
    const seen: Seen = { packets: [], halfClosed: false };
    const host = connect('plakar.exporter.Exporter', exporter(seen));
    await host.init('exporter', 'mini', CONFIG);
    const entries = entriesFromTree(
      { 'b.txt': 'bbbbbbbbbb', a: { 'z.bin': Buffer.alloc(25, 1), 'e': '' }, 'a-c': 'x', 'é': 'acc' },
      { rootName: 'docs' },
    );
    const out = await host.exportTree(entries, { chunkSize: 10 });
    expect(seen.halfClosed).toBe(true);
    expect(seen.packets.filter((p) => p.kind === 'record').map((p) => p.pathname)).toEqual([
      '/',
      '/a',
      '/a/e',
      '/a/z.bin',
      '/a-c',
      '/b.txt',
      '/é',
    ]);
    expect(seen.packets[0]).toMatchObject({ kind: 'record', pathname: '/', name: 'docs', mode: DIR_755 });
    const kinds = seen.packets.map((p) => (p.kind === 'record' ? p.pathname : p.len));
    expect(kinds).toEqual(['/', '/a', '/a/e', 0, '/a/z.bin', 10, 10, 5, 0, '/a-c', 1, 0, '/b.txt', 10, 0, '/é', 3, 0]);
    expect(seen.packets.some((p) => p.kind === 'none')).toBe(false);
    expect(out.results).toHaveLength(7);
    expect(out.warnings).toEqual([]);
    expect(out.status.code).toBe(STATUS.OK);
  });

  it('sends the synthetic / (dir|0700, name "/") before a single restored file', async () => {
    const seen: Seen = { packets: [], halfClosed: false };
    const host = connect('plakar.exporter.Exporter', exporter(seen));
    await host.init('exporter', 'mini', CONFIG);
    await host.exportTree([{ path: '/f.txt', info: { mode: 0o600 }, content: Buffer.from('abc') }]);
    expect(seen.packets).toEqual([
      { kind: 'record', pathname: '/', name: '/', mode: (MODE.DIR | 0o700) >>> 0 },
      { kind: 'record', pathname: '/f.txt', name: 'f.txt', mode: 0o600 },
      { kind: 'chunk', len: 3 },
      { kind: 'chunk', len: 0 },
    ]);
  });

  it('simulates a mid-file read failure: no terminator, then the half-close', async () => {
    const seen: Seen = { packets: [], halfClosed: false };
    const host = connect('plakar.exporter.Exporter', exporter(seen));
    await host.init('exporter', 'mini', CONFIG);
    const entries = entriesFromTree({ big: Buffer.alloc(30), later: 'x' });
    const out = await host.exportTree(entries, { chunkSize: 10, failAt: { path: '/big', afterBytes: 15 } });
    expect(out.aborted).toBe(true);
    expect(seen.packets.map((p) => (p.kind === 'record' ? p.pathname : p.len))).toEqual(['/', '/big', 10, 5]);
    expect(seen.halfClosed).toBe(true);
  });

  it('aborts like the host on a response without result, a result without header, a header without fileInfo', async () => {
    const cases: [(rec: Record<string, unknown>) => object, string][] = [
      [() => ({}), 'panic: runtime error: invalid memory address or nil pointer dereference (an ExportResponse without result)'],
      [() => ({ result: { error: '' } }), 'panic: runtime error: invalid memory address or nil pointer dereference (a Result without header)'],
      [(rec) => ({ result: { header: { pathname: rec['pathname'] } } }), 'invalid record /: missing fileinfo'],
    ];
    for (const [answer, message] of cases) {
      const host = connect('plakar.exporter.Exporter', exporter({ packets: [], halfClosed: false }, answer));
      await host.init('exporter', 'mini', CONFIG);
      const err = await host.exportTree(entriesFromTree({ a: 'x' })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HostAbortError);
      expect((err as Error).message).toBe(message);
    }
  });

  it('reports item errors, missing results, and a failing status', async () => {
    const host = connect(
      'plakar.exporter.Exporter',
      exporter({ packets: [], halfClosed: false }, (rec) =>
        rec['pathname'] === '/a' ? { result: { header: rec, error: 'disk full' } } : rec['pathname'] === '/' ? undefined : { result: { header: rec } },
      ),
    );
    await host.init('exporter', 'mini', CONFIG);
    const out = await host.exportTree(entriesFromTree({ a: 'x', b: 'y' }));
    expect(out.itemErrors).toEqual([{ pathname: '/a', error: 'disk full' }]);
    expect(out.warnings).toEqual(['no result for "/"']);

    const failing = connect('plakar.exporter.Exporter', {
      Init: initReply({ origin: 'o', type: 'mini' }),
      Export: (call: ExportCall) => {
        call.on('data', () => undefined);
        call.on('end', () => call.emit('error', { code: grpc.status.INTERNAL, details: 'target vanished' }));
      },
    });
    await failing.init('exporter', 'mini', CONFIG);
    await expectFailure(failing.exportTree(entriesFromTree({ a: 'x' })), HostError, 'rpc error: code = Internal desc = target vanished');
  });

  it('reports a plugin that never ends Export (grpc-js `for await` over the call swallows the status)', async () => {
    const host = connect('plakar.exporter.Exporter', {
      Init: initReply({ origin: 'o', type: 'mini' }),
      Export: (call: ExportCall) => {
        void (async () => {
          for await (const req of call as AsyncIterable<Record<string, unknown>>) {
            if (req['packet'] === 'record') call.write({ result: { header: req['record'] } });
          }
          call.end();
        })();
      },
    });
    await host.init('exporter', 'mini', CONFIG);
    await expectFailure(
      host.exportTree(entriesFromTree({ a: 'x' }), { endTimeoutMs: 300 }),
      ContractError,
      "the plugin did not end Export within 300 ms of the host's half-close",
    );
  });

  it('builds entries from a local directory with Go modes and nanosecond mtimes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'harness-tree-'));
    try {
      fs.mkdirSync(path.join(dir, 'sub'));
      fs.writeFileSync(path.join(dir, 'sub', 'f'), 'data');
      fs.symlinkSync('sub/f', path.join(dir, 'link'));
      const entries = entriesFromDirectory(dir);
      const byPath = new Map(entries.map((e) => [e.path, e]));
      expect(walkOrder([...byPath.keys()])).toEqual(['/', '/link', '/sub', '/sub/f']);
      expect(byPath.get('/')?.info.name).toBe(path.basename(dir));
      expect(byPath.get('/sub')?.info.mode).toBe((MODE.DIR | (fs.statSync(path.join(dir, 'sub')).mode & 0o777)) >>> 0);
      expect(byPath.get('/link')?.target).toBe('sub/f');
      expect(byPath.get('/sub/f')?.info.size).toBe(4);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('harness storage: the host storage calls', () => {
  const objects = new Map<string, Buffer>();
  const key = (mac: Uint8Array, type: unknown): string => `${Number(type)}:${Buffer.from(mac).toString('hex')}`;
  const putLog: Record<string, unknown>[][] = [];
  const store = (extra: Impl = {}): Impl => ({
    Init: initReply({ origin: 'o', type: 'mini', root: '/r' }),
    Ping: ok,
    Close: ok,
    Mode: (_c: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { mode: 6 }),
    Size: (_c: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { size: -1 }),
    List: (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>) =>
      cb(null, {
        macs: [...objects.keys()].filter((k) => k.startsWith(`${Number(call.request['type'])}:`)).map((k) => Buffer.from(k.split(':')[1] ?? '', 'hex')),
      }),
    Put: (call: grpc.ServerReadableStream<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>) => {
      const msgs: Record<string, unknown>[] = [];
      call.on('data', (m: Record<string, unknown>) => msgs.push(m));
      call.on('end', () => {
        putLog.push(msgs);
        const first = msgs[0] as Record<string, unknown>;
        const data = Buffer.concat(msgs.map((m) => Buffer.from((m['chunk'] as Uint8Array | undefined) ?? [])));
        objects.set(key(first['mac'] as Uint8Array, first['type']), data);
        cb(null, { bytes_written: data.length });
      });
    },
    Get: (call: grpc.ServerWritableStream<Record<string, unknown>, object>) => {
      const data = objects.get(key(call.request['mac'] as Uint8Array, call.request['type']));
      if (!data) {
        call.emit('error', { code: grpc.status.NOT_FOUND, details: 'object not found' });
        return;
      }
      const range = call.request['range'] as { offset: { toNumber(): number }; length: number } | null;
      const slice = range ? data.subarray(range.offset.toNumber(), range.offset.toNumber() + range.length) : data;
      for (let i = 0; i < slice.length; i += MIB) call.write({ chunk: slice.subarray(i, i + MIB) });
      call.end();
    },
    Delete: (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>) => {
      const k = key(call.request['mac'] as Uint8Array, call.request['type']);
      if (!objects.delete(k)) cb({ code: grpc.status.NOT_FOUND, details: 'no such object' });
      else cb(null, {});
    },
    ...extra,
  });

  it('puts as the host does (mac+type alone, then ≤ 1 MiB non-empty chunks), gets whole and ranged, lists, deletes', async () => {
    const host = connect('store.Store', store());
    await host.init('storage', 'mini', CONFIG);
    expect(await host.mode()).toBe(6);
    expect(await host.size()).toBe(-1);
    const mac = Buffer.alloc(32, 0xab);
    const data = Buffer.alloc(2 * MIB + 100, 3);
    data[MIB + 7] = 9;
    expect(await host.put(RESOURCE.PACKFILE, mac, data)).toBe(data.length);
    const msgs = putLog.at(-1) as Record<string, unknown>[];
    expect(Object.keys(msgs[0] as object).sort()).toEqual(['mac', 'type']);
    expect(msgs.slice(1).map((m) => (m['chunk'] as Uint8Array).length)).toEqual([MIB, MIB, 100]);
    for (const m of msgs.slice(1)) expect(Object.keys(m)).toEqual(['chunk']);
    expect((await host.get(RESOURCE.PACKFILE, mac)).equals(data)).toBe(true);
    expect([...(await host.get(RESOURCE.PACKFILE, mac, { offset: MIB + 7, length: 2 }))]).toEqual([9, 3]);
    expect((await host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex'))).toEqual([mac.toString('hex')]);
    await expectFailure(host.get(RESOURCE.PACKFILE, mac, { offset: 2 * MIB, length: 200 }), HostError, 'unexpected EOF');
    await expectFailure(host.get(RESOURCE.STATE, mac), HostError, 'failed to receive file data: object not found');
    await host.delete(RESOURCE.PACKFILE, mac);
    await expectFailure(host.delete(RESOURCE.PACKFILE, mac), HostError, 'failed to delete packfile: no such object');
    expect(await host.put(RESOURCE.LOCK, mac, Buffer.alloc(0))).toBe(0);
    expect((putLog.at(-1) as unknown[]).length).toBe(1);
    expect((await host.get(RESOURCE.LOCK, mac, { offset: 0, length: 0 })).length).toBe(0);
    const streamed = Readable.from([Buffer.alloc(3, 1), Buffer.alloc(0), Buffer.alloc(MIB + 1, 2)]);
    expect(await host.put(RESOURCE.STATE, mac, streamed)).toBe(MIB + 4);
    expect((putLog.at(-1) as Record<string, unknown>[]).slice(1).map((m) => (m['chunk'] as Uint8Array).length)).toEqual([3, MIB, 1]);
  });

  it('fails List on a MAC that is not 32 bytes ("invalid MAC length")', async () => {
    const host = connect(
      'store.Store',
      store({ List: (_c: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { macs: [Buffer.alloc(32), Buffer.alloc(31)] }) }),
    );
    await host.init('storage', 'mini', CONFIG);
    const err = await host.list(RESOURCE.STATE).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostAbortError);
    expect((err as Error).message).toBe('invalid MAC length: 31');
  });

  it('ignores extra bytes after a ranged Get and reports an oversized Get chunk', async () => {
    const host = connect(
      'store.Store',
      store({
        Get: (call: grpc.ServerWritableStream<Record<string, unknown>, object>) => {
          const range = call.request['range'] as { length: number } | null;
          if (range?.length === 1) call.write({ chunk: Buffer.from('abc') });
          else call.write({ chunk: Buffer.alloc(MAX_RECEIVE_MESSAGE) });
          call.end();
        },
      }),
    );
    await host.init('storage', 'mini', CONFIG);
    const mac = Buffer.alloc(32);
    expect((await host.get(RESOURCE.PACKFILE, mac, { offset: 0, length: 1 })).toString()).toBe('a');
    expect(host.warnings.at(-1)).toMatch(/2 extra bytes/);
    await expect(host.get(RESOURCE.PACKFILE, mac)).rejects.toThrow(/^failed to receive file data: grpc: received message larger than max/);
  });

  it('grows its receive window like grpc-go (BDP pings) while a large Get streams, and not on tiny Gets', async () => {
    const serve = mini(
      'store.Store',
      store({
        Get: (call: grpc.ServerWritableStream<Record<string, unknown>, object>) => {
          const range = call.request['range'] as { length: number } | null;
          if (range) call.write({ chunk: Buffer.alloc(range.length) });
          else for (let i = 0; i < 16; i++) call.write({ chunk: Buffer.alloc(MIB) });
          call.end();
        },
      }),
    );
    const c = connectInProcess(serve, { callTimeoutMs: 20_000 });
    open.push(c);
    await c.host.init('storage', 'mini', CONFIG);
    const mac = Buffer.alloc(32);
    for (let i = 0; i < 50; i++) await c.host.get(RESOURCE.PACKFILE, mac, { offset: 0, length: 720 });
    expect(c.connection.receiveWindow).toBe(65_535);
    for (let i = 0; i < 4; i++) expect((await c.host.get(RESOURCE.PACKFILE, mac)).length).toBe(16 * MIB);
    expect(c.connection.receiveWindow).toBeGreaterThan(65_535);
    expect(c.connection.receiveWindow).toBeLessThanOrEqual(16 * MIB);
  });

  it('loses the plugin message when it fails a Put without draining it ("failed to send chunk: EOF")', async () => {
    const host = connect(
      'store.Store',
      store({
        Put: (call: grpc.ServerReadableStream<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>) => {
          call.once('data', () => cb({ code: grpc.status.PERMISSION_DENIED, details: 'read-only store' }));
        },
      }),
    );
    await host.init('storage', 'mini', CONFIG);
    await expectFailure(host.put(RESOURCE.PACKFILE, Buffer.alloc(32), Buffer.alloc(16 * MIB)), HostError, 'failed to send chunk: EOF');
    await host.ping();
  });

  it('fails in-flight and later calls with UNAVAILABLE when the plugin transport dies (no reconnection)', async () => {
    let pluginSide: Duplex | undefined;
    const serve = mini(
      'store.Store',
      store({
        Get: (call: grpc.ServerWritableStream<Record<string, unknown>, object>) => {
          call.write({ chunk: Buffer.from('partial') });
          setTimeout(() => pluginSide?.destroy(), 20);
        },
      }),
    );
    const c = connectInProcess((d) => {
      pluginSide = d;
      return serve(d);
    });
    open.push(c);
    await c.host.init('storage', 'mini', CONFIG);
    await expectFailure(
      c.host.get(RESOURCE.PACKFILE, Buffer.alloc(32)),
      HostError,
      'failed to receive file data: I/O error communicating with the integration (error reading from server: EOF)',
    );
    await expectFailure(c.host.ping(), HostError, 'I/O error communicating with the integration (error reading from server: EOF)');
    expect(c.connection.alive).toBe(false);
  });

  it('checks Init replies: reserved storage types and empty importer origins', async () => {
    const s = connect('store.Store', { Init: initReply({ origin: 'o', type: 'fs' }) });
    await expect(s.init('storage', 'mini', CONFIG)).rejects.toThrow(ContractError);
    const i = connect('importer.Importer', { Init: initReply({ origin: '', type: 'mini', root: '/' }) });
    await expect(i.init('importer', 'mini', CONFIG)).rejects.toThrow(/empty origin/);
    const e = connect('plakar.exporter.Exporter', {
      Init: (_c: unknown, cb: grpc.sendUnaryData<object>) => cb({ code: grpc.status.INVALID_ARGUMENT, details: 'mini exporter: bad key' }),
    });
    await expectFailure(e.init('exporter', 'mini', CONFIG), HostError, 'mini exporter: bad key');
  });
});

describe('harness spawn: a child over two real pipes', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harness-spawn-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const loader = pathToFileURL(path.join(REPO, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
  const pluginTs = path.join(tmp, 'plugin.mts');
  fs.writeFileSync(
    pluginTs,
    `// Minimal spawned importer for harness tests: reports its stdio in Init, serves one 3 MiB file, exits on EOF.
console.log = console.error;
import fs from 'node:fs';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(path.join(REPO, 'package.json'))});
const grpc = require('@grpc/grpc-js');
const { serviceDefinition } = await import(${JSON.stringify(pathToFileURL(path.join(REPO, 'shared/protocol/codec.ts')).href)});
const accmode = (fd: number): number => {
  const m = /flags:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/fdinfo/' + fd, 'utf8'));
  return m ? parseInt(m[1] ?? '0', 8) & 3 : -1;
};
const s0 = fs.fstatSync(0), s1 = fs.fstatSync(1);
const info = { fifo0: s0.isFIFO(), fifo1: s1.isFIFO(), sock0: s0.isSocket(), sock1: s1.isSocket(), sameInode: s0.ino === s1.ino,
  acc0: accmode(0), acc1: accmode(1), args: process.argv.slice(2), cwd: process.cwd(), env: process.env.HARNESS_TEST_ENV ?? '' };
const big = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
const server = new grpc.Server({ 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
server.addService(serviceDefinition('importer.Importer'), {
  Init: (_c: unknown, cb: any) => cb(null, { origin: JSON.stringify(info), type: 'mini', root: '/' }),
  Ping: (_c: unknown, cb: any) => cb(null, {}),
  Close: (_c: unknown, cb: any) => cb(null, {}),
  Import: (call: any) => {
    call.write({ record: { pathname: '/big', hasReader: true, fileInfo: { name: 'big', size: big.length, mode: 0o644, mod_time: { seconds: 1 }, nlink: 1 } } });
    call.write({ finished: true });
    call.on('data', () => undefined);
    call.on('end', () => call.end());
  },
  Open: (call: any) => {
    for (let i = 0; i < big.length; i += 1024 * 1024) call.write({ chunk: big.subarray(i, i + 1024 * 1024) });
    call.end();
  },
});
const input = new net.Socket({ fd: 0, readable: true, writable: false });
const output = new net.Socket({ fd: 1, readable: false, writable: true });
const inj = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
inj.injectConnection(Duplex.from({ readable: input, writable: output }));
const bye = (why: string): void => { fs.writeSync(2, 'plugin: ' + why + '\\n'); process.exit(0); };
input.on('end', () => bye('EOF on stdin'));
input.on('close', () => bye('stdin closed'));
output.on('error', (err: NodeJS.ErrnoException) => bye('stdout failed: ' + err.code));
`,
  );
  const exe = path.join(tmp, 'plugin');
  fs.writeFileSync(exe, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} --import ${JSON.stringify(loader)} ${JSON.stringify(pluginTs)} "$@"\n`);
  fs.chmodSync(exe, 0o755);
  fs.writeFileSync(
    path.join(tmp, 'manifest.yaml'),
    'name: mini\nconnectors:\n  - type: importer\n    protocols: [mini]\n    executable: ./plugin\n    args: [importer]\n',
  );

  it('gives fd 0 and fd 1 as two distinct FIFOs (read-only, write-only), passes args/cwd/env, delivers EOF', async () => {
    const launched = await launchPlugin(
      { manifest: path.join(tmp, 'manifest.yaml'), kind: 'importer' },
      { cwd: tmp, env: { HARNESS_TEST_ENV: 'inherited' } },
    );
    try {
      const init = await launched.host.init('importer', 'mini', CONFIG);
      const info = JSON.parse(init.origin) as Record<string, unknown>;
      expect(info).toMatchObject({ fifo0: true, fifo1: true, sameInode: false, acc0: 0, acc1: 1, args: ['importer'], cwd: fs.realpathSync(tmp), env: 'inherited' });
      const out = await launched.host.importAll({ content: 'sha256' });
      expect(out.contents.size).toBe(1);
      expect(out.acks[0]?.fileInfo?.size).toBe(3 * MIB + 5);
      await launched.host.close();
    } finally {
      const exit = await launched.dispose(10_000);
      expect(exit).toMatchObject({ code: 0, signal: null, timedOut: false });
      // Both host ends close at once (as when Plakar exits): the child sees EOF, or EPIPE on a last write.
      expect(launched.process.stderr()).toMatch(/plugin: (EOF on stdin|stdin closed|stdout failed: EPIPE)/);
    }
  });

  it('also serves over socketpairs and over one socket on both fds', async () => {
    for (const mode of ['socketpair', 'one-socket'] as const) {
      const launched = await launchPlugin({ executable: exe, args: ['importer'] }, { mode });
      try {
        const info = JSON.parse((await launched.host.init('importer', 'mini', CONFIG)).origin) as Record<string, unknown>;
        expect(info).toMatchObject({ fifo0: false, sock0: true, sock1: true, sameInode: mode === 'one-socket' });
        await launched.host.ping();
      } finally {
        expect((await launched.dispose(10_000)).code).toBe(0);
      }
    }
  });

  it('endInput alone gives the child EOF; an executable that dies fails calls with UNAVAILABLE', async () => {
    for (const mode of ['pipes', 'socketpair', 'one-socket'] as const) {
      const proc = await spawnPlugin(exe, { mode });
      proc.endInput();
      expect((await proc.exited).code, mode).toBe(0);
      expect(proc.stderr(), mode).toContain('plugin: EOF on stdin');
      proc.duplex.destroy();
    }

    const dead = path.join(tmp, 'dead');
    fs.writeFileSync(dead, '#!/bin/sh\nexit 3\n');
    fs.chmodSync(dead, 0o755);
    const launched = await launchPlugin({ executable: dead });
    const err = await launched.host.init('importer', 'mini', CONFIG).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostError);
    expect((err as HostError).code).toBe(STATUS.UNAVAILABLE);
    expect((err as HostError).message).toMatch(/^I\/O error communicating with the integration \(.*EOF.*\)$/);
    expect((await launched.dispose()).code).toBe(3);
  });

  it('needs mkfifo', () => {
    expect(execFileSync('sh', ['-c', 'command -v mkfifo']).toString().trim()).not.toBe('');
  });
});
