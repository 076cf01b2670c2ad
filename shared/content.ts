// Byte-stream helpers shared by the protocol servers: normalising content sources and re-chunking them.
import { Readable } from 'node:stream';
import type { ContentSource } from './define.ts';

/** The largest chunk the SDK ever sends in one message (1 MiB, as the Go SDK and host do). */
export const MAX_CHUNK = 1024 * 1024;

/** Any content source as an async iterable of byte chunks. */
export function chunksOf(source: ContentSource): AsyncIterable<Uint8Array> {
  if (source instanceof Uint8Array) {
    return (async function* () {
      yield source;
    })();
  }
  return source as AsyncIterable<Uint8Array>;
}

/** Any content source as a Readable (streams pass through untouched). */
export function toReadable(source: ContentSource): Readable {
  if (source instanceof Readable) return source;
  if (source instanceof Uint8Array) return Readable.from([Buffer.from(source.buffer, source.byteOffset, source.byteLength)], { objectMode: false });
  return Readable.from(source as AsyncIterable<Uint8Array>, { objectMode: false });
}

/**
 * Re-chunks a source into non-empty Buffers of at most `max` bytes, stopping after `limit` bytes
 * when given (the rest of the source is not read). Destroys a stream source when iteration stops early.
 */
export async function* rechunk(source: ContentSource, max = MAX_CHUNK, limit = Infinity): AsyncGenerator<Buffer> {
  let remaining = limit;
  if (remaining <= 0) {
    if (source instanceof Readable) source.destroy();
    return;
  }
  const iterator = chunksOf(source)[Symbol.asyncIterator]();
  try {
    while (remaining > 0) {
      const next = await iterator.next();
      if (next.done) return;
      const value = next.value;
      let buf = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      if (buf.length > remaining) buf = buf.subarray(0, remaining);
      for (let off = 0; off < buf.length; off += max) {
        const piece = buf.subarray(off, Math.min(off + max, buf.length));
        remaining -= piece.length;
        yield piece;
      }
    }
  } finally {
    await iterator.return?.();
    if (source instanceof Readable && !source.destroyed) source.destroy();
  }
}
