// CalDAV/CardDAV exporter: recreates collections with their properties and PUTs every object without ever overwriting blindly.
import type { Readable } from 'node:stream';
import {
  AuthError,
  decodeSegment,
  defineExporter,
  describeError,
  FatalError,
  ItemError,
  NotFoundError,
  type ExportEntry,
  type Logger,
} from '../../shared/index.ts';
import { classify, DavHttp, type DavResponse } from './client.ts';
import { Dav, NS, parseXml, pathKey, type Target, type XmlNode } from './dav.ts';
import {
  COLLECTION_FILE,
  extensionOf,
  parseCollectionFile,
  prepareObject,
  sameObject,
  serverNameOf,
  type PreparedObject,
  type SavedCollection,
} from './map.ts';
import { checkAuthOptions, COMPONENTS, exporterOptions, kindOf, LOCATION, serverUrl, type DavKind } from './options.ts';

/** Largest object accepted for a restore (calendar objects with inline attachments stay far below this). */
const MAX_OBJECT = 64 * 1024 * 1024;

/** The caldav exporter. */
export const exporter = defineExporter({
  options: exporterOptions,
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
    const target = await dav.discover(start, true);
    if (target.mode === 'missing') {
      // A collection to create: its parent (a home) must exist, or every object would fail one by one.
      const parent = new URL('..', target.url);
      if (!(await dav.exists(parent))) {
        throw new NotFoundError(
          `neither ${target.url.href} nor its parent ${parent.href} exists (hint: location must name a ${kind === 'caldav' ? 'calendar' : 'address book'} home, or a collection to create inside one)`,
        );
      }
    }
    const wanted = [...new Set(o.components.map((c) => c.toUpperCase()))];
    const restore = new Restore(dav, kind, target, {
      overwrite: o.onConflict === 'overwrite',
      components: kind === 'caldav' && wanted.length < COMPONENTS.length ? wanted : undefined,
      log: ctx.log,
    });
    const account = o.username ?? (target.mode === 'homes' && target.principal ? target.principal.pathname : start.pathname);
    return {
      origin: `${account}@${start.host}`,
      type: ctx.proto,
      root: start.pathname,
      mkdir: async (entry) => restore.mkdir(entry),
      write: async (entry, content) => restore.write(entry, content),
      finish: async () => restore.finish(),
      async ping() {
        await dav.discover(start, true);
      },
      async close() {
        http.close();
      },
    };
  },
});

/** One destination collection and what the restore knows and did about it. */
interface Collection {
  url: URL;
  /** Saved properties, once the collection file has been read. */
  saved?: SavedCollection;
  /** The collection file's write, while it runs (objects wait for it so the collection is created with its properties). */
  metaPending?: Promise<unknown>;
  creating?: Promise<void>;
  created: boolean;
  existed: boolean;
  propsApplied: boolean;
  refused: string[];
}

interface RestoreOptions {
  overwrite: boolean;
  components: string[] | undefined;
  log: Logger;
}

/** The state of one restore: destination collections, by snapshot directory name. */
class Restore {
  private readonly collections = new Map<string, Collection>();
  private rootName: string | undefined;
  private readonly counts = { created: 0, unchanged: 0, replaced: 0, skipped: 0 };
  private readonly dav: Dav;
  private readonly kind: DavKind;
  private readonly target: Target;
  private readonly o: RestoreOptions;

  constructor(dav: Dav, kind: DavKind, target: Target, o: RestoreOptions) {
    this.dav = dav;
    this.kind = kind;
    this.target = target;
    this.o = o;
  }

  private get word(): string {
    return this.kind === 'caldav' ? 'calendar' : 'address book';
  }

  mkdir(entry: ExportEntry): void {
    if (entry.path === '/') {
      // The restore target itself; its name is the snapshot directory it stands for (a collection when one was restored).
      if (entry.name && entry.name !== '/') this.rootName = entry.name;
      return;
    }
    const segs = entry.path.split('/').slice(1);
    if (segs.length === 1 && this.target.mode === 'homes') this.collectionNamed(segs[0] as string);
  }

  private collectionNamed(name: string): Collection {
    let c = this.collections.get(name);
    if (!c) {
      let url: URL;
      if (this.target.mode === 'homes') {
        url = new URL(`${encodeURIComponent(decodeSegment(name))}/`, this.target.homes[0]);
      } else {
        url = this.target.mode === 'collection' ? this.target.collection.url : this.target.url;
      }
      c = { url, created: false, existed: false, propsApplied: false, refused: [] };
      this.collections.set(name, c);
    }
    return c;
  }

  /** The destination collection and object name of a snapshot path. */
  private locate(path: string): { collection: Collection; file: string } {
    const segs = path.split('/').slice(1);
    const file = segs[segs.length - 1] ?? '';
    if (this.target.mode !== 'homes') return { collection: this.collectionNamed(''), file };
    if (segs.length === 2) return { collection: this.collectionNamed(segs[0] as string), file };
    if (segs.length === 1) {
      if (!this.rootName) {
        throw new ItemError(path, `cannot tell which ${this.word} this object belongs to: restore a whole ${this.word} directory, or point location at one ${this.word}`);
      }
      return { collection: this.collectionNamed(this.rootName), file };
    }
    throw new ItemError(path, `not a <${this.word}>/<object> path; point location at one ${this.word} to restore a deeper directory`);
  }

  /** Restores one file; a login failure stops the whole restore (every later object would fail the same way). */
  async write(entry: ExportEntry, content: Readable): Promise<void> {
    try {
      await this.writeOne(entry, content);
    } catch (err) {
      if (err instanceof AuthError) throw new FatalError(describeError(err), { cause: err, code: err.code });
      throw err;
    }
  }

  private writeOne(entry: ExportEntry, content: Readable): Promise<void> {
    let where: { collection: Collection; file: string };
    try {
      where = this.locate(entry.path);
    } catch (err) {
      content.resume();
      return Promise.reject(err);
    }
    const { collection, file } = where;
    if (file === COLLECTION_FILE) {
      // Registered before the first await: objects written after this file wait for it (see `ready`).
      const pending = this.restoreProps(entry.path, collection, content);
      collection.metaPending ??= pending.catch(() => undefined);
      return pending;
    }
    return this.restoreObject(entry.path, collection, file, content);
  }

  private async restoreProps(path: string, c: Collection, content: Readable): Promise<void> {
    const bytes = await readAll(path, content);
    let saved: SavedCollection;
    try {
      saved = parseCollectionFile(bytes);
    } catch (err) {
      throw new ItemError(path, err);
    }
    const want = this.kind === 'caldav' ? 'calendar' : 'addressbook';
    if (saved.kind !== want) {
      throw new ItemError(path, `these are the properties of ${saved.kind === 'calendar' ? 'a calendar; restore it with caldav://' : 'an address book; restore it with carddav://'}`);
    }
    if (c.saved) return; // several collections restored into one: the first one's properties win
    c.saved = saved;
    await this.ensure(c, path);
    if (c.created && !c.propsApplied) {
      c.propsApplied = true;
      c.refused = await this.dav.applyProps(c.url, saved.props);
    }
    if (c.existed) {
      this.o.log.info(`${this.word} already exists; its properties are left as they are`, { collection: c.url.pathname });
      return;
    }
    if (c.refused.length > 0) {
      throw new ItemError(path, `created ${c.url.pathname}, but the server did not keep these properties: ${c.refused.join(', ')}`);
    }
  }

  /** Creates the collection once (MKCALENDAR / extended MKCOL with its saved properties) unless it exists. */
  private ensure(c: Collection, path: string): Promise<void> {
    c.creating ??= (async () => {
      const existing = await this.dav.collection(c.url);
      if (existing) {
        c.existed = true;
        return;
      }
      const res = await this.dav.createCollection(c.url, c.saved?.props ?? {});
      c.existed = res.existed;
      c.created = !res.existed;
      if (c.created) {
        this.o.log.info(`created ${this.word}`, { collection: c.url.pathname });
        if (c.saved) {
          c.propsApplied = true;
          c.refused = res.refused;
        }
      }
    })();
    return c.creating.catch((err: unknown) => {
      if (err instanceof AuthError) throw err;
      throw new ItemError(path, `cannot create ${this.word} ${c.url.pathname}: ${describeError(err)}`);
    });
  }

  private async restoreObject(path: string, c: Collection, file: string, content: Readable): Promise<void> {
    const ext = extensionOf(this.kind);
    if (!file.toLowerCase().endsWith(ext)) {
      content.resume();
      throw new ItemError(path, `not a ${this.kind === 'caldav' ? 'calendar object (.ics)' : 'vCard (.vcf)'}; skipped`);
    }
    const text = (await readAll(path, content)).toString('utf8');
    let prepared: PreparedObject;
    try {
      prepared = prepareObject(text, this.kind);
    } catch (err) {
      throw new ItemError(path, err);
    }
    if (this.o.components && !this.o.components.includes(prepared.type)) {
      this.o.log.once('component-skip', 'info', `objects of types outside components are not restored`, { path, type: prepared.type });
      return;
    }
    if (c.metaPending) await c.metaPending;
    await this.ensure(c, path);
    const url = new URL(encodeURIComponent(serverNameOf(file)), c.url);
    const res = await this.dav.put(url, prepared.body, { ifNoneMatch: true });
    if (isSuccess(res)) {
      this.counts.created++;
      return;
    }
    if (res.status === 412 && !hasPrecondition(res, 'no-uid-conflict')) return this.resolve(path, url, prepared, `${url.pathname} already exists`);
    if (hasPrecondition(res, 'no-uid-conflict')) {
      const other = await this.uidOwner(c, url, prepared, res);
      if (!other) throw new ItemError(path, `UID ${JSON.stringify(prepared.uid)} is already used by another object in ${c.url.pathname}; not restored`);
      return this.resolve(path, other, prepared, `UID ${JSON.stringify(prepared.uid)} is already used by ${other.pathname}`);
    }
    throw new ItemError(path, refusal(res));
  }

  /** Where an object with the same UID lives: the href in the server's no-uid-conflict error, else a UID query. */
  private async uidOwner(c: Collection, url: URL, prepared: PreparedObject, res: DavResponse): Promise<URL | undefined> {
    const given = preconditionHref(res);
    if (given && pathKey(given) !== pathKey(url)) return given;
    if (!prepared.uid) return undefined;
    const found = await this.dav.findUid(c.url, prepared.uid).catch((err: unknown) => {
      if (err instanceof AuthError) throw err;
      return [] as URL[];
    });
    return found.find((u) => pathKey(u) !== pathKey(url));
  }

  /**
   * An object already exists where this one would go: identical content is success (a re-run restore),
   * different content is skipped and reported, or, with overwrite, replaced with If-Match on the ETag just read.
   */
  private async resolve(path: string, url: URL, prepared: PreparedObject, what: string): Promise<void> {
    const current = await this.dav.get(url);
    if (current.status === 404) {
      const again = await this.dav.put(url, prepared.body, { ifNoneMatch: true });
      if (isSuccess(again)) {
        this.counts.created++;
        return;
      }
      throw new ItemError(path, refusal(again));
    }
    if (current.status !== 200 || current.data === undefined) throw new ItemError(path, `${what}, and reading it back answered ${current.status}`);
    if (sameObject(current.data, prepared.body, this.kind)) {
      this.counts.unchanged++;
      return;
    }
    if (!this.o.overwrite) {
      this.counts.skipped++;
      throw new ItemError(path, `${what} on the server with different content; kept the server's version (set on_conflict=overwrite to replace it)`);
    }
    if (!current.etag) throw new ItemError(path, `${what} with different content, and the server gave no ETag to replace it safely; not overwritten`);
    const res = await this.dav.put(url, prepared.body, { ifMatch: current.etag });
    if (isSuccess(res)) {
      this.counts.replaced++;
      return;
    }
    if (res.status === 412) throw new ItemError(path, `${what} and changed on the server during the restore; not overwritten`);
    throw new ItemError(path, refusal(res));
  }

  finish(): void {
    const c = this.counts;
    this.o.log.info('restore finished', { created: c.created, unchanged: c.unchanged, replaced: c.replaced, skipped: c.skipped });
  }
}

async function readAll(path: string, content: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of content as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_OBJECT) {
      content.destroy();
      throw new ItemError(path, `larger than ${MAX_OBJECT / 1024 / 1024} MiB; not restored`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function isSuccess(res: DavResponse): boolean {
  return res.status === 200 || res.status === 201 || res.status === 204;
}

/** The XML error body of a refused request, if any (an `<error>` element or a multistatus holding one). */
function errorXml(res: DavResponse): XmlNode | undefined {
  const type = String(res.headers['content-type'] ?? '');
  if (!/xml/i.test(type) || res.body.length === 0) return undefined;
  try {
    return parseXml(res.body.toString('utf8'));
  } catch {
    return undefined;
  }
}

function findElement(node: XmlNode | undefined, name: string): XmlNode | undefined {
  if (!node) return undefined;
  if (node.name === name && (node.ns === NS.CALDAV || node.ns === NS.CARDDAV)) return node;
  for (const ch of node.children) {
    const f = findElement(ch, name);
    if (f) return f;
  }
  return undefined;
}

/** True when the refusal names CalDAV/CardDAV precondition `name` (RFC 4791 §5.3.2.1, RFC 6352 §6.3.2.1). */
function hasPrecondition(res: DavResponse, name: string): boolean {
  return findElement(errorXml(res), name) !== undefined;
}

/** The href inside a no-uid-conflict precondition, when the server says which object holds the UID. */
function preconditionHref(res: DavResponse): URL | undefined {
  const node = findElement(errorXml(res), 'no-uid-conflict');
  const href = node?.children.find((c) => c.ns === NS.DAV && c.name === 'href')?.text.trim();
  if (!href) return undefined;
  try {
    return new URL(href, res.url);
  } catch {
    return undefined;
  }
}

/** A one-line reason for a refused PUT: status and the precondition the server named, never the raw body. */
function refusal(res: DavResponse): string {
  const xml = errorXml(res);
  const conditions: string[] = [];
  const walk = (n: XmlNode): void => {
    if ((n.ns === NS.CALDAV || n.ns === NS.CARDDAV) && n.children.length === 0) conditions.push(n.name);
    n.children.forEach(walk);
  };
  if (xml) walk(xml);
  const base = `the server refused the object: ${res.status} ${res.statusText}`.trim();
  return conditions.length > 0 ? `${base} (${[...new Set(conditions)].join(', ')})` : base;
}

