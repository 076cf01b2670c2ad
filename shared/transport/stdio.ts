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
  const duplex = Duplex.from({ readable: input, writable: output });
  return { duplex, input, output, shape: 'two-handles' };
}
