// The read-ahead packfile cache: whole packfiles fetched once into a private bounded disk cache, ranges served locally.
import { mkdirSync, readSync, rmSync } from 'node:fs';
import { mkdtemp, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MAX_CHUNK, toReadable } from '../content.ts';
import type { ByteRange, ContentSource, Resource } from '../define.ts';
import { AuthError, describeError, NotFoundError } from '../errors.ts';
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

interface Waiter {
  end: number;
  resolve(): void;
  reject(err: unknown): void;
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
  /** Bytes of the download written to the cache file so far (they never change: objects are immutable). */
  written: number;
  /** Reads waiting for the download to reach their end. */
  waiters: Waiter[];
  fh: FileHandle | undefined;
  readers: number;
  /** Closes and removes the file once the last read leaves (set when the entry is dropped while being read). */
  release: (() => void) | undefined;
  lastUsed: number;
}

const CACHED: ReadonlySet<Resource> = new Set<Resource>(['packfile', 'ecc-packfile']);
const MAX_OPEN_HANDLES = 64;
/** Ranges up to this size are read synchronously from the cache file. */
const SYNC_READ_MAX = 64 * 1024;
const WALK_LENGTH = 3;
/** Bytes of a download buffered while the previous write to the cache file runs. */
const SINK_BUFFER = 1024 * 1024;

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
      // A range is served as soon as the download has written it: restores overlap with the download.
      if (!entry.done && (range === undefined || entry.written < range.offset + range.length)) {
        await new Promise<void>((resolve, reject) => {
          (entry as Entry).waiters.push({ end: range ? range.offset + range.length : Infinity, resolve, reject });
        });
      }
    } catch (err) {
      this.leave(entry);
      this.stats.direct++;
      this.log.debug('read-ahead download failed; reading directly', { object: key, cause: describeError(err) });
      return this.backend.direct(resource, mac, range);
    }
    try {
      entry.lastUsed = ++this.clock;
      return await this.read(entry, range);
    } catch (err) {
      // The cache file could not be read (removed behind our back, …): the store still can.
      this.log.debug('read-ahead cache file unreadable; reading directly', { object: key, cause: describeError(err) });
      if (entry.done) this.invalidate(resource, mac);
      this.stats.direct++;
      return this.backend.direct(resource, mac, range);
    } finally {
      this.leave(entry);
    }
  }

  private leave(entry: Entry): void {
    entry.readers--;
    if (entry.readers === 0 && entry.release) {
      const release = entry.release;
      entry.release = undefined;
      release();
    }
  }

  /**
   * Closes an entry's file and removes `paths` once no read uses it any more: a read woken just before a download
   * failed, or just before an invalidation, still reads the bytes that were complete from the open file.
   */
  private retire(entry: Entry, paths: string[]): void {
    const go = (): void => {
      const fh = entry.fh;
      if (fh) {
        entry.fh = undefined;
        this.openHandles--;
      }
      void (async () => {
        await fh?.close().catch(() => undefined);
        for (const p of paths) if (p) await rm(p, { force: true }).catch(() => undefined);
      })();
    };
    if (entry.readers > 0) entry.release = go;
    else go();
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
    if (e.done) {
      this.total -= e.size;
      this.retire(e, [e.path]);
      return;
    }
    // A download in flight finishes (or fails and retires itself) before its file goes.
    void e.ready?.then(
      () => this.retire(e, [e.path]),
      () => undefined,
    );
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
    const entry: Entry = {
      key,
      seen: false,
      resource,
      mac,
      path: '',
      size: 0,
      ready: undefined,
      done: false,
      written: 0,
      waiters: [],
      fh: undefined,
      readers: 0,
      release: undefined,
      lastUsed: ++this.clock,
    };
    this.entries.set(key, entry);
    entry.ready = this.download(entry).then(
      () => {
        entry.done = true;
        entry.size = entry.written;
        this.total += entry.size;
        for (const w of entry.waiters.splice(0)) w.resolve();
        this.evict(entry);
      },
      (err: unknown) => {
        if (this.entries.get(key) === entry) this.entries.delete(key);
        for (const w of entry.waiters.splice(0)) w.reject(err);
        throw err;
      },
    );
    entry.ready.catch(() => undefined);
    return entry;
  }

  /**
   * Downloads a whole object into `<dir>/<resource>-<mac>.part`, renamed when complete. Reads are served from the part
   * file up to `written` while it grows. A broken download is tried again from the start of the object, skipping the
   * bytes already written (they are the same: objects are immutable), so `written` never goes back.
   */
  private async download(entry: Entry): Promise<void> {
    let dir = this.settings.dir ?? tmpdir();
    let fh: FileHandle;
    try {
      dir = await this.dir();
      entry.path = join(dir, entry.key.replace('/', '-'));
      fh = await open(`${entry.path}.part`, 'w+');
    } catch (err) {
      // A cache directory that cannot be made or written turns the cache off; reads go to the store.
      this.disabled = true;
      this.stats.failedDownloads++;
      this.log.warn(`the read-ahead cache cannot use ${dir} (${describeError(err)}); reading directly from the store from now on`);
      throw err;
    }
    const part = `${entry.path}.part`;
    entry.fh = fh;
    this.openHandles++;
    const attempts = this.settings.attempts ?? 3;
    let last: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const stream = { pos: 0 };
        await pipeline(toReadable(await this.backend.fetch(entry.resource, entry.mac)), this.sink(entry, fh, stream));
        const pos = stream.pos;
        if (pos < entry.written) throw new Error(`the object is shorter (${pos} bytes) than a previous download of it (${entry.written} bytes)`);
        await rename(part, entry.path);
        this.stats.downloads++;
        this.stats.downloadBytes += entry.written;
        return;
      } catch (err) {
        last = err;
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC' || (err as NodeJS.ErrnoException).code === 'EDQUOT') {
          this.disabled = true;
          this.log.warn(`the read-ahead cache in ${dir} is out of disk space; reading directly from the store from now on`);
          break;
        }
        // A missing object or a refused read will not change on a retry: the direct read reports it.
        if (this.disposed || err instanceof NotFoundError || err instanceof AuthError) break;
      }
    }
    this.stats.failedDownloads++;
    this.retire(entry, [part]);
    throw last;
  }

  /**
   * The cache file as a stream sink: whatever arrives while a write runs is written next in one `writev` (the download
   * keeps flowing instead of waiting for each chunk's write), skipping bytes a previous attempt already wrote; then the
   * reads waiting for those bytes are woken. `stream.pos` counts the bytes of this attempt.
   */
  private sink(entry: Entry, fh: FileHandle, stream: { pos: number }): Writable {
    const write = async (chunks: Buffer[]): Promise<void> => {
      if (this.disposed) throw new Error('the read-ahead cache was closed');
      const at = entry.written;
      const pieces: Buffer[] = [];
      let length = 0;
      for (const chunk of chunks) {
        const from = Math.max(0, at + length - stream.pos);
        if (from < chunk.length) {
          pieces.push(from === 0 ? chunk : chunk.subarray(from));
          length += chunk.length - from;
        }
        stream.pos += chunk.length;
      }
      if (length === 0) return;
      const { bytesWritten } = await fh.writev(pieces, at);
      if (bytesWritten < length) await writeAll(fh, Buffer.concat(pieces).subarray(bytesWritten), 0, at + bytesWritten);
      entry.written = at + length;
      this.wake(entry);
    };
    return new Writable({
      highWaterMark: SINK_BUFFER,
      write: (chunk: Buffer, _encoding, callback) => void write([chunk]).then(() => callback(), callback),
      writev: (items, callback) => void write(items.map((i) => i.chunk as Buffer)).then(() => callback(), callback),
    });
  }

  /** Hands the bytes written so far to the reads waiting for them. */
  private wake(entry: Entry): void {
    if (entry.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of entry.waiters) {
      if (w.end <= entry.written) w.resolve();
      else still.push(w);
    }
    entry.waiters = still;
  }

  private async handle(entry: Entry): Promise<FileHandle> {
    if (entry.fh) return entry.fh;
    if (this.openHandles >= MAX_OPEN_HANDLES) {
      const victim = [...this.entries.values()].filter((e) => e.fh && e.done && e.readers === 0 && e !== entry).sort((a, b) => a.lastUsed - b.lastUsed)[0];
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
    // Before the download ends only fully written ranges get here; after it, ranges are clamped to the object's size.
    const size = entry.done ? entry.size : entry.written;
    if (offset >= size) return new Uint8Array(0);
    const length = Math.min(range?.length ?? size, size - offset);
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
        self.leave(entry);
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
      this.retire(e, [e.path]);
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

/** Writes `chunk` from `from` at `position`, however many calls it takes. */
async function writeAll(fh: FileHandle, chunk: Uint8Array, from: number, position: number): Promise<void> {
  for (let off = from; off < chunk.length; ) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, position + (off - from));
    off += bytesWritten;
  }
}
