// CalDAV/CardDAV importer: every calendar or address book of the account as /<collection>/<resource>.ics|.vcf, with its properties.
import { AuthError, defineImporter, describeError, encodeSegment, joinPath, type ImportItem, type Logger, type XattrItem } from '../../shared/index.ts';
import { classify, DavHttp } from './client.ts';
import { Dav, pathKey, type CollectionInfo, type FetchedObject, type ResourceInfo } from './dav.ts';
import {
  canonicalLines,
  COLLECTION_FILE,
  COLLECTION_FORMAT,
  collectionFile,
  collectionFilter,
  collectionName,
  ETAG_XATTR,
  fnv1a,
  lastSegment,
  objectLastModified,
  parseObject,
  resourceName,
  stableMtime,
} from './map.ts';
import { checkAuthOptions, COMPONENTS, importerOptions, kindOf, LOCATION, serverUrl, type DavKind } from './options.ts';

/** Bytes of fetched object bodies held for upcoming Opens (older ones are dropped and fetched again if asked for). */
const CACHE_BYTES = 32 * 1024 * 1024;
/** First read-ahead window of a collection read lazily, in objects. */
const FIRST_WINDOW = 4;
/**
 * Listed bytes (getcontentlength) asked for in one multiget. Answers are parsed as they arrive, but the bodies of a
 * batch wait in the cache for their Opens: half the cache, so that a batch never pushes out its own objects; objects
 * with big inline attachments go a few at a time (always at least one).
 */
const BATCH_BYTES = CACHE_BYTES / 2;
/** Largest collection (sum of getcontentlength) read with one query while listing; bigger ones go by multiget batches. */
const QUERY_ALL_BYTES = 24 * 1024 * 1024;

/** The caldav importer. */
export const importer = defineImporter({
  options: importerOptions,
  location: LOCATION,
  async init(ctx) {
    const o = ctx.options;
    checkAuthOptions(o);
    const kind = kindOf(ctx.proto);
    const start = serverUrl(o.location, ctx.proto, o.useTls);
    const http = new DavHttp({
      options: o,
      connections: o.concurrency,
      timeoutMs: o.timeout,
      pacer: ctx.pacer({ classify, connections: o.concurrency }),
      tokenPacer: ctx.pacer({ classify }),
      log: ctx.log,
      signal: ctx.signal,
      addSecret: ctx.addSecret,
    });
    const dav = new Dav(http, kind);
    const target = await dav.discover(start);
    const wanted = [...new Set(o.components.map((c) => c.toUpperCase()))];
    // Server-side filtering only when some component types are left out.
    const components = kind === 'caldav' && wanted.length < COMPONENTS.length ? wanted : undefined;
    const account = o.username ?? (target.mode === 'homes' && target.principal ? target.principal.pathname : start.pathname);
    const root = target.mode === 'collection' ? joinPath('/', collectionName(target.collection.url)) : '/';
    ctx.log.debug('discovered', { mode: target.mode, root });
    return {
      origin: `${account}@${start.host}`,
      type: ctx.proto,
      root,
      records: (signal) =>
        walk({
          dav,
          kind,
          target,
          components,
          keep: collectionFilter(o.include, o.exclude),
          batchSize: o.batchSize,
          log: ctx.log,
          signal,
        }),
      async ping() {
        await dav.discover(start);
      },
      async close() {
        http.close();
      },
    };
  },
});

interface WalkOptions {
  dav: Dav;
  kind: DavKind;
  target: Awaited<ReturnType<Dav['discover']>>;
  components: string[] | undefined;
  keep: (name: string, displayName?: string) => boolean;
  batchSize: number;
  log: Logger;
  signal: AbortSignal;
}

async function* walk(w: WalkOptions): AsyncGenerator<ImportItem> {
  const { dav, kind, target, log } = w;
  let collections: CollectionInfo[] = [];
  if (target.mode === 'collection') collections = [target.collection];
  else if (target.mode === 'homes') for (const home of target.homes) collections.push(...(await dav.listCollections(home)));
  const cache = new BodyCache(CACHE_BYTES);
  const usedNames = new Set<string>();
  for (const c of collections) {
    if (w.signal.aborted) return;
    const segment = lastSegment(c.url);
    if (target.mode !== 'collection' && !w.keep(segment, c.props.displayName)) {
      log.debug('collection left out by include/exclude', { collection: c.url.pathname });
      continue;
    }
    if (w.components && c.props.components && !c.props.components.some((x) => w.components?.includes(x))) {
      log.debug('calendar holds none of the chosen components', { collection: c.url.pathname });
      continue;
    }
    const name = unique(collectionName(c.url), usedNames);
    const dir = joinPath('/', name);
    yield { type: 'dir', path: dir, mtime: c.lastModified ?? new Date(0) };
    const file = collectionFile({ format: COLLECTION_FORMAT, kind: c.kind, href: c.url.pathname, props: c.props });
    yield { type: 'file', path: joinPath(dir, COLLECTION_FILE), size: file.length, mtime: stableMtime(c.lastModified, file.toString('utf8')), open: async () => file };
    let resources: ResourceInfo[];
    try {
      resources = await dav.listResources(c.url, w.components);
    } catch (err) {
      if (err instanceof AuthError) throw err;
      yield { type: 'error', path: dir, error: `cannot list the objects of ${c.url.href}: ${describeError(err)}` };
      continue;
    }
    if (resources.length === 0) continue;
    const fetcher = new ObjectFetcher(dav, c.url, resources, w.batchSize, cache, log);
    const names = snapshotNames(resources, kind);
    const pathOf = (r: ResourceInfo): string => joinPath(dir, names.get(pathKey(r.url)) as string);
    const xattrsOf = (r: ResourceInfo): XattrItem[] | undefined => (r.etag ? [{ name: ETAG_XATTR, value: r.etag }] : undefined);
    if (resources.every((r) => r.lastModified !== undefined)) {
      // getlastmodified is listed: nothing is downloaded until the host asks, so unchanged objects cost nothing.
      for (const r of resources) {
        yield {
          type: 'file',
          path: pathOf(r),
          size: -1,
          mtime: stableMtime(r.lastModified, r.etag ?? r.url.pathname),
          open: async () => fetcher.open(r.url),
          xattrs: xattrsOf(r),
        };
      }
      continue;
    }
    // No getlastmodified (Xandikos and others): the mtime has to come from LAST-MODIFIED inside each object, so
    // objects are fetched while listing — the whole collection in one query when its listed size allows, else batch
    // by batch — and the bodies wait in the bounded cache for the host's Opens.
    const known = resources.every((r) => r.size !== undefined);
    const total = resources.reduce((sum, r) => sum + (r.size ?? 0), 0);
    const whole = known && total <= QUERY_ALL_BYTES ? await fetcher.queryAll() : undefined;
    for (const batch of batches(resources, w.batchSize, BATCH_BYTES)) {
      if (w.signal.aborted) return;
      const missing = batch.filter((r) => !whole?.has(pathKey(r.url)));
      const got = missing.length > 0 ? await fetcher.prefetch(missing.map((r) => r.url)) : new Map<string, Entry>();
      for (const r of batch) {
        const path = pathOf(r);
        const e = whole?.get(pathKey(r.url)) ?? got.get(pathKey(r.url));
        if (!e || e.error !== undefined || e.size === undefined) {
          yield { type: 'error', path, error: e?.error ?? 'the server did not return this object' };
          continue;
        }
        const etag = e.etag ?? r.etag;
        yield {
          type: 'file',
          path,
          size: e.size,
          mtime: stableMtime(e.lastModified ?? r.lastModified, etag ?? e.hash ?? 0),
          open: async () => fetcher.open(r.url),
          xattrs: etag ? [{ name: ETAG_XATTR, value: etag }] : undefined,
        };
      }
    }
  }
}

/** Consecutive slices of `resources` of at most `count` objects and `bytes` listed bytes (at least one object each). */
export function* batches(resources: ResourceInfo[], count: number, bytes: number): Generator<ResourceInfo[]> {
  let batch: ResourceInfo[] = [];
  let size = 0;
  for (const r of resources) {
    const s = r.size ?? 0;
    if (batch.length > 0 && (batch.length >= count || size + s > bytes)) {
      yield batch;
      batch = [];
      size = 0;
    }
    batch.push(r);
    size += s;
  }
  if (batch.length > 0) yield batch;
}

/**
 * `name`, or `name~2`, `name~3`… (before the extension) when an earlier entry took it: two server names can map to
 * one snapshot name when an extension is added (`abc` and `abc.ics`), or when two homes hold equally named collections.
 */
function unique(name: string, used: Set<string>): string {
  let candidate = name;
  const dot = name.lastIndexOf('.');
  for (let n = 2; used.has(candidate); n++) {
    candidate = dot > 0 ? `${name.slice(0, dot)}~${n}${name.slice(dot)}` : `${name}~${n}`;
  }
  used.add(candidate);
  return candidate;
}

/**
 * Snapshot file names of a collection's objects, by path key. Names the server already gives with the extension are
 * kept as they are; a name that needed the extension added yields to them on a clash (`abc` next to `abc.ics`).
 */
function snapshotNames(resources: ResourceInfo[], kind: DavKind): Map<string, string> {
  const out = new Map<string, string>();
  const used = new Set<string>();
  const later: ResourceInfo[] = [];
  for (const r of resources) {
    const name = resourceName(r.url, kind);
    if (name === encodeSegment(lastSegment(r.url)) && !used.has(name)) {
      used.add(name);
      out.set(pathKey(r.url), name);
    } else {
      later.push(r);
    }
  }
  for (const r of later) out.set(pathKey(r.url), unique(resourceName(r.url, kind), used));
  return out;
}

/** A fetched object, ready to serve: canonical bytes, or why it cannot be backed up. */
interface Entry {
  body?: Buffer;
  /** Bytes of the body (kept when the body itself is left in the cache). */
  size?: number;
  /** fnv1a of the text when the server gave no ETag: the mtime's fingerprint, as the text itself would give. */
  hash?: number | undefined;
  error?: string;
  etag?: string;
  lastModified?: Date;
}

/** Fetched bodies waiting for their Open, bounded in bytes; the oldest are dropped first. */
class BodyCache {
  private readonly map = new Map<string, Entry>();
  private bytes = 0;
  private readonly max: number;
  constructor(max: number) {
    this.max = max;
  }
  put(key: string, e: Entry): void {
    this.take(key);
    this.map.set(key, e);
    this.bytes += e.body?.length ?? 0;
    for (const [k, old] of this.map) {
      if (this.bytes <= this.max || this.map.size <= 1) break;
      this.map.delete(k);
      this.bytes -= old.body?.length ?? 0;
    }
  }
  take(key: string): Entry | undefined {
    const e = this.map.get(key);
    if (e) {
      this.map.delete(key);
      this.bytes -= e.body?.length ?? 0;
    }
    return e;
  }
}

/**
 * Serves Opens for one collection from calendar-multiget / addressbook-multiget batches. A miss fetches the asked
 * object and the next few not yet fetched ones; the window doubles while the host keeps opening what was read
 * ahead (a first backup) and shrinks when it does not (an incremental one, where most objects are never opened).
 */
class ObjectFetcher {
  private readonly order: URL[];
  /** Listed sizes (0 when not listed), in listing order. */
  private readonly sizes: number[];
  private readonly position = new Map<string, number>();
  /** 0 = not fetched, 1 = fetched or in flight. */
  private readonly fetched: Uint8Array;
  private readonly inflight = new Map<string, Promise<void>>();
  private window = FIRST_WINDOW;
  private lastBatch = new Set<string>();
  private usedFromLast = 0;
  private readonly dav: Dav;
  private readonly collection: URL;
  private readonly maxBatch: number;
  private readonly cache: BodyCache;
  private readonly log: Logger;

  constructor(dav: Dav, collection: URL, resources: ResourceInfo[], maxBatch: number, cache: BodyCache, log: Logger) {
    this.dav = dav;
    this.collection = collection;
    this.maxBatch = maxBatch;
    this.cache = cache;
    this.log = log;
    this.order = resources.map((r) => r.url);
    this.sizes = resources.map((r) => r.size ?? 0);
    this.order.forEach((u, i) => this.position.set(pathKey(u), i));
    this.fetched = new Uint8Array(this.order.length);
  }

  /** The bytes of one object; throws an Error naming the problem (the host records it for this path only). */
  async open(url: URL): Promise<Buffer> {
    const key = pathKey(url);
    let e = this.takeCached(key);
    if (!e && this.inflight.has(key)) {
      await this.inflight.get(key);
      e = this.takeCached(key);
    }
    if (!e) {
      await this.fetch(this.plan(key));
      e = this.takeCached(key);
    }
    e ??= await this.single(url);
    if (e.error !== undefined || !e.body) throw new Error(e.error ?? 'the server did not return this object');
    return e.body;
  }

  /** Fetches a listing batch (objects without getlastmodified) and returns each entry; the bodies stay cached for Open. */
  async prefetch(urls: URL[]): Promise<Map<string, Entry>> {
    return this.fetch(urls.map(pathKey));
  }

  /**
   * Reads the whole collection with one query (see Dav.queryAll), object by object as the answer arrives, and caches
   * every entry for Open. Returns the entries by key without their bodies (those wait in the cache); objects the query
   * did not return are absent (they are fetched by multiget instead).
   */
  async queryAll(): Promise<Map<string, Entry>> {
    const out = new Map<string, Entry>();
    try {
      await this.dav.queryAll(this.collection, (k, f) => {
        const i = this.position.get(k);
        if (i === undefined) return;
        this.fetched[i] = 1;
        const e = this.entry(f);
        this.cache.put(k, e);
        out.set(k, { ...e, body: undefined });
      });
    } catch (err) {
      if (err instanceof AuthError) throw err;
      this.log.once('query-failed', 'info', 'reading a whole collection in one query failed; using multiget', { collection: this.collection.pathname, cause: describeError(err) });
      // What arrived before the failure stays cached; the rest goes by multiget.
    }
    return out;
  }

  private takeCached(key: string): Entry | undefined {
    const e = this.cache.take(key);
    if (e && this.lastBatch.has(key)) this.usedFromLast++;
    return e;
  }

  /** The keys to fetch for a miss on `key`: it, then following objects not fetched yet, up to the window and BATCH_BYTES. */
  private plan(key: string): string[] {
    if (this.lastBatch.size > 1) {
      const used = this.usedFromLast / this.lastBatch.size;
      this.window = used >= 0.5 ? Math.min(this.window * 2, this.maxBatch) : Math.max(1, Math.floor(this.window / 4));
    }
    const keys = [key];
    const from = this.position.get(key);
    if (from !== undefined) {
      let bytes = this.sizes[from] ?? 0;
      for (let i = from + 1; i < this.order.length && keys.length < this.window; i++) {
        if (this.fetched[i] !== 0) continue;
        bytes += this.sizes[i] ?? 0;
        if (bytes > BATCH_BYTES) break;
        keys.push(pathKey(this.order[i] as URL));
      }
    }
    this.lastBatch = new Set(keys);
    this.usedFromLast = 0;
    return keys;
  }

  private async fetch(keys: string[]): Promise<Map<string, Entry>> {
    const urls: URL[] = [];
    for (const k of keys) {
      const i = this.position.get(k);
      if (i !== undefined) {
        this.fetched[i] = 1;
        urls.push(this.order[i] as URL);
      }
    }
    const result = new Map<string, Entry>();
    const run = (async () => {
      const wanted = new Set(urls.map(pathKey));
      try {
        await this.dav.multiget(this.collection, urls, (k, f) => {
          if (!wanted.has(k) || !(f.status === 200 || f.status === 404)) return;
          const e = this.entry(f);
          result.set(k, e);
          this.cache.put(k, e);
        });
      } catch (err) {
        if (err instanceof AuthError) throw err;
        this.log.once('multiget-failed', 'info', 'multiget failed; fetching objects one by one', { collection: this.collection.pathname, cause: describeError(err) });
      }
      for (const url of urls) {
        const k = pathKey(url);
        if (result.has(k)) continue;
        const e = await this.single(url);
        result.set(k, e);
        this.cache.put(k, e);
      }
    })();
    for (const k of keys) this.inflight.set(k, run);
    try {
      await run;
    } finally {
      for (const k of keys) if (this.inflight.get(k) === run) this.inflight.delete(k);
    }
    return result;
  }

  private async single(url: URL): Promise<Entry> {
    try {
      return this.entry(await this.dav.get(url));
    } catch (err) {
      if (err instanceof AuthError) throw err;
      return { error: describeError(err) };
    }
  }

  /** Validates a fetched object with ical.js and gives it canonical CRLF line endings. */
  private entry(f: FetchedObject): Entry {
    if (f.status === 404 || f.status === 410) return { error: `no longer on the server (${f.status})` };
    if (f.status !== 200 || f.data === undefined) return { error: `the server answered ${f.status} for this object` };
    const text = canonicalLines(f.data);
    try {
      const comp = parseObject(text, this.dav.kind);
      const body = Buffer.from(text, 'utf8');
      return { body, size: body.length, hash: f.etag === undefined ? fnv1a(text) : undefined, etag: f.etag, lastModified: objectLastModified(comp) };
    } catch (err) {
      return { error: describeError(err) };
    }
  }
}
