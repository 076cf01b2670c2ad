// PipePairDuplex: the write path HTTP/2 uses (cork, write with callbacks, uncork) reaches the output handle in order,
// completes only as the peer takes the bytes, and end(chunk) still delivers its last chunk before EOF.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PipePairDuplex } from '../../shared/transport/stdio.ts';

interface Pair {
  /** The handle PipePairDuplex writes to. */
  output: Socket;
  /** The far end: what the host would read. */
  peer: Socket;
}

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** A connected Unix-domain socket pair (a native handle on each side, like the two pipes). */
async function socketPair(): Promise<Pair> {
  const dir = await mkdtemp(join(tmpdir(), 'kts-stdio-'));
  const path = join(dir, 's');
  const server: Server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const output = createConnection(path);
  const peer = await accepted;
  await new Promise<void>((resolve) => (output.connecting ? output.once('connect', () => resolve()) : resolve()));
  cleanups.push(async () => {
    output.destroy();
    peer.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });
  return { output, peer };
}

async function duplexOver(): Promise<{ duplex: PipePairDuplex; peer: Socket; input: Socket }> {
  const out = await socketPair();
  const inp = await socketPair();
  // input: the duplex reads what inp.peer writes; output: the duplex writes what out.peer reads.
  const duplex = new PipePairDuplex(inp.output, out.output);
  return { duplex, peer: out.peer, input: inp.peer };
}

function collect(socket: Socket): { chunks: Buffer[]; ended: Promise<void> } {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return { chunks, ended: new Promise((resolve) => socket.once('end', () => resolve())) };
}

describe('PipePairDuplex write path', () => {
  it('delivers a corked batch in order and calls every callback once', async () => {
    const { duplex, peer } = await duplexOver();
    const got = collect(peer);
    const parts = Array.from({ length: 200 }, (_, i) => randomBytes(1 + ((i * 7919) % 20_000)));
    let done = 0;
    const errors: unknown[] = [];
    duplex.cork();
    for (const p of parts) {
      duplex.write(p, (err) => {
        if (err) errors.push(err);
        done++;
      });
    }
    duplex.uncork();
    duplex.end();
    await got.ended;
    expect(errors).toEqual([]);
    expect(done).toBe(parts.length);
    expect(Buffer.concat(got.chunks).equals(Buffer.concat(parts))).toBe(true);
  });

  it('completes writes only as the peer reads them (the backpressure HTTP/2 relies on)', async () => {
    const { duplex, peer } = await duplexOver();
    peer.pause();
    const parts = Array.from({ length: 64 }, () => randomBytes(256 * 1024));
    let done = 0;
    duplex.cork();
    for (const p of parts) duplex.write(p, () => done++);
    duplex.uncork();
    await new Promise((resolve) => setTimeout(resolve, 300));
    // 16 MiB cannot all fit in the socket buffers while nobody reads.
    expect(done).toBeLessThan(parts.length);
    const got = collect(peer);
    peer.resume();
    duplex.end();
    await got.ended;
    expect(done).toBe(parts.length);
    expect(Buffer.concat(got.chunks).equals(Buffer.concat(parts))).toBe(true);
  });

  it('end(chunk) writes the last chunk after the earlier ones, then EOF; reads arrive as pushed', async () => {
    const { duplex, peer, input } = await duplexOver();
    const got = collect(peer);
    const first = randomBytes(1000);
    const last = randomBytes(3000);
    duplex.write(first);
    duplex.end(last);
    await got.ended;
    expect(Buffer.concat(got.chunks).equals(Buffer.concat([first, last]))).toBe(true);

    const incoming = randomBytes(100_000);
    const read: Buffer[] = [];
    duplex.on('data', (c: Buffer) => read.push(c));
    const ended = new Promise<void>((resolve) => duplex.once('end', () => resolve()));
    input.end(incoming);
    await ended;
    expect(Buffer.concat(read).equals(incoming)).toBe(true);
  });
});
