// Message bodies for the imap importer: small messages fetched many at a time, ahead of the host's Opens and within a
// memory budget (one `UID FETCH <set> BODY.PEEK[]<0.n>` per batch); large ones, and any body a batch did not deliver,
// streamed by partial FETCHes of their own.
import { Readable } from 'node:stream';
import { describeError, NotFoundError, ServiceError, type ContentSource, type Logger } from '../../shared/index.ts';
import type { Pool } from './client.ts';
import { uidSet } from './map.ts';

/** Bytes per partial `BODY.PEEK[]<offset.length>` FETCH of a streamed body: a body is read in pieces this size, never held whole. */
export const BODY_CHUNK = 1024 * 1024;

/**
 * Messages up to this RFC822.SIZE are fetched in batches; larger ones are streamed on their own. A batch asks for at
 * most this many bytes of each message (`<0.n>`), so a server that under-reports a size cannot make a batch hold more;
 * a body that fills the window is completed by a partial FETCH from there.
 */
export const BATCH_MESSAGE_MAX = 256 * 1024;

/** The most messages in one batch. */
const WINDOW_MAX = 128;
/** Batch size at the start of an import: it grows by one for every prefetched body the host reads. */
const WINDOW_START = 32;
/**
 * It halves whenever prefetched bodies go unread (an incremental backup reads only new or renamed messages), but a batch
 * always takes one message beyond the one asked for, so that a sequential run of reads can grow it again.
 */
const WINDOW_MIN = 2;

/** One mailbox's messages in the order the importer lists them (ascending UID), for the reader to look ahead in. */
export interface MailboxListing {
  /** Native name (server delimiter). */
  readonly name: string;
  readonly uidValidity: bigint;
  /** Every UID of the mailbox, ascending (from SEARCH). */
  readonly uids: Uint32Array;
  /** RFC822.SIZE by index; -1 until the message's metadata has arrived, or when the server gave none. */
  readonly sizes: Float64Array;
  /** Indexes below this have had their metadata fetched: the reader looks no further ahead. */
  known: number;
  /** Position of index 0 among all messages of the import, so that positions order every mailbox's messages. */
  readonly base: number;
  /** One past the highest index put into a batch. */
  cursor: number;
}

/** A body fetched, or being fetched, ahead of its Open. */
interface Entry {
  readonly pos: number;
  readonly listing: MailboxListing;
  readonly uid: number;
  /** Bytes counted against the budget: the expected size until the body arrives, then its length. */
  bytes: number;
  /** Fetched for a later Open (not the message whose Open started the batch). */
  readonly ahead: boolean;
  /** An Open waits for it: never evicted. */
  claimed: boolean;
  settled: boolean;
  /** The body (at most BATCH_MESSAGE_MAX bytes), or undefined when the batch did not deliver it. */
  readonly result: Promise<Buffer | undefined>;
  resolve(body: Buffer | undefined): void;
}

/** Counters of one importer, logged at debug level on close. */
export interface BodyStats {
  batches: number;
  /** Bodies received from batches. */
  fetched: number;
  /** Opens answered by a body fetched ahead. */
  hits: number;
  /** Bodies fetched ahead and dropped unread. */
  wasted: number;
  /** Bodies streamed by partial FETCHes (large ones, prefetch off, or not delivered by a batch). */
  streamed: number;
}

/**
 * Answers the host's Opens of message bodies. Plakar opens the records of a first backup in the order they were sent,
 * a few at a time (PROTOCOL.md §3.4.2), so one round trip per message left the importer waiting on the server for
 * every message. Here the Open of a small message fetches it together with the next small messages of the listing in
 * one UID FETCH, and a read-ahead batch is started while the host still has half a batch to read; bodies wait in
 * memory, within `budget` bytes, until their Open comes. Every Open that finds nothing usable falls back to the partial
 * FETCHes of a lone message, so a message deleted meanwhile, a batch cut by a dropped connection beyond its retries or
 * a server refusing a batch still ends in that message's own body or its own error.
 */
export class BodyReader {
  private readonly entries = new Map<number, Entry>();
  /** Bytes of bodies held, or expected from batches in flight. */
  private held = 0;
  /** Highest position opened so far. */
  private frontier = -1;
  private window = WINDOW_START;
  private readAheads = 0;
  private nextBase = 0;
  readonly stats: BodyStats = { batches: 0, fetched: 0, hits: 0, wasted: 0, streamed: 0 };
  private readonly pool: Pick<Pool, 'run'>;
  private readonly log: Logger;
  private readonly budget: number;
  private readonly slack: number;

  /**
   * @param budget bytes of bodies held ahead of their Opens (0: every message is fetched on its own when opened)
   * @param hostConcurrency the host's maxconcurrency: Opens may arrive out of order by about that much, so a body is
   *   dropped unread only when the host has opened messages well past it
   */
  constructor(pool: Pick<Pool, 'run'>, log: Logger, budget: number, hostConcurrency: number) {
    this.pool = pool;
    this.log = log;
    this.budget = budget;
    this.slack = Math.max(32, 4 * hostConcurrency);
  }

  /** A listing for a mailbox whose UIDs are known; sizes are filled in as the metadata arrives. */
  listing(name: string, uidValidity: bigint, uids: Uint32Array): MailboxListing {
    const base = this.nextBase;
    this.nextBase += uids.length;
    return { name, uidValidity, uids, sizes: new Float64Array(uids.length).fill(-1), known: 0, base, cursor: 0 };
  }

  /** The body of the message at `index` of `listing`, for the record `path`. */
  async open(listing: MailboxListing, index: number, path: string): Promise<ContentSource> {
    const uid = listing.uids[index] as number;
    const size = listing.sizes[index] as number;
    if (this.budget <= 0) return this.stream(listing, uid, path, 0);
    const pos = listing.base + index;
    if (pos > this.frontier) {
      this.frontier = pos;
      this.evictStale();
    }
    if (!(size >= 0 && size <= BATCH_MESSAGE_MAX)) return this.stream(listing, uid, path, 0);
    let entry = this.entries.get(pos);
    if (entry?.ahead) {
      this.stats.hits++;
      this.window = Math.min(WINDOW_MAX, this.window + 1);
    }
    entry ??= this.batch(listing, index, true) as Entry;
    entry.claimed = true;
    const body = await entry.result;
    this.drop(entry);
    this.readAhead(listing, index);
    if (body === undefined) return this.stream(listing, uid, path, 0);
    if (body.length < BATCH_MESSAGE_MAX) return body;
    // The server's size was too small, or the message is exactly the window: the rest (if any) comes by partial FETCHes.
    const rest = this.chunks(listing, uid, path, body.length);
    return Readable.from(
      (async function* () {
        yield body;
        yield* rest;
      })(),
      { objectMode: false },
    );
  }

  /** Forgets every body held (Close; batches still in flight settle into nothing). */
  clear(): void {
    this.entries.clear();
    this.held = 0;
    const s = this.stats;
    this.log.debug('message bodies', { batches: s.batches, fetched: s.fetched, hits: s.hits, wasted: s.wasted, streamed: s.streamed });
  }

  /** Streams one message by partial FETCHes from `offset`; a dropped connection resumes at the last byte received. */
  private stream(listing: MailboxListing, uid: number, path: string, offset: number): Readable {
    this.stats.streamed++;
    return Readable.from(this.chunks(listing, uid, path, offset), { objectMode: false });
  }

  private async *chunks(listing: MailboxListing, uid: number, path: string, from: number): AsyncGenerator<Buffer> {
    let offset = from;
    for (;;) {
      const start = offset;
      const chunk = await this.pool.run(`FETCH ${path}`, listing.name, async (s) => {
        const opened = await s.select(listing.name, true);
        if (opened.uidValidity !== listing.uidValidity) {
          throw new ServiceError('UIDVALIDITY', `${listing.name}: UIDVALIDITY changed during the backup; message UID ${uid} can no longer be identified`);
        }
        const msg = await s.client.fetchOne(String(uid), { source: { start, maxLength: BODY_CHUNK } }, { uid: true });
        if (!msg) throw new NotFoundError(`message UID ${uid} was deleted from ${listing.name} during the backup`);
        return msg.source ?? Buffer.alloc(0);
      });
      offset += chunk.length;
      if (chunk.length > 0) yield chunk;
      if (chunk.length < BODY_CHUNK) return;
    }
  }

  /**
   * Starts one batch: the message at `first` when an Open asks for it (`demand`), then the next small messages of the
   * listing that have no entry yet, up to the window and the budget. Returns the entry of `first` when `demand`.
   */
  private batch(listing: MailboxListing, first: number, demand: boolean): Entry | undefined {
    const picked: Entry[] = [];
    // Up to a window of bodies ahead of `first`; an Open's batch always takes one more, to notice a sequential run.
    const wanted = (demand ? 1 : 0) + Math.max(demand ? 1 : 0, this.window - this.aheadOf(listing, demand ? first : first - 1));
    if (demand) picked.push(this.add(listing, first, false));
    // Never behind the furthest Open: what lies there was either read or skipped by the host (an unchanged message).
    let j = Math.max(demand ? first + 1 : first, this.frontier - listing.base + 1, 0);
    const scanEnd = Math.min(listing.known, j + 4 * WINDOW_MAX);
    for (; j < scanEnd && picked.length < wanted; j++) {
      const size = listing.sizes[j] as number;
      if (size < 0 || size > BATCH_MESSAGE_MAX || this.entries.has(listing.base + j)) continue;
      if (this.held + size > this.budget) break;
      picked.push(this.add(listing, j, true));
    }
    listing.cursor = Math.max(listing.cursor, j);
    if (picked.length === 0) return undefined;
    this.run(listing, picked, demand);
    return demand ? picked[0] : undefined;
  }

  /** After an Open: starts the next batch in the background when fewer than half a window of bodies lie ahead. */
  private readAhead(listing: MailboxListing, index: number): void {
    if (this.readAheads > 0) return;
    if (this.aheadOf(listing, index) > this.window / 2) return;
    this.batch(listing, Math.max(index + 1, listing.cursor), false);
  }

  /** Entries of `listing` after `index`, fetched or in flight. */
  private aheadOf(listing: MailboxListing, index: number): number {
    const pos = listing.base + index;
    let n = 0;
    for (const e of this.entries.values()) if (e.listing === listing && e.pos > pos) n++;
    return n;
  }

  private add(listing: MailboxListing, index: number, ahead: boolean): Entry {
    let resolve: (body: Buffer | undefined) => void = () => undefined;
    const result = new Promise<Buffer | undefined>((r) => (resolve = r));
    const bytes = Math.min(listing.sizes[index] as number, BATCH_MESSAGE_MAX);
    const entry: Entry = { pos: listing.base + index, listing, uid: listing.uids[index] as number, bytes, ahead, claimed: false, settled: false, result, resolve };
    this.entries.set(entry.pos, entry);
    this.held += bytes;
    return entry;
  }

  private settle(entry: Entry, body: Buffer | undefined): void {
    if (entry.settled) return;
    entry.settled = true;
    if (body !== undefined) this.stats.fetched++;
    const bytes = body?.length ?? 0;
    if (this.entries.get(entry.pos) === entry) this.held += bytes - entry.bytes;
    entry.bytes = bytes;
    entry.resolve(body);
  }

  private drop(entry: Entry): void {
    if (this.entries.get(entry.pos) !== entry) return;
    this.entries.delete(entry.pos);
    this.held -= entry.bytes;
  }

  /** Drops bodies the host went past without opening (unchanged messages it reuses from the previous snapshot). */
  private evictStale(): void {
    const limit = this.frontier - this.slack;
    let wasted = 0;
    for (const e of this.entries.values()) {
      if (e.pos >= limit || !e.settled || e.claimed) continue;
      this.drop(e);
      if (e.bytes > 0) wasted++;
    }
    if (wasted > 0) {
      this.stats.wasted += wasted;
      this.window = Math.max(WINDOW_MIN, this.window >> 1);
    }
  }

  /**
   * Fetches a batch with one UID FETCH. A dropped connection or throttling retries (through the pool's pacer) only the
   * bodies not yet received; whatever is still missing at the end (deleted messages, retries exhausted, a refused
   * FETCH) settles as undefined, and its Open falls back to a FETCH of its own.
   */
  private run(listing: MailboxListing, picked: Entry[], demand: boolean): void {
    this.stats.batches++;
    if (!demand) this.readAheads++;
    const waiting = new Map(picked.map((e) => [e.uid, e]));
    const fetchRest = this.pool.run(`FETCH ${listing.name} (${picked.length} bodies)`, listing.name, async (s) => {
      const opened = await s.select(listing.name, true);
      // A renumbered mailbox: every body is left to a FETCH of its own, which reports the change for its message.
      if (opened.uidValidity !== listing.uidValidity || waiting.size === 0) return;
      const set = uidSet([...waiting.keys()]);
      for await (const msg of s.client.fetch(set, { uid: true, source: { start: 0, maxLength: BATCH_MESSAGE_MAX } }, { uid: true })) {
        // Unsolicited rows (a flag change of another message) carry no body.
        const entry = waiting.get(msg.uid);
        if (!entry || !msg.source) continue;
        waiting.delete(msg.uid);
        this.settle(entry, msg.source);
      }
    });
    void fetchRest
      .catch((err: unknown) => {
        this.log.debug(`batch FETCH failed; ${waiting.size} bodies will be fetched on their own`, { mailbox: listing.name, cause: describeError(err) });
      })
      .finally(() => {
        for (const e of waiting.values()) this.settle(e, undefined);
        if (!demand) this.readAheads--;
      });
  }
}
