// Unit tests of re-chunking: never empty, at most 1 MiB, trimmed to a limit, sources released early.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MAX_CHUNK, rechunk } from '../../shared/content.ts';

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return out;
}

describe('sdk content: rechunk', () => {
  it('splits large chunks at 1 MiB and drops empty ones', async () => {
    const src = Readable.from([Buffer.alloc(0), Buffer.alloc(MAX_CHUNK * 2 + 5, 1), Buffer.alloc(0), Buffer.from('x')]);
    const chunks = await collect(rechunk(src));
    expect(chunks.map((c) => c.length)).toEqual([MAX_CHUNK, MAX_CHUNK, 5, 1]);
  });

  it('stops at the limit and destroys the source', async () => {
    const src = Readable.from([Buffer.alloc(10, 1), Buffer.alloc(10, 2), Buffer.alloc(10, 3)]);
    const chunks = await collect(rechunk(src, MAX_CHUNK, 15));
    expect(Buffer.concat(chunks)).toEqual(Buffer.concat([Buffer.alloc(10, 1), Buffer.alloc(5, 2)]));
    expect(src.destroyed).toBe(true);
  });

  it('accepts a buffer and an async iterable', async () => {
    expect(await collect(rechunk(new Uint8Array([1, 2, 3])))).toEqual([Buffer.from([1, 2, 3])]);
    async function* gen(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array([4]);
      yield new Uint8Array([]);
      yield new Uint8Array([5, 6]);
    }
    expect(Buffer.concat(await collect(rechunk(gen())))).toEqual(Buffer.from([4, 5, 6]));
  });

  it('yields nothing for a zero limit', async () => {
    expect(await collect(rechunk(Buffer.from('abc'), MAX_CHUNK, 0))).toEqual([]);
  });
});
