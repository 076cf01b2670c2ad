// The importer's body reader against a scripted server: batches deliver each UID its own bytes, stay within the memory
// budget, resume after a cut, shrink when the host skips messages, and every body a batch misses falls back to its own FETCH.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Logger, NotFoundError } from '../../../shared/index.ts';
import { BATCH_MESSAGE_MAX, BODY_CHUNK, BodyReader, type MailboxListing } from '../../../integrations/imap/bodies.ts';
import type { Pool, Session } from '../../../integrations/imap/client.ts';
import { prng } from './helpers.ts';

/** A connection-level failure, as the pool classifies a dropped connection (its code makes it transient). */
class CutError extends Error {
  readonly code = 'ECONNRESET';
}

interface Script {
  /** Bodies by UID; a UID missing here is a message deleted since the listing. */
  bodies: Map<number, Buffer>;
  /** Called before each batch row: throwing cuts the batch there. */
  beforeRow?: (uid: number, set: number[], attempt: number) => void;
  /** Extra rows without a body sent before a UID's row (unsolicited FLAGS updates). */
  flagRows?: Set<number>;
  /** UIDs whose lone FETCH always fails with a dropped connection. */
  poisoned?: Set<number>;
  /** UIDVALIDITY the server reports on SELECT (the listing was made with 7). */
  uidValidity?: bigint;
}

/** What the scripted server saw. */
interface Seen {
  /** UID sets of batch FETCHes, in order. */
  batches: number[][];
  /** Lone partial FETCHes: [uid, start]. */
  singles: Array<[number, number]>;
  /** Largest number of body bytes sent in batches and not yet handed to an Open. */
  maxOutstanding: number;
}

function expandSet(set: string): number[] {
  const out: number[] = [];
  for (const part of set.split(',')) {
    const [a, b] = part.split(':').map(Number) as [number, number | undefined];
    for (let u = a; u <= (b ?? a); u++) out.push(u);
  }
  return out;
}

/** A pool whose one session answers from the script; `run` retries cut attempts like the pacer (3 attempts). */
function scriptedPool(script: Script, seen: Seen, outstanding: { bytes: number }): Pick<Pool, 'run'> {
  let attempt = 0;
  const session = {
    select: async () => ({ uidValidity: script.uidValidity ?? 7n }),
    client: {
      fetch: async function* (set: string, query: { source: { start: number; maxLength: number } }) {
        const uids = expandSet(set);
        seen.batches.push(uids);
        const n = attempt++;
        for (const uid of uids) {
          script.beforeRow?.(uid, uids, n);
          const body = script.bodies.get(uid);
          if (!body) continue;
          if (script.flagRows?.has(uid)) yield { uid, flags: new Set(['\\Seen']) };
          const source = body.subarray(query.source.start, query.source.start + query.source.maxLength);
          outstanding.bytes += source.length;
          seen.maxOutstanding = Math.max(seen.maxOutstanding, outstanding.bytes);
          await Promise.resolve();
          yield { uid, source: Buffer.from(source) };
        }
      },
      fetchOne: async (uid: string, query: { source: { start: number; maxLength: number } }) => {
        seen.singles.push([Number(uid), query.source.start]);
        await new Promise((r) => setTimeout(r, 1));
        if (script.poisoned?.has(Number(uid))) throw new CutError('connection reset');
        const body = script.bodies.get(Number(uid));
        if (!body) return false;
        return { uid: Number(uid), source: body.subarray(query.source.start, query.source.start + query.source.maxLength) };
      },
    },
  } as unknown as Session;
  return {
    async run<T>(_what: string, _prefer: string | undefined, fn: (s: Session) => Promise<T>): Promise<T> {
      for (let i = 1; ; i++) {
        try {
          return await fn(session);
        } catch (err) {
          if (!(err instanceof CutError) || i >= 3) throw err;
        }
      }
    },
  };
}

/** A mailbox of `count` messages (UIDs 1…count, some gaps), with sizes drawn around the batch limit. */
function mailbox(count: number, seed: number, options: { bigEvery?: number } = {}): Map<number, Buffer> {
  const rnd = prng(seed);
  const out = new Map<number, Buffer>();
  let uid = 0;
  for (let i = 0; i < count; i++) {
    uid += rnd() < 0.1 ? 3 : 1;
    const big = options.bigEvery && i % options.bigEvery === options.bigEvery - 1;
    const size = big ? BATCH_MESSAGE_MAX - 2 + (i % 5) : 100 + Math.floor(rnd() * 6000);
    const body = Buffer.alloc(size);
    for (let k = 0; k < size; k++) body[k] = (uid * 31 + k * 7) & 0xff;
    body.write(`UID ${uid} `, 0, 'latin1');
    out.set(uid, body);
  }
  return out;
}

async function bytesOf(source: Awaited<ReturnType<BodyReader['open']>>): Promise<Buffer> {
  if (source instanceof Uint8Array) return Buffer.from(source);
  const parts: Buffer[] = [];
  for await (const c of source instanceof Readable ? source : Readable.from(source)) parts.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(parts);
}

interface Run {
  reader: BodyReader;
  listing: MailboxListing;
  seen: Seen;
  outstanding: { bytes: number };
}

function setup(script: Script, budget = 1024 * 1024, sizes?: (uid: number, body: Buffer) => number): Run {
  const seen: Seen = { batches: [], singles: [], maxOutstanding: 0 };
  const outstanding = { bytes: 0 };
  const reader = new BodyReader(scriptedPool(script, seen, outstanding), new Logger('test'), budget, 2);
  const uids = Uint32Array.from([...script.bodies.keys()]);
  const listing = reader.listing('INBOX', 7n, uids);
  uids.forEach((uid, i) => (listing.sizes[i] = sizes ? sizes(uid, script.bodies.get(uid) as Buffer) : (script.bodies.get(uid) as Buffer).length));
  listing.known = uids.length;
  return { reader, listing, seen, outstanding };
}

/** Opens `indexes` the way the host does: `workers` at a time, each read to the end. Returns bodies (or errors) by index. */
async function host(run: Run, indexes: number[], workers = 2): Promise<Map<number, Buffer | Error>> {
  const out = new Map<number, Buffer | Error>();
  const queue = [...indexes];
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const uid = run.listing.uids[i] as number;
        try {
          const body = await bytesOf(await run.reader.open(run.listing, i, `/INBOX/${uid}.eml`));
          // Only batch bytes count as outstanding; a lone FETCH is not held ahead.
          run.outstanding.bytes -= Math.min(body.length, BATCH_MESSAGE_MAX);
          out.set(i, body);
        } catch (err) {
          out.set(i, err as Error);
        }
      }
    }),
  );
  return out;
}

const all = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Byte equality without vitest's element-by-element diff of large buffers. */
function expectSame(got: Buffer | Error | undefined, want: Buffer | undefined, what: string): void {
  if (got instanceof Error) throw new Error(`${what}: ${got.message}`);
  expect(got !== undefined && want !== undefined && got.equals(want), `${what}: ${got?.length} bytes, expected ${want?.length}`).toBe(true);
}

describe('imap importer: body batches (scripted server)', () => {
  it('gives every UID its own bytes, in far fewer FETCHes than messages, within the memory budget', async () => {
    const bodies = mailbox(1500, 1, { bigEvery: 97 });
    const run = setup({ bodies }, 512 * 1024);
    const got = await host(run, all(1500), 3);
    for (const [i, body] of got) expectSame(body, bodies.get(run.listing.uids[i] as number), `index ${i}`);
    expect(run.seen.batches.length).toBeLessThan(1500 / 20);
    // Each UID is fetched once (no batch refetches a body another batch already brought).
    const fetched = run.seen.batches.flat();
    expect(new Set(fetched).size).toBe(fetched.length);
    // The budget bounds what waits for its Open: plus the message each Open asks for itself (3 workers).
    expect(run.seen.maxOutstanding).toBeLessThanOrEqual(512 * 1024 + 3 * BATCH_MESSAGE_MAX);
    // The messages at the batch limit that fill the window are completed by partial FETCHes from there.
    const tails = run.seen.singles.filter(([, start]) => start === BATCH_MESSAGE_MAX).map(([uid]) => uid);
    expect(tails.length).toBeGreaterThan(0);
    for (const uid of tails) expect((bodies.get(uid) as Buffer).length).toBeGreaterThanOrEqual(BATCH_MESSAGE_MAX);
  });

  it('serves Opens that arrive out of order (8 workers) without mixing bodies up', async () => {
    const bodies = mailbox(800, 2);
    const run = setup({ bodies });
    const rnd = prng(5);
    // Shuffled within blocks of 8, as concurrent workers race.
    const order = all(800);
    for (let b = 0; b < order.length; b += 8) {
      for (let k = Math.min(b + 7, order.length - 1); k > b; k--) {
        const j = b + Math.floor(rnd() * (k - b + 1));
        [order[k], order[j]] = [order[j] as number, order[k] as number];
      }
    }
    const got = await host(run, order, 8);
    for (const [i, body] of got) expectSame(body, bodies.get(run.listing.uids[i] as number), `index ${i}`);
    expect(run.seen.batches.flat().length).toBeLessThan(800 * 1.1);
  });

  it('a message deleted since the listing is a NotFoundError naming its UID; its neighbours in the batch are served', async () => {
    const bodies = mailbox(200, 3);
    const uids = [...bodies.keys()];
    const run = setup({ bodies });
    const gone = [uids[5], uids[60], uids[61]] as number[];
    for (const u of gone) bodies.delete(u);
    const got = await host(run, all(200));
    for (const [i, body] of got) {
      const uid = run.listing.uids[i] as number;
      if (gone.includes(uid)) {
        expect(body).toBeInstanceOf(NotFoundError);
        expect((body as Error).message).toBe(`message UID ${uid} was deleted from INBOX during the backup`);
      } else expectSame(body, bodies.get(uid), `UID ${uid}`);
    }
  });

  it('a batch cut by a dropped connection resumes with the bodies not yet received', async () => {
    const bodies = mailbox(300, 4);
    let cuts = 0;
    const run = setup({
      bodies,
      beforeRow: (uid, set) => {
        // Two cuts, each at the fifth row of the FETCH being answered: the first batch, then its retry.
        if (cuts < 2 && uid === set[4]) {
          cuts++;
          throw new CutError('connection reset');
        }
      },
    });
    const got = await host(run, all(300));
    for (const [i, body] of got) expectSame(body, bodies.get(run.listing.uids[i] as number), `index ${i}`);
    expect(cuts).toBe(2);
    // A retried batch asks only for what the cut one had not delivered: its fifth UID onwards.
    const b = run.seen.batches;
    const cutAt = b.findIndex((set) => set.length > 4);
    const retry = b.find((set, k) => k > cutAt && set[0] === (b[cutAt] as number[])[4]);
    expect(retry).toEqual((b[cutAt] as number[]).slice(4));
    expect(run.seen.singles).toEqual([]);
  });

  it('ignores rows without a body (unsolicited FLAGS updates) instead of taking them for an empty message', async () => {
    const bodies = mailbox(100, 6);
    const run = setup({ bodies, flagRows: new Set([...bodies.keys()].filter((u) => u % 3 === 0)) });
    const got = await host(run, all(100));
    for (const [i, body] of got) expectSame(body, bodies.get(run.listing.uids[i] as number), `index ${i}`);
    expect(run.seen.singles).toEqual([]);
  });

  it('a message that keeps failing fails alone: the rest of its batch falls back to their own FETCHes', async () => {
    const bodies = mailbox(120, 7);
    const uids = [...bodies.keys()];
    const bad = uids[10] as number;
    const run = setup({
      bodies,
      poisoned: new Set([bad]),
      beforeRow: (uid) => {
        if (uid === bad) throw new CutError('connection reset');
      },
    });
    const got = await host(run, all(120));
    for (const [i, body] of got) {
      const uid = run.listing.uids[i] as number;
      if (uid === bad) expect(body).toBeInstanceOf(CutError);
      else expectSame(body, bodies.get(uid), `UID ${uid}`);
    }
  });

  it('a server that under-reports sizes still gives whole bodies (the batch window is completed by partial FETCHes)', async () => {
    const bodies = mailbox(60, 8, { bigEvery: 4 });
    for (const [uid, b] of bodies) if (b.length >= BATCH_MESSAGE_MAX - 2) bodies.set(uid, Buffer.concat([b, b, b, b, b]));
    const run = setup({ bodies }, 1024 * 1024, () => 1000);
    const got = await host(run, all(60));
    for (const [i, body] of got) expectSame(body, bodies.get(run.listing.uids[i] as number), `index ${i}`);
    const big = [...bodies.values()].filter((b) => b.length > BATCH_MESSAGE_MAX).length;
    expect(big).toBeGreaterThan(0);
    // Each big body: the window from the batch, then 1 MiB pieces from there.
    for (const [uid, start] of run.seen.singles) expect((start - BATCH_MESSAGE_MAX) % BODY_CHUNK, `UID ${uid}`).toBe(0);
  });

  it('shrinks its batches when the host opens only some messages (an incremental backup)', async () => {
    const bodies = mailbox(2000, 9);
    const run = setup({ bodies });
    const opened = all(2000).filter((i) => i % 25 === 0);
    const got = await host(run, opened);
    for (const [i, body] of got) expectSame(body, bodies.get(run.listing.uids[i] as number), `index ${i}`);
    // Bodies fetched and never read: the first batch and a few probes, not the whole mailbox.
    const fetched = run.seen.batches.flat().length;
    expect(fetched).toBeLessThan(opened.length * 4 + 64);
  });

  it('a mailbox renumbered since the listing (new UIDVALIDITY) fails each message with its own error, and fetches nothing', async () => {
    const bodies = mailbox(40, 11);
    const run = setup({ bodies, uidValidity: 8n });
    const got = await host(run, all(40));
    for (const [i, body] of got) {
      expect(body).toBeInstanceOf(Error);
      expect((body as Error).message).toBe(`INBOX: UIDVALIDITY changed during the backup; message UID ${run.listing.uids[i]} can no longer be identified`);
    }
    expect(run.seen.singles).toEqual([]);
    expect(run.seen.batches).toEqual([]);
  });

  it('with prefetch_size=0 every message is fetched on its own', async () => {
    const bodies = mailbox(50, 10);
    const run = setup({ bodies }, 0);
    const got = await host(run, all(50));
    for (const [i, body] of got) expectSame(body, bodies.get(run.listing.uids[i] as number), `index ${i}`);
    expect(run.seen.batches).toEqual([]);
    expect(run.seen.singles.length).toBe(50);
  });
});
