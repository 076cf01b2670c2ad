// Backpressure-aware writes on grpc-js server streams, and cancellation as an AbortSignal.
import type { EventEmitter } from 'node:events';

interface WritableCall extends EventEmitter {
  write(message: unknown): boolean;
  cancelled?: boolean;
  destroyed?: boolean;
}

/** Writes `message`; when the stream's buffer is full, waits for 'drain' (or the call's end) before resolving. */
export function writeMessage(call: WritableCall, message: unknown): Promise<void> | undefined {
  if (call.write(message)) return undefined;
  return new Promise<void>((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      call.off('cancelled', done);
      call.off('close', done);
      call.off('error', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
    call.on('close', done);
    call.on('error', done);
  });
}

/** An AbortSignal that fires when the host cancels the call. */
export function cancellationSignal(call: EventEmitter & { cancelled?: boolean }): AbortSignal {
  const ac = new AbortController();
  if (call.cancelled) ac.abort(new Error('cancelled by the host'));
  else call.once('cancelled', () => ac.abort(new Error('cancelled by the host')));
  return ac.signal;
}
