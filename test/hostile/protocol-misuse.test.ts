// Protocol misuse from the host side, against the built fixture executable spawned like Plakar spawns it: RPCs before
// Init, unknown methods, undecodable requests, Get/Delete of missing objects, bad MACs and resource types, Puts without
// a header, unknown records in Open, duplicate Close. Every case is an error status; the process stays up and exits 0.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage, GrpcError, launchPlugin, makeRecord, RESOURCE, STATUS, type LaunchedPlugin } from '../harness/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const MANIFEST = join(ROOT, 'dist', 'fixture', 'manifest.yaml');
const built = existsSync(MANIFEST);

const STORE = '/store.Store';
const IMPORTER = '/importer.Importer';
const EXPORTER = '/plakar.exporter.Exporter';

/** The status a raw call ended with (it must end with one, never hang). */
async function statusOf(p: Promise<unknown>): Promise<GrpcError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof GrpcError)) throw new Error(`expected an error status, got ${err === undefined ? 'success' : String(err)}`);
  return err;
}

/** Reads a server stream to its end and returns its status. */
async function streamStatus(launched: LaunchedPlugin, path: string, request: Uint8Array): Promise<GrpcError> {
  const call = await launched.connection.serverStream(path, request);
  return statusOf(
    (async () => {
      for await (const _ of call) {
        // discard data: a misuse must end with an error status
      }
    })(),
  );
}

let dir: string;
const launched: LaunchedPlugin[] = [];

async function launch(kind: 'importer' | 'exporter' | 'storage'): Promise<LaunchedPlugin> {
  const l = await launchPlugin({ manifest: MANIFEST, kind });
  launched.push(l);
  return l;
}

/** Ends the instance like Plakar and checks it exited cleanly (no crash on the way). */
async function endsCleanly(l: LaunchedPlugin): Promise<void> {
  launched.splice(launched.indexOf(l), 1);
  const exit = await l.dispose(10_000);
  expect({ code: exit.code, signal: exit.signal, timedOut: exit.timedOut }).toEqual({ code: 0, signal: null, timedOut: false });
  expect(l.process.stderr()).not.toMatch(/internal error|TypeError|RangeError|at .*\.js:\d+/);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kloset-misuse-'));
  await mkdir(join(dir, 'src'));
  await writeFile(join(dir, 'src', 'a.txt'), 'alpha');
});

afterAll(async () => {
  for (const l of launched) await l.dispose(5000).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!built)('hostile input: protocol misuse from the host (built fixture executable)', () => {
  it('storage: every RPC before Init fails with FAILED_PRECONDITION; Ping and Close are answered; a later Init still works', async () => {
    const l = await launch('storage');
    const mac = Buffer.alloc(32, 7);
    const unary: Array<[string, string, object]> = [
      ['Create', 'store.CreateRequest', { config: Buffer.from('x') }],
      ['Open', 'store.OpenRequest', {}],
      ['Mode', 'store.ModeRequest', {}],
      ['Size', 'store.SizeRequest', {}],
      ['List', 'store.ListRequest', { type: RESOURCE.PACKFILE }],
      ['Delete', 'store.DeleteRequest', { type: RESOURCE.PACKFILE, mac }],
    ];
    for (const [method, type, body] of unary) {
      const err = await statusOf(l.connection.unary(`${STORE}/${method}`, encodeMessage(type, body)));
      expect(err.code, method).toBe(STATUS.FAILED_PRECONDITION);
      expect(err.details, method).toMatch(/fixture storage: \w+ called before a successful Init/);
    }
    const get = await streamStatus(l, `${STORE}/Get`, encodeMessage('store.GetRequest', { type: RESOURCE.PACKFILE, mac }));
    expect(get.code).toBe(STATUS.FAILED_PRECONDITION);
    const put = await l.connection.stream(`${STORE}/Put`);
    await put.write(encodeMessage('store.PutRequest', { type: RESOURCE.PACKFILE, mac }));
    await put.write(encodeMessage('store.PutRequest', { chunk: Buffer.from('data') }));
    expect((await statusOf(l.connection.closeAndRecv(put))).code).toBe(STATUS.FAILED_PRECONDITION);

    // Ping and Close before Init: answered (OK or a status), never a crash; Init still works afterwards.
    for (const method of ['Ping', 'Close', 'Close']) {
      await l.connection.unary(`${STORE}/${method}`, encodeMessage(`store.${method}Request`, {})).catch((e: unknown) => {
        expect(e).toBeInstanceOf(GrpcError);
        expect((e as GrpcError).details).toMatch(/^fixture storage: /);
      });
    }
    await l.host.init('storage', 'fixture', { location: `fixture://${join(dir, 'repo')}` });
    await l.host.create(Buffer.from('config'));
    expect((await l.host.open()).toString()).toBe('config');
    await endsCleanly(l);
  });

  it('storage: missing objects, bad MACs, unknown resource types, Puts without a header, undecodable requests and unknown methods', async () => {
    const l = await launch('storage');
    await l.host.init('storage', 'fixture', { location: `fixture://${join(dir, 'repo2')}` });
    await l.host.create(Buffer.from('config'));
    const missing = Buffer.alloc(32, 0xab);

    const get = await streamStatus(l, `${STORE}/Get`, encodeMessage('store.GetRequest', { type: RESOURCE.PACKFILE, mac: missing }));
    expect(get.code).toBe(STATUS.NOT_FOUND);
    expect(get.details).toContain(missing.toString('hex'));
    const ranged = await streamStatus(
      l,
      `${STORE}/Get`,
      encodeMessage('store.GetRequest', { type: RESOURCE.STATE, mac: missing, range: { offset: 10, length: 10 } }),
    );
    expect(ranged.code).toBe(STATUS.NOT_FOUND);
    const del = await statusOf(l.connection.unary(`${STORE}/Delete`, encodeMessage('store.DeleteRequest', { type: RESOURCE.LOCK, mac: missing })));
    expect(del.details).toMatch(/^fixture storage: /);

    for (const mac of [Buffer.alloc(0), Buffer.alloc(5, 1), Buffer.alloc(33, 1)]) {
      const g = await streamStatus(l, `${STORE}/Get`, encodeMessage('store.GetRequest', { type: RESOURCE.PACKFILE, mac }));
      expect(g.code, `Get with a ${mac.length}-byte MAC`).toBe(STATUS.INVALID_ARGUMENT);
      const p = await l.connection.stream(`${STORE}/Put`);
      await p.write(encodeMessage('store.PutRequest', { type: RESOURCE.PACKFILE, mac }));
      await p.write(encodeMessage('store.PutRequest', { chunk: Buffer.from('data') })).catch(() => undefined);
      expect((await statusOf(l.connection.closeAndRecv(p))).code, `Put with a ${mac.length}-byte MAC`).toBe(STATUS.INVALID_ARGUMENT);
    }
    for (const type of [0, 99, 1 << 20]) {
      const ls = await statusOf(l.connection.unary(`${STORE}/List`, encodeMessage('store.ListRequest', { type })));
      expect(ls.code, `List of resource type ${type}`).toBe(STATUS.INVALID_ARGUMENT);
    }

    // A Put whose first message is a chunk (no mac/type), and a Put with no message at all.
    const headless = await l.connection.stream(`${STORE}/Put`);
    await headless.write(encodeMessage('store.PutRequest', { chunk: Buffer.from('orphan bytes') }));
    expect((await statusOf(l.connection.closeAndRecv(headless))).code).toBe(STATUS.INVALID_ARGUMENT);
    const empty = await l.connection.stream(`${STORE}/Put`);
    expect((await statusOf(l.connection.closeAndRecv(empty))).details).toMatch(/^fixture storage: /);

    // Bytes that are not a protobuf message, and methods that do not exist.
    const garbage = await statusOf(l.connection.unary(`${STORE}/Open`, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])));
    expect([STATUS.INTERNAL, STATUS.INVALID_ARGUMENT]).toContain(garbage.code);
    expect((await statusOf(l.connection.unary(`${STORE}/Format`, Buffer.alloc(0)))).code).toBe(STATUS.UNIMPLEMENTED);
    expect((await statusOf(l.connection.unary(`${IMPORTER}/Open`, Buffer.alloc(0)))).code).toBe(STATUS.UNIMPLEMENTED);

    // Nothing above left an object behind, and the store still works.
    expect(await l.host.list(RESOURCE.PACKFILE)).toEqual([]);
    await l.host.put(RESOURCE.PACKFILE, Buffer.alloc(32, 1), Buffer.from('ok'));
    expect((await l.host.get(RESOURCE.PACKFILE, Buffer.alloc(32, 1))).toString()).toBe('ok');
    await endsCleanly(l);
  });

  it('storage: Close twice, then more calls; a second Init gets the first one’s result', async () => {
    const l = await launch('storage');
    await l.host.init('storage', 'fixture', { location: `fixture://${join(dir, 'repo3')}` });
    await l.host.create(Buffer.from('cfg'));
    await l.host.close();
    await l.host.close();
    expect((await l.host.open()).toString()).toBe('cfg');
    const again = await l.connection.unary(
      `${STORE}/Init`,
      encodeMessage('store.InitRequest', { proto: 'fixture', config: { location: `fixture://${join(dir, 'elsewhere')}` } }),
    );
    expect(again.length).toBeGreaterThanOrEqual(0);
    expect((await l.host.open()).toString()).toBe('cfg');
    expect(existsSync(join(dir, 'elsewhere'))).toBe(false);
    await l.host.close();
    await endsCleanly(l);
  });

  it('importer: Import and Open before Init fail; Open of unknown, empty and escaping records fails; Close twice', async () => {
    const l = await launch('importer');
    const rec = makeRecord({ pathname: '/a.txt' });
    const early = await streamStatus(l, `${IMPORTER}/Open`, encodeMessage('importer.OpenRequest', { record: rec }));
    expect(early.code).toBe(STATUS.FAILED_PRECONDITION);
    const imp = await l.connection.stream(`${IMPORTER}/Import`);
    imp.halfClose();
    expect((await statusOf((async () => {
      for await (const _ of imp) {
        // no records may come before Init
      }
    })())).code).toBe(STATUS.FAILED_PRECONDITION);

    await l.host.init('importer', 'fixture', { location: `fixture://${join(dir, 'src')}` });
    for (const pathname of ['/never-listed', '', '/../../../etc/passwd', '/a.txt/../../x', '\0']) {
      const st = await streamStatus(l, `${IMPORTER}/Open`, encodeMessage('importer.OpenRequest', { record: makeRecord({ pathname }) }));
      expect(st.details, JSON.stringify(pathname)).toMatch(/^fixture importer: /);
      expect(st.code, JSON.stringify(pathname)).not.toBe(STATUS.INTERNAL);
    }
    const open = await streamStatus(l, `${IMPORTER}/Open`, encodeMessage('importer.OpenRequest', {}));
    expect(open.details).toMatch(/^fixture importer: /);
    await l.host.close();
    await l.host.close();
    const outcome = await l.host.importAll();
    expect(outcome.records.some((r) => r.pathname.endsWith('/a.txt'))).toBe(true);
    await endsCleanly(l);
  });

  it('exporter: Export before Init fails; an Export that only half-closes ends OK', async () => {
    const l = await launch('exporter');
    const exp = await l.connection.stream(`${EXPORTER}/Export`);
    exp.halfClose();
    expect((await statusOf((async () => {
      for await (const _ of exp) {
        // nothing may come before Init
      }
    })())).code).toBe(STATUS.FAILED_PRECONDITION);
    await l.host.init('exporter', 'fixture', { location: `fixture://${join(dir, 'restore')}` });
    const empty = await l.connection.stream(`${EXPORTER}/Export`);
    empty.halfClose();
    for await (const _ of empty) {
      // an empty restore has no results
    }
    await l.host.close();
    await l.host.close();
    await endsCleanly(l);
  });
});
