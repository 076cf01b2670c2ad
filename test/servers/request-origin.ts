// The address a request was sent to, for emulators that hand out absolute URLs (upload sessions, download URLs): built
// from the request's Host header, they point back at whatever the client reached (a fault proxy's own address when it
// goes through one), so several clients can each go through their own proxy to one emulator at the same time.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage } from 'node:http';

/** A Host header that is only a host name or address and a port (anything else is not used to build URLs). */
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** `http://<Host header>` of `req`, or undefined when it has no usable Host header. */
export function requestOrigin(req: IncomingMessage): string | undefined {
  const host = req.headers.host;
  return host !== undefined && HOST.test(host) ? `http://${host}` : undefined;
}

/**
 * The origin of the request being answered, carried through everything a handler awaits: `run` it around the
 * handler, and build absolute URLs from `current(fallback)` (the emulator's own address outside a request).
 */
export class RequestOrigin {
  private readonly store = new AsyncLocalStorage<string>();

  run<T>(req: IncomingMessage, fn: () => T): T {
    const origin = requestOrigin(req);
    return origin === undefined ? this.store.exit(fn) : this.store.run(origin, fn);
  }

  /** `http://host:port` of the request being answered (no trailing slash), else `fallback`. */
  current(fallback: string): string {
    return this.store.getStore() ?? fallback;
  }
}
