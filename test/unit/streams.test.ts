// writeChunks: content streamed as pre-encoded chunk messages from reused buffers.
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { encodeChunkMessage } from '../../shared/protocol/codec.ts';
import { MESSAGE_BYTES, writeChunks, writeMessage } from '../../shared/protocol/streams.ts';
import { decodeMessage } from '../harness/messages.ts';

const MiB = 1024 * 1024;

/**
 * A grpc-js-like server stream: like a Writable it takes messages at once while fewer than `window` wait, and
 * serialises them (here: encodes and copies) only when it gets to them, later; callbacks follow the serialisation.
 */
class FakeCall extends EventEmitter {
  cancelled = false;
  readonly sent: Buffer[] = [];
  private queue: Array<{ message: unknown; callback?: (error?: Error | null) => void }> = [];
  private scheduled = false;
  private readonly window: number;

  constructor(window: number) {
    super();
    this.window = window;
  }

  write(message: unknown, callback?: (error?: Error | null) => void): boolean {
    this.queue.push({ message, callback });
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.drainQueue(), 1);
    }
    return this.queue.length < this.window;
  }

  private drainQueue(): void {
    this.scheduled = false;
    const wasFull = this.queue.length >= this.window;
    for (const { message, callback } of this.queue.splice(0)) {
      this.sent.push(Buffer.from(encodeChunkMessage(message)));
      callback?.();
    }
    if (wasFull) this.emit('drain');
  }

  chunks(): Buffer[] {
    return this.sent.map((m) => decodeMessage('store.GetResponse', m)['chunk'] as Buffer);
  }
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** A source yielding `data` in pieces of the given sizes, in a loop. */
async function* pieces(data: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let i = 0;
  for (let off = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length] as number, data.length - off);
    yield data.subarray(off, off + n);
    off += n;
    await new Promise((r) => setImmediate(r));
  }
}

async function* list(items: Buffer[]): AsyncGenerator<Buffer> {
  yield* items;
}

async function settle(call: FakeCall): Promise<void> {
  await new Promise((r) => setTimeout(r, 20));
  expect(call.listenerCount('drain')).toBe(0);
}

describe('writeChunks', () => {
  it('gathers small pieces into MESSAGE_BYTES messages, byte-exact, even while earlier messages still wait to be serialised', async () => {
    const data = pattern(5 * MiB + 12345, 3);
    for (const window of [1, 2, 16]) {
      const call = new FakeCall(window);
      await writeChunks(call, pieces(data, [65536, 16384, 1000, 300_000]), Infinity, () => false);
      await settle(call);
      const chunks = call.chunks();
      expect(chunks.slice(0, -1).every((c) => c.length === MESSAGE_BYTES)).toBe(true);
      expect(chunks.at(-1)?.length).toBe(data.length % MESSAGE_BYTES);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
    }
  });

  it('splits large pieces, encodes every length (1 byte to MESSAGE_BYTES) with the right varint', async () => {
    const big = pattern(3 * MiB + 1, 9);
    const call = new FakeCall(4);
    await writeChunks(call, list([big.subarray(0, 2 * MiB + 7), big.subarray(2 * MiB + 7)]), Infinity, () => false);
    await settle(call);
    expect(call.chunks().map((c) => c.length)).toEqual([...Array<number>((3 * MiB) / MESSAGE_BYTES).fill(MESSAGE_BYTES), 1]);
    expect(Buffer.concat(call.chunks()).equals(big)).toBe(true);
    for (const n of [1, 127, 128, 16383, 16384, 200_000, MESSAGE_BYTES]) {
      const one = new FakeCall(4);
      await writeChunks(one, pattern(n, n), Infinity, () => false);
      await settle(one);
      expect(one.chunks()).toHaveLength(1);
      expect(one.chunks()[0]?.equals(pattern(n, n))).toBe(true);
    }
  });

  it('stops after `limit` bytes without reading the rest, and destroys a stream source', async () => {
    const data = pattern(3 * MiB, 5);
    let read = 0;
    const source = Readable.from(
      (async function* () {
        for await (const p of pieces(data, [65536])) {
          read += p.length;
          yield p;
        }
      })(),
      { objectMode: false },
    );
    const call = new FakeCall(4);
    await writeChunks(call, source, MiB + 10, () => false);
    await settle(call);
    expect(Buffer.concat(call.chunks()).equals(data.subarray(0, MiB + 10))).toBe(true);
    expect(read).toBeLessThan(2 * MiB);
    expect(source.destroyed).toBe(true);
  });

  it('never sends an empty chunk: empty pieces are skipped, a zero limit sends nothing; takes a buffer or an async iterable', async () => {
    const gaps = new FakeCall(4);
    await writeChunks(gaps, Readable.from([Buffer.alloc(0), Buffer.alloc(5, 1), Buffer.alloc(0), Buffer.from('x')]), Infinity, () => false);
    await settle(gaps);
    expect(gaps.chunks()).toEqual([Buffer.concat([Buffer.alloc(5, 1), Buffer.from('x')])]);
    const none = new FakeCall(4);
    await writeChunks(none, Buffer.from('abc'), 0, () => false);
    expect(none.sent).toEqual([]);
    const bytes = new FakeCall(4);
    await writeChunks(bytes, new Uint8Array([1, 2, 3]), Infinity, () => false);
    await settle(bytes);
    expect(bytes.chunks()).toEqual([Buffer.from([1, 2, 3])]);
    const iterable = new FakeCall(4);
    await writeChunks(
      iterable,
      (async function* () {
        yield new Uint8Array([4]);
        yield new Uint8Array([]);
        yield new Uint8Array([5, 6]);
      })(),
      Infinity,
      () => false,
    );
    await settle(iterable);
    expect(iterable.chunks()).toEqual([Buffer.from([4, 5, 6])]);
  });

  it('sends nothing for an empty source and stops when the call is cancelled', async () => {
    const empty = new FakeCall(4);
    await writeChunks(empty, list([]), Infinity, () => false);
    expect(empty.sent).toEqual([]);
    const call = new FakeCall(1);
    let sentAtCancel = -1;
    await writeChunks(call, pieces(pattern(8 * MiB, 1), [MiB]), Infinity, () => {
      if (call.sent.length >= 2 && sentAtCancel < 0) sentAtCancel = call.sent.length;
      return sentAtCancel >= 0;
    });
    await settle(call);
    expect(call.sent.length).toBeLessThan((8 * MiB) / MESSAGE_BYTES);
  });
  it('keeps at most four messages waiting for grpc-js however large its buffer, and resumes when it takes them', async () => {
    // A call that would accept 64 messages before asking to wait, and takes them only when told.
    class HeldCall extends EventEmitter {
      cancelled = false;
      readonly held: Array<() => void> = [];
      written = 0;
      maxWaiting = 0;
      write(_message: unknown, callback?: (error?: Error | null) => void): boolean {
        this.written++;
        this.held.push(() => callback?.());
        this.maxWaiting = Math.max(this.maxWaiting, this.held.length);
        return this.held.length < 64;
      }
    }
    const call = new HeldCall();
    const data = pattern(16 * MESSAGE_BYTES, 3);
    let finished = false;
    const done = writeChunks(call, pieces(data, [MESSAGE_BYTES]), Infinity, () => false).then(() => {
      finished = true;
    });
    for (let round = 0; !finished && round < 100; round++) {
      await new Promise((r) => setTimeout(r, 2));
      // Take one message at a time, like HTTP/2 handing them to a slow pipe.
      call.held.shift()?.();
    }
    await done;
    expect(call.written).toBe(16);
    expect(call.maxWaiting).toBe(4);
  });
});

describe('writeMessage', () => {
  it('lets concurrent writers on a full call share one drain wait (no listener pile-up, every writer resumes)', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      const call = new FakeCall(1);
      // Thirty exporter results finishing while the stream is full.
      const waits = Array.from({ length: 30 }, (_, i) => writeMessage(call, { chunk: Buffer.from([i]) }));
      expect(waits.every((w) => w !== undefined)).toBe(true);
      expect(call.listenerCount('drain')).toBe(1);
      expect(call.listenerCount('error')).toBe(1);
      expect(call.listenerCount('close')).toBe(1);
      await Promise.all(waits.map((w) => w ?? Promise.resolve()));
      expect(call.listenerCount('drain')).toBe(0);
      expect(call.listenerCount('error')).toBe(0);
      expect(call.sent.length).toBe(30);
      // After the drain, a full buffer starts a new wait rather than reusing the settled one.
      const again = writeMessage(call, { chunk: Buffer.from([99]) });
      expect(again).toBeDefined();
      expect(call.listenerCount('drain')).toBe(1);
      await again;
      expect(call.sent.length).toBe(31);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
