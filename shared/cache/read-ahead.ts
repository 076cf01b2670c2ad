// The read-ahead packfile cache: whole packfiles fetched once into a private bounded disk cache, ranges served locally.
import { createWriteStream, mkdirSync, readSync, rmSync } from 'node:fs';
import { mkdtemp, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { MAX_CHUNK, toReadable } from '../content.ts';
import type { ByteRange, ContentSource, Resource } from '../define.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';

/** Settings of a read-ahead cache. */
export interface ReadAheadSettings {
  /** Parent directory of the private cache directory (default: the system temp dir). */
  dir?: string;
  /** Disk the cache may use, in bytes. */
  maxBytes: number;
  /** Packfiles fetched ahead when a walk in MAC order is detected (0 disables prefetch). */
  prefetch: number;
  /** Whole-object download attempts before falling back to direct reads. */
  attempts?: number;
}

/** What the cache needs from a storage connector. */
export interface ReadAheadBackend {
  /** Downloads a whole object. */
  fetch(resource: Resource, mac: Buffer): Promise<ContentSource>;
  /** The connector's own ranged get, used when the cache cannot help. */
  direct(resource: Resource, mac: Buffer, range: ByteRange | undefined): Promise<ContentSource>;
  /** Lists packfiles, used once to learn the MAC order for prefetching. */
  list?(resource: Resource): Promise<Buffer[]>;
}

/** Counters for tests and benchmarks. */
export interface ReadAheadStats {
  downloads: number;
  downloadBytes: number;
  hits: number;
  misses: number;
  direct: number;
  evictions: number;
  prefetched: number;
  failedDownloads: number;
}

interface Entry {
  key: string;
  /** The host has asked for this packfile (a prefetched entry is not seen until then). */
  seen: boolean;
  resource: Resource;
  mac: Buffer;
  path: string;
  size: number;
  ready: Promise<void> | undefined;
  done: boolean;
  fh: FileHandle | undefined;
  readers: number;
  lastUsed: number;
}

const CACHED: ReadonlySet<Resource> = new Set<Resource>(['packfile', 'ecc-packfile']);
const MAX_OPEN_HANDLES = 64;
/** Ranges up to this size are read synchronously from the cache file. */
const SYNC_READ_MAX = 64 * 1024;
const WALK_LENGTH = 3;

/** A private, bounded, on-disk cache of whole packfiles that answers ranged Gets locally. */
export class ReadAheadCache {
  readonly stats: ReadAheadStats = {
    downloads: 0,
    downloadBytes: 0,
    hits: 0,
    misses: 0,
    direct: 0,
    evictions: 0,
    prefetched: 0,
    failedDownloads: 0,
  };
  private readonly entries = new Map<string, Entry>();
  private total = 0;
  private openHandles = 0;
  private dirPromise: Promise<string> | undefined;
  private dirPath: string | undefined;
  private disabled = false;
  private disposed = false;
  private clock = 0;
  private readonly walk: string[] = [];
  private order: { keys: string[]; index: Map<string, number> } | undefined;
  private orderLoading: Promise<void> | undefined;
  private readonly settings: ReadAheadSettings;
  private readonly backend: ReadAheadBackend;
  private readonly log: Logger;
  private readonly onExit = (): void => this.removeSync();

  constructor(settings: ReadAheadSettings, backend: ReadAheadBackend, log: Logger) {
    this.settings = settings;
    this.backend = backend;
    this.log = log;
    process.once('exit', this.onExit);
  }

  /** Serves a Get: packfile ranges from the cache (downloading the whole packfile once), anything else directly. */
  async get(resource: Resource, mac: Buffer, range: ByteRange | undefined): Promise<ContentSource> {
    if (this.disabled || this.disposed || !CACHED.has(resource)) {
      this.stats.direct++;
      return this.backend.direct(resource, mac, range);
    }
    const key = `${resource}/${mac.toString('hex')}`;
    let entry = this.entries.get(key);
    if (!range && !entry?.done) {
      this.stats.direct++;
      return this.backend.direct(resource, mac, range);
    }
    if (!entry) {
      this.stats.misses++;
      entry = this.start(resource, mac, key);
    } else {
      this.stats.hits++;
    }
    if (!entry.seen) {
      entry.seen = true;
      this.noteWalk(key);
    }
    entry.readers++;
    try {
      await entry.ready;
    } catch (err) {
      entry.readers--;
      this.stats.direct++;
      this.log.debug('read-ahead download failed; reading directly', { object: key, cause: describeError(err) });
      return this.backend.direct(resource, mac, range);
    }
    try {
      entry.lastUsed = ++this.clock;
      return await this.read(entry, range);
    } finally {
      entry.readers--;
    }
  }

  /**
   * Forgets a cached object (after a Delete or an overwriting Put). Packfiles are immutable once written, but a
   * deleted MAC must never be served from the cache.
   */
  invalidate(resource: Resource, mac: Buffer): void {
    const key = `${resource}/${mac.toString('hex')}`;
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    if (e.done) this.total -= e.size;
    const fh = e.fh;
    if (fh) this.openHandles--;
    e.fh = undefined;
    void (async () => {
      await e.ready?.catch(() => undefined);
      await fh?.close().catch(() => undefined);
      if (e.path) await rm(e.path, { force: true }).catch(() => undefined);
    })();
  }

  /** Removes the cache directory and forgets everything (on Close and at exit). */
  async dispose(): Promise<void> {
    this.disposed = true;
    process.off('exit', this.onExit);
    const entries = [...this.entries.values()];
    this.entries.clear();
    // Let downloads in flight (prefetches included) finish writing before the directory goes.
    await Promise.all(entries.map((e) => (e.ready ?? Promise.resolve()).catch(() => undefined)));
    for (const e of entries) await e.fh?.close().catch(() => undefined);
    const dir = this.dirPath ?? (await this.dirPromise?.catch(() => undefined));
    if (dir) await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }

  private removeSync(): void {
    if (this.dirPath) rmSync(this.dirPath, { recursive: true, force: true });
  }

  private dir(): Promise<string> {
    this.dirPromise ??= (async () => {
      const parent = this.settings.dir ?? tmpdir();
      mkdirSync(parent, { recursive: true });
      const d = await mkdtemp(join(parent, `kloset-ts-cache-${process.pid}-`));
      this.dirPath = d;
      return d;
    })();
    return this.dirPromise;
  }

  private start(resource: Resource, mac: Buffer, key: string): Entry {
    const entry: Entry = { key, seen: false, resource, mac, path: '', size: 0, ready: undefined, done: false, fh: undefined, readers: 0, lastUsed: ++this.clock };
    this.entries.set(key, entry);
    entry.ready = this.download(entry).then(
      () => {
        entry.done = true;
        this.total += entry.size;
        this.evict(entry);
      },
      (err: unknown) => {
        this.entries.delete(key);
        throw err;
      },
    );
    entry.ready.catch(() => undefined);
    return entry;
  }

  private async download(entry: Entry): Promise<void> {
    const dir = await this.dir();
    entry.path = join(dir, entry.key.replace('/', '-'));
    const part = `${entry.path}.part`;
    const attempts = this.settings.attempts ?? 3;
    let last: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const source = await this.backend.fetch(entry.resource, entry.mac);
        await pipeline(toReadable(source), createWriteStream(part));
        await rename(part, entry.path);
        entry.size = (await stat(entry.path)).size;
        this.stats.downloads++;
        this.stats.downloadBytes += entry.size;
        return;
      } catch (err) {
        last = err;
        await rm(part, { force: true }).catch(() => undefined);
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC' || (err as NodeJS.ErrnoException).code === 'EDQUOT') {
          this.disabled = true;
          this.log.warn(`the read-ahead cache in ${dir} is out of disk space; reading directly from the store from now on`);
          break;
        }
        if (this.disposed) break;
      }
    }
    this.stats.failedDownloads++;
    throw last;
  }

  private async handle(entry: Entry): Promise<FileHandle> {
    if (entry.fh) return entry.fh;
    if (this.openHandles >= MAX_OPEN_HANDLES) {
      const victim = [...this.entries.values()].filter((e) => e.fh && e.readers === 0 && e !== entry).sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (victim?.fh) {
        const fh = victim.fh;
        victim.fh = undefined;
        this.openHandles--;
        await fh.close().catch(() => undefined);
      }
    }
    const fh = await open(entry.path, 'r');
    if (entry.fh) {
      await fh.close();
      return entry.fh;
    }
    entry.fh = fh;
    this.openHandles++;
    return fh;
  }

  private async read(entry: Entry, range: ByteRange | undefined): Promise<ContentSource> {
    const offset = range?.offset ?? 0;
    if (offset >= entry.size) return new Uint8Array(0);
    const length = Math.min(range?.length ?? entry.size, entry.size - offset);
    const fh = await this.handle(entry);
    if (length <= SYNC_READ_MAX) {
      // The host's typical range is ~720 bytes of a file in the page cache: a synchronous pread costs microseconds,
      // a threadpool round trip costs far more (PROTOCOL.md §9: restore speed is the per-Get cost).
      const buf = Buffer.allocUnsafe(length);
      const bytesRead = readSync(fh.fd, buf, 0, length, offset);
      return bytesRead === length ? buf : buf.subarray(0, bytesRead);
    }
    if (length <= MAX_CHUNK) {
      const buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      return bytesRead === length ? buf : buf.subarray(0, bytesRead);
    }
    entry.readers++;
    const self = this;
    return (async function* () {
      try {
        for (let pos = offset; pos < offset + length; pos += MAX_CHUNK) {
          const n = Math.min(MAX_CHUNK, offset + length - pos);
          const buf = Buffer.allocUnsafe(n);
          const { bytesRead } = await fh.read(buf, 0, n, pos);
          if (bytesRead === 0) return;
          yield bytesRead === n ? buf : buf.subarray(0, bytesRead);
        }
      } finally {
        entry.readers--;
        void self;
      }
    })();
  }

  private evict(keep: Entry): void {
    if (this.total <= this.settings.maxBytes) return;
    const candidates = [...this.entries.values()].filter((e) => e.done && e !== keep && e.readers === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of candidates) {
      if (this.total <= this.settings.maxBytes) break;
      this.entries.delete(e.key);
      this.total -= e.size;
      this.stats.evictions++;
      const fh = e.fh;
      if (fh) this.openHandles--;
      void (async () => {
        await fh?.close().catch(() => undefined);
        await rm(e.path, { force: true }).catch(() => undefined);
      })();
    }
  }

  /** Prefetch: when the last few first-time packfile reads walk the MAC-sorted listing, fetch the next ones ahead. */
  private noteWalk(key: string): void {
    if (this.settings.prefetch <= 0 || !this.backend.list || !key.startsWith('packfile/')) return;
    this.walk.push(key);
    if (this.walk.length > WALK_LENGTH) this.walk.shift();
    if (this.walk.length < 2) return;
    if (!this.order) {
      this.orderLoading ??= this.loadOrder();
      void this.orderLoading.then(() => this.noteWalkWithOrder());
      return;
    }
    this.noteWalkWithOrder();
  }

  private async loadOrder(): Promise<void> {
    try {
      const macs = (await this.backend.list?.('packfile')) ?? [];
      const keys = macs.map((m) => `packfile/${m.toString('hex')}`).sort();
      this.order = { keys, index: new Map(keys.map((k, i) => [k, i])) };
    } catch (err) {
      this.log.debug('read-ahead could not list packfiles; prefetch disabled', { cause: describeError(err) });
      this.order = { keys: [], index: new Map() };
    }
  }

  private noteWalkWithOrder(): void {
    const order = this.order;
    if (!order || this.walk.length < WALK_LENGTH || this.disabled || this.disposed) return;
    const idx = this.walk.map((k) => order.index.get(k));
    for (let i = 1; i < idx.length; i++) {
      const a = idx[i - 1];
      const b = idx[i];
      if (a === undefined || b === undefined || b <= a || b - a > 2) return;
    }
    const last = idx[idx.length - 1] as number;
    const avg = this.stats.downloads > 0 ? this.stats.downloadBytes / this.stats.downloads : 0;
    for (let i = last + 1; i <= last + this.settings.prefetch && i < order.keys.length; i++) {
      const key = order.keys[i] as string;
      if (this.entries.has(key)) continue;
      if (this.total + avg * 2 > this.settings.maxBytes) break;
      this.stats.prefetched++;
      this.start('packfile', Buffer.from(key.slice('packfile/'.length), 'hex'), key);
    }
  }
}
