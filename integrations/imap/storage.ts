// The imap storage: a Plakar repository inside mailboxes, one message per blob (or several for large ones), ranged reads by partial FETCH.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  defineStorage,
  KlosetError,
  macHex,
  NotFoundError,
  type ByteRange,
  type Resource,
} from '../../shared/index.ts';
import {
  buildBlobMessage,
  CONFIG_KEY,
  CONFIG_MAILBOX,
  decodeText,
  decodeWindow,
  encodedWindow,
  INDEX_HEADERS,
  LINE_DATA,
  parseBlobRow,
  partCapacity,
  resolveBlob,
  RESOURCE_MAILBOXES,
  type BlobHeaders,
  type BlobRow,
  type BlobVersion,
} from './blob.ts';
import { connectForInit, ImapError, imapPacer, Pool, resolveSettings } from './client.ts';
import { uidSet } from './map.ts';
import { LOCATION_HELP, storageOptions } from './options.ts';

/** Decoded bytes per message when a whole blob is streamed. */
const STREAM_CHUNK = LINE_DATA * 18396;
/** Messages per FETCH while indexing a mailbox. */
const INDEX_BATCH = 1000;

/** A message vanished (expunged by another process) between indexing and reading. */
class GoneError extends NotFoundError {
  override name = 'GoneError';
}

/** What is known about one resource mailbox: every blob message by UID, kept current incrementally. */
class MailboxIndex {
  readonly name: string;
  uidValidity: bigint | undefined;
  maxUid = 0;
  missing = false;
  /** Every message by UID; `null` for messages that are not blobs or are marked \Deleted. */
  readonly rows = new Map<number, BlobRow | null>();
  /** UIDs by blob name. */
  readonly byName = new Map<string, Set<number>>();
  private readonly resolved = new Map<string, ReturnType<typeof resolveBlob>>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(name: string) {
    this.name = name;
  }

  /** Runs `fn` after every earlier locked call on this mailbox. */
  locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  reset(uidValidity: bigint | undefined): void {
    this.uidValidity = uidValidity;
    this.maxUid = 0;
    this.rows.clear();
    this.byName.clear();
    this.resolved.clear();
  }

  add(uid: number, row: BlobRow | null): void {
    this.remove(uid);
    this.rows.set(uid, row);
    this.maxUid = Math.max(this.maxUid, uid);
    const name = row?.mac ?? row?.partOf;
    if (name === undefined) return;
    const set = this.byName.get(name) ?? new Set<number>();
    set.add(uid);
    this.byName.set(name, set);
    this.resolved.delete(name);
  }

  remove(uid: number): void {
    const row = this.rows.get(uid);
    this.rows.delete(uid);
    const name = row?.mac ?? row?.partOf;
    if (name === undefined) return;
    this.byName.get(name)?.delete(uid);
    if (this.byName.get(name)?.size === 0) this.byName.delete(name);
    this.resolved.delete(name);
  }

  /** The current version and the superseded messages of one blob. */
  resolve(name: string): ReturnType<typeof resolveBlob> {
    let r = this.resolved.get(name);
    if (!r) {
      const rows = [...(this.byName.get(name) ?? [])].map((u) => this.rows.get(u)).filter((x): x is BlobRow => !!x);
      r = resolveBlob(rows);
      this.resolved.set(name, r);
    }
    return r;
  }

  names(): string[] {
    return [...this.byName.keys()].filter((n) => this.resolve(n).current !== undefined);
  }
}

/** The imap storage. */
export const storage = defineStorage({
  options: storageOptions,
  location: { help: 'imap://[user[:pass]@]host[:port] (imaps:// for implicit TLS); the repository lives under the `root` mailbox', pattern: '^imaps?://[^/]+(/.*)?$' },
  async init(ctx) {
    const settings = resolveSettings(ctx);
    if (settings.segments.length > 0) {
      ctx.log.warn('the location path is ignored by the storage; use the `root` option to choose the mailbox', { path: settings.segments.join('/') });
    }
    const first = await connectForInit(ctx, settings);
    const uidplus = first.capabilities.has('UIDPLUS');
    const delimiter = first.namespaces?.personal?.[0]?.delimiter || '/';
    const pool = new Pool(settings, settings.concurrency, imapPacer(ctx, settings), ctx.log);
    pool.adopt(first);
    const rootSegments = ctx.options.root.split('/').filter((s) => s !== '');
    if (rootSegments.length === 0) rootSegments.push('Plakar');
    const root = rootSegments.join(delimiter);
    const mailboxOf = (leaf: string): string => `${root}${delimiter}${leaf}`;
    const capacity = partCapacity(ctx.options.maxMessageSize);
    const where = `${settings.account} (mailbox ${JSON.stringify(root)})`;

    const indexes = new Map<string, MailboxIndex>();
    const indexOf = (leaf: string): MailboxIndex => {
      const name = mailboxOf(leaf);
      let idx = indexes.get(name);
      if (!idx) {
        idx = new MailboxIndex(name);
        indexes.set(name, idx);
      }
      return idx;
    };

    /** Brings an index up to date: new messages by UID, a full resync when the count says something vanished. */
    const refresh = (idx: MailboxIndex, full = false): Promise<void> =>
      idx.locked(async () => {
        await pool.run(`index ${idx.name}`, idx.name, async (s) => {
          let exists: number;
          try {
            const reused = s.selected === idx.name;
            const opened = await s.select(idx.name, true);
            if (reused) await s.client.noop();
            exists = s.client.mailbox ? s.client.mailbox.exists : opened.exists;
            idx.missing = false;
            if (idx.uidValidity !== opened.uidValidity) idx.reset(opened.uidValidity);
          } catch (err) {
            if (isMissingMailbox(err)) {
              idx.reset(undefined);
              idx.missing = true;
              return;
            }
            throw err;
          }
          if (exists === 0) {
            idx.reset(idx.uidValidity);
            return;
          }
          if (!full && exists > idx.rows.size) {
            const rows = await s.client.fetchAll(`${idx.maxUid + 1}:*`, { uid: true, flags: true, headers: INDEX_HEADERS }, { uid: true });
            for (const m of rows) if (m.uid > idx.maxUid) idx.add(m.uid, rowOf(m.uid, m.flags, m.headers));
          }
          if (full || exists !== idx.rows.size) {
            const present = ((await s.client.search({ all: true }, { uid: true })) || []).sort((a, b) => a - b);
            const keep = new Set(present);
            for (const uid of [...idx.rows.keys()]) if (!keep.has(uid)) idx.remove(uid);
            const unknown = present.filter((u) => !idx.rows.has(u));
            for (let i = 0; i < unknown.length; i += INDEX_BATCH) {
              const batch = unknown.slice(i, i + INDEX_BATCH);
              const rows = await s.client.fetchAll(uidSet(batch), { uid: true, flags: true, headers: INDEX_HEADERS }, { uid: true });
              for (const m of rows) idx.add(m.uid, rowOf(m.uid, m.flags, m.headers));
            }
          }
        });
      });

    /** The current version of a blob, refreshing the index when it is not known yet. */
    const lookup = async (idx: MailboxIndex, name: string, forceRefresh = false): Promise<BlobVersion | undefined> => {
      if (!forceRefresh) {
        const known = idx.resolve(name).current;
        if (known) return known;
      }
      await refresh(idx, forceRefresh);
      return idx.resolve(name).current;
    };

    /** Fetches `[start, start+length)` of a message's body text by partial FETCH. */
    const fetchText = (mailbox: string, uid: number, start: number, length: number | undefined): Promise<Buffer> =>
      pool.run(`FETCH ${mailbox} UID ${uid}`, mailbox, async (s) => {
        await s.select(mailbox, true);
        const part = length === undefined ? { key: 'TEXT' } : { key: 'TEXT', start, maxLength: Math.max(1, length) };
        const msg = await s.client.fetchOne(String(uid), { uid: true, bodyParts: [part] }, { uid: true });
        if (!msg) throw new GoneError(`message UID ${uid} is gone from ${mailbox}`);
        return msg.bodyParts?.get('text') ?? Buffer.alloc(0);
      });

    /** Decoded bytes `[from, to)` of one message: the base64 window only, or the whole text when the layout is not ours. */
    const readDecoded = async (mailbox: string, uid: number, from: number, to: number): Promise<Buffer> => {
      if (to <= from) return Buffer.alloc(0);
      const w = encodedWindow(from, to);
      const text = await fetchText(mailbox, uid, w.start, w.end - w.start);
      const decoded = decodeWindow(text, w.start);
      if (decoded) return decoded.subarray(w.skip, w.skip + (to - from));
      ctx.log.once(`layout-${mailbox}`, 'info', `messages in ${mailbox} are not in the expected base64 layout; reading them whole`);
      const whole = decodeText(await fetchText(mailbox, uid, 0, undefined));
      return whole.subarray(from, to);
    };

    /** Decoded bytes `[from, to)` of a blob version, across its parts. */
    const readRange = async (idx: MailboxIndex, v: BlobVersion, from: number, to: number): Promise<Buffer> => {
      const out: Buffer[] = [];
      for (const p of v.parts) {
        const pEnd = p.size === undefined ? Infinity : p.offset + p.size;
        if (pEnd <= from || p.offset >= to) continue;
        const a = Math.max(from, p.offset) - p.offset;
        const b = Math.min(to, pEnd) - p.offset;
        out.push(await readDecoded(idx.name, p.uid, a, b));
      }
      return Buffer.concat(out);
    };

    /** Streams a whole blob version, message by message, in decoded chunks. */
    async function* streamWhole(idx: MailboxIndex, v: BlobVersion): AsyncGenerator<Buffer> {
      for (const p of v.parts) {
        for (let at = 0; p.size === undefined || at < p.size; at += STREAM_CHUNK) {
          const end = p.size === undefined ? at + STREAM_CHUNK : Math.min(p.size, at + STREAM_CHUNK);
          const chunk = await readDecoded(idx.name, p.uid, at, end);
          if (chunk.length > 0) yield chunk;
          if (chunk.length < end - at) break;
        }
      }
    }

    /** APPENDs one blob message; creates the mailbox when the server answers [TRYCREATE]. */
    const appendBlob = async (idx: MailboxIndex, headers: BlobHeaders, data: Buffer): Promise<number | undefined> => {
      const message = buildBlobMessage(headers, data);
      for (let attempt = 0; ; attempt++) {
        try {
          return await pool.run(`APPEND ${idx.name}`, undefined, async (s) => {
            const res = await s.client.append(idx.name, message, ['\\Seen']);
            return res && typeof res.uid === 'number' ? res.uid : undefined;
          });
        } catch (err) {
          if (attempt === 0 && err instanceof ImapError && (err.serverCode === 'TRYCREATE' || err.mailboxMissing)) {
            await ensureMailboxes([idx.name]);
            continue;
          }
          throw err;
        }
      }
    };

    /** Creates mailboxes (and the root) when missing; "already exists" is fine. */
    const ensureMailboxes = async (names: string[]): Promise<void> => {
      for (const name of [root, ...names]) {
        await pool.run(`CREATE ${name}`, undefined, async (s) => {
          try {
            await s.client.mailboxCreate(name);
          } catch (err) {
            const e = err as { serverResponseCode?: string; responseText?: string };
            if (!/ALREADYEXISTS/i.test(e.serverResponseCode ?? '') && !/already exists/i.test(e.responseText ?? '')) throw err;
          }
        });
        const idx = indexes.get(name);
        if (idx) idx.missing = false;
      }
    };

    /** Marks messages \Deleted and expunges exactly them (UID EXPUNGE with UIDPLUS). */
    const expunge = async (idx: MailboxIndex, uids: number[]): Promise<void> => {
      if (uids.length === 0) return;
      const set = uidSet([...uids].sort((a, b) => a - b));
      await pool.run(`EXPUNGE ${idx.name}`, idx.name, async (s) => {
        await s.select(idx.name, false);
        if (uidplus) await s.client.messageDelete(set, { uid: true });
        else await s.client.messageFlagsAdd(set, ['\\Deleted'], { uid: true });
      });
      await idx.locked(async () => {
        for (const u of uids) idx.remove(u);
      });
    };

    /** Stores a blob: one message when it fits, else parts, the last one committing it; older versions are removed after. */
    const putBlob = async (idx: MailboxIndex, resource: string, name: string, content: AsyncIterable<Buffer>): Promise<number> => {
      const put = randomBytes(8).toString('hex');
      const added: BlobRow[] = [];
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let offset = 0;
      let index = 0;
      const flushPart = async (bytes: number, last: boolean): Promise<void> => {
        const all = Buffer.concat(pending, pendingBytes);
        const data = all.subarray(0, bytes);
        const rest = all.subarray(bytes);
        pending = rest.length > 0 ? [Buffer.from(rest)] : [];
        pendingBytes = rest.length;
        const split = { put, index, offset, ...(last ? { last: { parts: index + 1, total: offset + data.length } } : {}) };
        const uid = await appendBlob(idx, { resource, name, size: data.length, split }, data);
        if (uid !== undefined) {
          added.push({ uid, partOf: name, put, part: index, offset, size: data.length, ...(last ? { parts: index + 1, total: offset + data.length } : {}) });
        }
        offset += data.length;
        index++;
      };
      for await (const chunk of content) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        // Keep one part back until more data proves it is not the last.
        while (pendingBytes > capacity) await flushPart(capacity, false);
      }
      let total: number;
      if (index === 0) {
        const data = Buffer.concat(pending, pendingBytes);
        const uid = await appendBlob(idx, { resource, name, size: data.length }, data);
        if (uid !== undefined) added.push({ uid, mac: name, size: data.length });
        total = data.length;
      } else {
        await flushPart(pendingBytes, true);
        total = offset;
      }
      const garbage = await idx.locked(async () => {
        for (const row of added) idx.add(row.uid, row);
        return added.length > 0 ? idx.resolve(name).garbage : [];
      });
      if (garbage.length > 0) {
        await expunge(idx, garbage).catch((err: unknown) =>
          ctx.log.warn(`could not remove an older copy of ${resource} ${name}: ${(err as Error).message}`),
        );
      }
      return total;
    };

    const leafOf = (resource: Resource): string => RESOURCE_MAILBOXES[resource];

    const readBlob = async (idx: MailboxIndex, name: string, what: string, range: ByteRange | undefined): Promise<Readable | Buffer> => {
      for (let attempt = 0; ; attempt++) {
        const v = await lookup(idx, name, attempt > 0);
        if (!v) throw new NotFoundError(`${what} not found in ${idx.name}`);
        try {
          if (!range) {
            if (v.parts.length === 1 && v.size !== undefined && v.size <= STREAM_CHUNK) return await readRange(idx, v, 0, v.size);
            return Readable.from(streamWhole(idx, v), { objectMode: false });
          }
          const end = v.size === undefined ? range.offset + range.length : Math.min(v.size, range.offset + range.length);
          return await readRange(idx, v, range.offset, end);
        } catch (err) {
          if (err instanceof GoneError && attempt === 0) continue;
          if (err instanceof GoneError) throw new NotFoundError(`${what} vanished from ${idx.name} while being read`);
          throw err;
        }
      }
    };

    return {
      origin: settings.account,
      type: 'imap',
      root: ctx.options.location,
      async create(config) {
        const configIdx = indexOf(CONFIG_MAILBOX);
        await ensureMailboxes([...Object.values(RESOURCE_MAILBOXES).map(mailboxOf), configIdx.name]);
        if (await lookup(configIdx, CONFIG_KEY, true)) {
          throw new KlosetError(`a repository already exists at ${where}`, 6);
        }
        await putBlob(configIdx, 'config', CONFIG_KEY, (async function* () {
          yield config;
        })());
      },
      async open() {
        const configIdx = indexOf(CONFIG_MAILBOX);
        const v = await lookup(configIdx, CONFIG_KEY, true);
        if (!v) throw new NotFoundError(`no repository at ${where}${configIdx.missing ? '' : ' (its config mailbox holds no configuration)'}`);
        const data = await readBlob(configIdx, CONFIG_KEY, 'the configuration', undefined);
        if (Buffer.isBuffer(data)) return data;
        const chunks: Buffer[] = [];
        for await (const c of data) chunks.push(c as Buffer);
        return Buffer.concat(chunks);
      },
      async mode() {
        return 6;
      },
      async size() {
        return -1;
      },
      async list(resource) {
        const idx = indexOf(leafOf(resource));
        await refresh(idx);
        return idx
          .names()
          .filter((n) => /^[0-9a-f]{64}$/.test(n))
          .map((n) => Buffer.from(n, 'hex'));
      },
      async put(resource, mac, content) {
        const idx = indexOf(leafOf(resource));
        return putBlob(idx, resource, macHex(mac), content as AsyncIterable<Buffer>);
      },
      async get(resource, mac, range) {
        const idx = indexOf(leafOf(resource));
        return readBlob(idx, macHex(mac), `${resource} ${macHex(mac)}`, range);
      },
      readAhead: {
        // The SDK's read-ahead cache downloads whole packfiles through this and answers the host's small ranged Gets locally.
        async fetch(resource, mac) {
          const idx = indexOf(leafOf(resource));
          return readBlob(idx, macHex(mac), `${resource} ${macHex(mac)}`, undefined);
        },
      },
      async delete(resource, mac) {
        const idx = indexOf(leafOf(resource));
        const name = macHex(mac);
        if (!idx.byName.has(name)) await refresh(idx);
        const uids = [...(idx.byName.get(name) ?? [])];
        if (uids.length === 0) throw new NotFoundError(`${resource} ${name} not found in ${idx.name}`);
        await expunge(idx, uids);
      },
      async ping() {
        await pool.run('NOOP', undefined, (s) => s.client.noop());
      },
      async close() {
        await pool.close();
      },
    };
  },
});

/** A fetched message's index row (`null` when it is not a blob or is marked \Deleted). */
function rowOf(uid: number, flags: Set<string> | undefined, headers: Buffer | undefined): BlobRow | null {
  if (flags && [...flags].some((f) => f.toLowerCase() === '\\deleted')) return null;
  return parseBlobRow(uid, headers) ?? null;
}

function isMissingMailbox(err: unknown): boolean {
  if (err instanceof ImapError) return err.mailboxMissing || err.serverCode === 'NONEXISTENT';
  const e = err as { mailboxMissing?: boolean; serverResponseCode?: string };
  return e?.mailboxMissing === true || e?.serverResponseCode === 'NONEXISTENT';
}
