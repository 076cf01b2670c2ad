// Backpressure-aware writes on grpc-js server streams, content streamed as chunk messages, and cancellation as an AbortSignal.
import type { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { chunksOf } from '../content.ts';
import type { ContentSource } from '../define.ts';

interface WritableCall extends EventEmitter {
  write(message: unknown, callback?: (error?: Error | null) => void): boolean;
  cancelled?: boolean;
  destroyed?: boolean;
}

/** A chunk message (`bytes chunk = 1`) already encoded, passed through by `encodeChunkMessage`. */
export interface EncodedChunk {
  encoded: Buffer;
}

/**
 * Bytes per streamed message. Smaller than the 1 MiB the host accepts on purpose: every message is copied again by
 * grpc-js and by Node's stream shim, and those copies wait in the HTTP/2 queue until the pipe takes them, so 256 KiB
 * messages keep the bytes in flight (and the executable's peak RSS) four times smaller than 1 MiB ones at the same
 * throughput.
 */
export const MESSAGE_BYTES = 256 * 1024;

/** Room before the bytes of a message buffer for its protobuf header (tag, and a length varint of up to 5 bytes). */
const HEADROOM = 6;
/** Message buffers kept for reuse between Gets and Opens (each HEADROOM + MESSAGE_BYTES). */
const POOL_MAX = 4;
/**
 * Messages of one stream handed to grpc-js and not yet taken by HTTP/2 (their write callbacks pending). Beyond this
 * the stream waits: otherwise grpc-js queues up to 16 messages and HTTP/2 more while the pipe is slower than the source,
 * and those long-lived buffers count against V8's old-generation limit until a full GC (scripts/build-sea.ts).
 */
const MAX_IN_FLIGHT = 4;
const pool: Buffer[] = [];

function takeBuffer(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafe(HEADROOM + MESSAGE_BYTES);
}

function giveBuffer(buf: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buf);
}

/** The chunk message of the `fill` bytes at HEADROOM in `buf`: its header is written just before them. */
function frame(buf: Buffer, fill: number): Buffer {
  let varint = 1;
  while (fill >= 2 ** (7 * varint)) varint++;
  let pos = HEADROOM - varint - 1;
  const start = pos;
  buf[pos++] = 0x0a;
  let len = fill;
  while (len >= 0x80) {
    buf[pos++] = (len & 0x7f) | 0x80;
    len = Math.floor(len / 128);
  }
  buf[pos] = len;
  return buf.subarray(start, HEADROOM + fill);
}

/**
 * Streams `source` as chunk messages of up to MESSAGE_BYTES, stopping after `limit` bytes (the rest is not read, a stream
 * is destroyed). Pieces are copied straight into reused message buffers that already hold the protobuf header, so a
 * byte is copied once here and once by grpc-js's framing: no per-MiB concatenation, encoding copy or allocation, and
 * so far fewer garbage collections while hundreds of MB stream (a restore's Gets, a backup's Opens). A buffer goes
 * back to the pool once grpc-js has taken the message (the write's callback). Stops early when `stopped()` says so.
 */
export async function writeChunks(call: WritableCall, source: ContentSource, limit: number, stopped: () => boolean): Promise<void> {
  let remaining = limit;
  const iterator = chunksOf(source)[Symbol.asyncIterator]();
  let buf: Buffer | undefined;
  let fill = 0;
  let inFlight = 0;
  let taken: (() => void) | undefined;
  const flush = async (): Promise<void> => {
    if (!buf || fill === 0) return;
    const owned = buf;
    const message: EncodedChunk = { encoded: frame(owned, fill) };
    buf = undefined;
    fill = 0;
    inFlight++;
    const accepted = call.write(message, (err) => {
      inFlight--;
      if (!err) giveBuffer(owned);
      taken?.();
    });
    if (!accepted) await waitForDrain(call);
    else if (inFlight >= MAX_IN_FLIGHT && !call.destroyed && !call.cancelled) await waitForTaken();
  };
  const waitForTaken = (): Promise<void> =>
    untilOrEnd(call, (done) => {
      taken = done;
      return () => {
        taken = undefined;
      };
    });
  try {
    while (remaining > 0) {
      const next = await iterator.next();
      if (next.done || stopped()) break;
      const value = next.value;
      let piece = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      if (piece.length > remaining) piece = piece.subarray(0, remaining);
      remaining -= piece.length;
      for (let off = 0; off < piece.length; ) {
        buf ??= takeBuffer();
        const n = Math.min(MESSAGE_BYTES - fill, piece.length - off);
        piece.copy(buf, HEADROOM + fill, off, off + n);
        fill += n;
        off += n;
        if (fill === MESSAGE_BYTES) {
          await flush();
          if (stopped()) return;
        }
      }
    }
    if (!stopped()) await flush();
  } finally {
    if (buf && fill === 0) giveBuffer(buf);
    await iterator.return?.();
    if (source instanceof Readable && !source.destroyed) source.destroy();
  }
}

/**
 * Resolves when the trigger `arm` sets up fires, or when the call ends (cancelled, closed, failed), whichever comes
 * first; `arm` returns how to take its trigger down again.
 */
function untilOrEnd(call: WritableCall, arm: (done: () => void) => () => void): Promise<void> {
  return new Promise<void>((resolve) => {
    let disarm = (): void => undefined;
    const done = (): void => {
      disarm();
      call.off('cancelled', done);
      call.off('close', done);
      call.off('error', done);
      resolve();
    };
    disarm = arm(done);
    call.on('cancelled', done);
    call.on('close', done);
    call.on('error', done);
  });
}

function waitForDrain(call: WritableCall): Promise<void> {
  return untilOrEnd(call, (done) => {
    call.on('drain', done);
    return () => call.off('drain', done);
  });
}

/** The drain wait in progress on a call, shared by every writer that finds its buffer full meanwhile. */
const drains = new WeakMap<WritableCall, Promise<void>>();

/**
 * Writes `message`; when the stream's buffer is full, waits for 'drain' (or the call's end) before resolving. Writers
 * that run concurrently on one call (an exporter's results, one per item restored in parallel) share one wait, so the
 * call gets one set of listeners however many items finish while it is full (one set each would pass Node's limit of
 * ten and print a MaxListenersExceededWarning on stderr).
 */
export function writeMessage(call: WritableCall, message: unknown): Promise<void> | undefined {
  if (call.write(message)) return undefined;
  let wait = drains.get(call);
  if (!wait) {
    wait = waitForDrain(call).finally(() => drains.delete(call));
    drains.set(call, wait);
  }
  return wait;
}

/** An AbortSignal that fires when the host cancels the call. */
export function cancellationSignal(call: EventEmitter & { cancelled?: boolean }): AbortSignal {
  const ac = new AbortController();
  if (call.cancelled) ac.abort(new Error('cancelled by the host'));
  else call.once('cancelled', () => ac.abort(new Error('cancelled by the host')));
  return ac.signal;
}
