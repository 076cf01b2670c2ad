// Protocol rules of the SDK servers, driven in-process by the host harness with small purpose-built integrations.
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import {
  defineExporter,
  defineImporter,
  defineIntegration,
  defineStorage,
  FatalError,
  ItemError,
  NotFoundError,
  type ImportItem,
  type Integration,
} from '../../shared/index.ts';
import { serveOnDuplex } from '../../shared/transport/serve.ts';
import { connectInProcess, RESOURCE, type InProcessConnection } from '../harness/index.ts';
import { entriesFor } from '../conformance/exporter.ts';

const location = { help: 'test://anything' };
const open: InProcessConnection[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

function connect(integration: Integration, kind: 'importer' | 'exporter' | 'storage'): InProcessConnection {
  const c = connectInProcess((d) => serveOnDuplex(integration, kind, d));
  open.push(c);
  return c;
}

function importerOf(records: (signal: AbortSignal) => AsyncIterable<ImportItem>): Integration {
  return defineIntegration({
    name: 'ptest',
    displayName: 'p',
    description: 'p',
    version: '0.0.0',
    protocols: ['ptest'],
    importer: defineImporter({ options: [], location, init: async () => ({ origin: 'acct', root: '/', records }) }),
  });
}

describe('sdk importer server: protocol rules', () => {
  it('streams tens of thousands of records under backpressure, acked in completion order, then ends after the half-close', async () => {
    const n = 20_000;
    const integ = importerOf(async function* () {
      for (let i = 0; i < n; i++) {
        yield { type: 'file', path: `/d${i % 50}/f${i}`, size: 1, mtime: new Date(1_700_000_000_000), open: async () => Buffer.from([i & 0xff]) };
      }
    });
    const c = connect(integ, 'importer');
    await c.host.init('importer', 'ptest', { location: 'ptest://x' }, { maxConcurrency: 1 });
    const out = await c.host.importAll({ maxConcurrency: 2, openContent: (r) => r.pathname.endsWith('7') });
    expect(out.status.code).toBe(0);
    expect(out.records.length).toBe(n);
    expect(out.acks.length).toBe(n);
    expect(out.contents.get('/d7/f7')?.[0]).toBe(7);
  }, 120_000);

  it('sends one record per extended attribute and serves its value through Open', async () => {
    const integ = importerOf(async function* () {
      yield {
        type: 'file',
        path: '/obj',
        size: 3,
        mtime: new Date(0),
        open: async () => Buffer.from('abc'),
        xattrs: [
          { name: 'content-type', value: 'text/plain' },
          { name: 'big', value: async () => Readable.from([Buffer.alloc(3 * 1024 * 1024, 1)]) },
        ],
      };
    });
    const c = connect(integ, 'importer');
    await c.host.init('importer', 'ptest', { location: 'ptest://x' });
    const out = await c.host.importAll();
    const file = out.records.find((r) => !r.isXattr);
    expect(file?.extendedAttributes).toEqual(['content-type', 'big']);
    const xattrs = out.records.filter((r) => r.isXattr);
    expect(xattrs.map((r) => [r.xattrName, r.xattrType, r.hasReader, r.fileInfo])).toEqual([
      ['content-type', 0, true, undefined],
      ['big', 0, true, undefined],
    ]);
    expect(out.contents.get('xattr:/obj:content-type')?.toString()).toBe('text/plain');
    expect((out.contents.get('xattr:/obj:big') as Buffer).length).toBe(3 * 1024 * 1024);
  });

  it('turns an error item into an error record and a failed open into a per-item error', async () => {
    const integ = importerOf(async function* () {
      yield { type: 'error', path: '/bad', error: new Error('permission denied') };
      yield { type: 'file', path: '/unreadable', size: 1, mtime: new Date(0), open: async () => Promise.reject(new ItemError('/unreadable', 'NoSuchKey')) };
      yield { type: 'file', path: '/ok', size: 2, mtime: new Date(0), open: async () => Buffer.from('ok') };
    });
    const c = connect(integ, 'importer');
    await c.host.init('importer', 'ptest', { location: 'ptest://x' });
    const out = await c.host.importAll();
    expect(out.status.code).toBe(0);
    expect(out.errors).toEqual([{ pathname: '/bad', error: 'permission denied' }]);
    expect(out.itemErrors.map((e) => [e.pathname, e.message])).toEqual([
      ['/unreadable', 'failed to receive file data: ptest importer: cannot read /unreadable: NoSuchKey'],
    ]);
    expect(out.contents.get('/ok')?.toString()).toBe('ok');
  });

  it('ends the import with an error status, before finished, when the listing fails', async () => {
    const integ = importerOf(async function* () {
      yield { type: 'dir', path: '/a' };
      throw new FatalError('listing failed: AccessDenied');
    });
    const c = connect(integ, 'importer');
    await c.host.init('importer', 'ptest', { location: 'ptest://x' });
    await expect(c.host.importAll()).rejects.toThrow(/ptest importer: listing failed: AccessDenied/);
  });

  it('answers Open for an unknown record with an error status', async () => {
    const integ = importerOf(async function* () {
      yield { type: 'file', path: '/known', size: 1, mtime: new Date(0), open: async () => Buffer.from('k') };
    });
    const c = connect(integ, 'importer');
    await c.host.init('importer', 'ptest', { location: 'ptest://x' });
    const { encodeMessage, makeRecord } = await import('../harness/index.ts');
    const call = await c.host.connection.serverStream('/importer.Importer/Open', encodeMessage('importer.OpenRequest', { record: makeRecord({ pathname: '/unknown' }) }));
    await expect(call.read()).rejects.toThrow(/cannot open "\/unknown": no such record/);
  });
});

describe('sdk exporter server: protocol rules', () => {
  it('runs writes in parallel up to the host concurrency and echoes every record', async () => {
    let active = 0;
    let peak = 0;
    const integ = defineIntegration({
      name: 'ptest',
      displayName: 'p',
      description: 'p',
      version: '0.0.0',
      protocols: ['ptest'],
      exporter: defineExporter({
        options: [],
        location,
        init: async () => ({
          async write(_e, content) {
            active++;
            peak = Math.max(peak, active);
            for await (const _ of content) void _;
            await new Promise((r) => setTimeout(r, 30));
            active--;
          },
        }),
      }),
    });
    const c = connect(integ, 'exporter');
    await c.host.init('exporter', 'ptest', { location: 'ptest://x' }, { maxConcurrency: 3 });
    const files = Array.from({ length: 12 }, (_, i) => ({ path: `f${i}`, content: Buffer.alloc(1000 + i, i), mtime: new Date(0) }));
    const out = await c.host.exportTree(entriesFor(files));
    expect(out.status.code).toBe(0);
    expect(out.results.length).toBe(13);
    expect(peak).toBe(3);
  });

  it('fails the whole restore when a writer throws a fatal error, after reporting it', async () => {
    const integ = defineIntegration({
      name: 'ptest',
      displayName: 'p',
      description: 'p',
      version: '0.0.0',
      protocols: ['ptest'],
      exporter: defineExporter({
        options: [],
        location,
        init: async () => ({
          async write() {
            throw new FatalError('quota exceeded on the destination');
          },
        }),
      }),
    });
    const c = connect(integ, 'exporter');
    await c.host.init('exporter', 'ptest', { location: 'ptest://x' }, { maxConcurrency: 1 });
    await expect(c.host.exportTree(entriesFor([{ path: 'a', content: Buffer.from('x'), mtime: new Date(0) }]))).rejects.toThrow(
      /ptest exporter: quota exceeded on the destination/,
    );
  });
});

describe('sdk storage server: protocol rules', () => {
  function storageWith(overrides: Partial<Record<'put' | 'list', unknown>>): Integration {
    return defineIntegration({
      name: 'ptest',
      displayName: 'p',
      description: 'p',
      version: '0.0.0',
      protocols: ['ptest'],
      storage: defineStorage({
        options: [],
        location,
        init: async () => ({
          origin: 'o',
          create: async () => undefined,
          open: async () => Buffer.from('cfg'),
          list: (overrides.list as () => AsyncIterable<Buffer>) ?? (async function* () {})(),
          put: (overrides.put as () => Promise<number>) ?? (async () => 0),
          get: async () => {
            throw new NotFoundError('nope');
          },
          delete: async () => undefined,
        }),
      }),
    });
  }

  it('returns a failed Put’s own message after draining the stream, not an EOF', async () => {
    const integ = storageWith({
      put: async () => {
        throw new FatalError('bucket is read-only');
      },
    });
    const c = connect(integ, 'storage');
    await c.host.init('storage', 'ptest', { location: 'ptest://x' });
    await expect(c.host.put(RESOURCE.PACKFILE, Buffer.alloc(32, 1), Buffer.alloc(5 * 1024 * 1024, 2))).rejects.toThrow(/ptest storage: bucket is read-only/);
  });

  it('fails a List that would pass the host’s 4 MiB limit with a clear error, never a short list', async () => {
    const integ = storageWith({
      list: async function* () {
        for (let i = 0; i < 123_362; i++) {
          const m = Buffer.alloc(32);
          m.writeUInt32BE(i, 0);
          yield m;
        }
      },
    });
    const c = connect(integ, 'storage');
    await c.host.init('storage', 'ptest', { location: 'ptest://x' });
    await expect(c.host.list(RESOURCE.PACKFILE)).rejects.toThrow(/more than 123,361 objects do not fit in one List reply/);
  });

  it('skips names that are not 32-byte MACs and duplicates', async () => {
    const a = Buffer.alloc(32, 1);
    const integ = storageWith({
      list: async function* () {
        yield a;
        yield Buffer.alloc(31);
        yield Buffer.from(a);
      },
    });
    const c = connect(integ, 'storage');
    await c.host.init('storage', 'ptest', { location: 'ptest://x' });
    expect(await c.host.list(RESOURCE.PACKFILE)).toEqual([a]);
  });
});
