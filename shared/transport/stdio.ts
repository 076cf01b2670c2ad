// The byte channel to the host: fd 0 (read) and fd 1 (write), as two pipes (Plakar), two sockets (Node) or one socket.
import { fstatSync } from 'node:fs';
import { Socket } from 'node:net';
import { Duplex } from 'node:stream';

/** Which native handles carry the channel. */
export type StdioShape = 'one-socket' | 'two-handles';

/**
 * Builds one Duplex over fd 0 and fd 1 from native libuv handles. When both fds are the same socket it is used
 * directly (no JavaScript shim at all); otherwise a reader on fd 0 and a writer on fd 1 are joined, and fd 0 is
 * never assumed writable.
 */
export function stdioDuplex(): { duplex: Duplex; input: Socket; output: Socket; shape: StdioShape } {
  const s0 = fstatSync(0);
  const s1 = fstatSync(1);
  if (s0.isSocket() && s1.isSocket() && s0.ino === s1.ino && s0.dev === s1.dev) {
    const socket = new Socket({ fd: 0, readable: true, writable: true });
    return { duplex: socket, input: socket, output: socket, shape: 'one-socket' };
  }
  const input = new Socket({ fd: 0, readable: true, writable: false });
  const output = new Socket({ fd: 1, readable: false, writable: true });
  return { duplex: new PipePairDuplex(input, output), input, output, shape: 'two-handles' };
}

/**
 * One Duplex over a read handle and a write handle, with as little JavaScript as possible between HTTP/2 and the
 * pipes: reads are pushed as they arrive (pausing the handle under backpressure), and writes go straight to the
 * output socket. HTTP/2 drives a non-native stream through Node's JSStreamSocket, which writes each batch of frames
 * as cork(), write(buf, done) per buffer, uncork(), and completes the batch when every `done` has been called (that
 * is its backpressure: nothing else is read from write's return value). So cork, uncork and write are handed to the
 * output socket itself, whose one Writable batches the buffers into one writev and calls each `done` once the pipe
 * has taken it — rather than a second Writable in front of it doing the same bookkeeping again (measured with callgrind
 * through the Go host stand-in: 703k → 655k instructions per small `Get`).
 */
export class PipePairDuplex extends Duplex {
  private readonly input: Socket;
  private readonly output: Socket;

  constructor(input: Socket, output: Socket) {
    super({ allowHalfOpen: true, decodeStrings: false });
    this.input = input;
    this.output = output;
    input.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) input.pause();
    });
    input.on('end', () => this.push(null));
    input.on('error', (err) => this.destroy(err));
    output.on('error', (err) => this.destroy(err));
  }

  override _read(): void {
    this.input.resume();
  }

  override cork(): void {
    this.output.cork();
  }

  override uncork(): void {
    this.output.uncork();
  }

  override write(chunk: unknown, encoding?: BufferEncoding | WriteCallback, callback?: WriteCallback): boolean {
    if (typeof encoding === 'function') return this.output.write(chunk as Buffer, encoding);
    return this.output.write(chunk as Buffer, encoding as BufferEncoding, callback);
  }

  /** Only `end(chunk)` comes this way (Writable.end writes its last chunk internally, not through `write`). */
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.output.write(chunk, (err) => callback(err));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.output.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.input.destroy();
    this.output.destroy();
    callback(error);
  }
}

type WriteCallback = (error: Error | null | undefined) => void;
