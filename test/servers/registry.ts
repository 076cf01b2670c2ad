// The named test servers of a run: their names, start functions, serialisable handle types and provide keys.
import { startDovecot, type DovecotInfo } from './dovecot.ts';
import { startRadicale, type RadicaleInfo } from './radicale.ts';
import { startRadosgw, type RadosgwInfo } from './radosgw.ts';
import { startSwift, type SwiftInfo } from './swift.ts';
import { startXandikos, type XandikosInfo } from './xandikos.ts';

/** Every server the global setup can start, as named in `KLOSET_TS_SERVERS`. */
export const SERVER_NAMES = ['radosgw', 'swift', 'dovecot', 'dovecot-dot', 'radicale', 'xandikos'] as const;

/** One of {@link SERVER_NAMES}. */
export type ServerName = (typeof SERVER_NAMES)[number];

/** The serialisable handle of each server (what `inject('server:<name>')` returns). */
export interface ServerInfos {
  radosgw: RadosgwInfo;
  swift: SwiftInfo;
  /** Dovecot with the `/` hierarchy separator. */
  dovecot: DovecotInfo;
  /** Dovecot with the `.` hierarchy separator. */
  'dovecot-dot': DovecotInfo;
  radicale: RadicaleInfo;
  xandikos: XandikosInfo;
}

/** The key under which the global setup provides a server's handle: `server:<name>`. */
export type ServerKey<N extends ServerName = ServerName> = `server:${N}`;

/** The provided context entries, one optional key per server (absent when the run did not start it). */
export type ProvidedServers = { [N in ServerName as ServerKey<N>]?: ServerInfos[N] };

/** A started server: its serialisable info plus `stop()`. */
export type RunningServer<N extends ServerName = ServerName> = ServerInfos[N] & { stop(): Promise<void> };

/** How each named server is started. */
export const STARTERS: { readonly [N in ServerName]: () => Promise<RunningServer<N>> } = {
  radosgw: () => startRadosgw(),
  swift: () => startSwift(),
  dovecot: () => startDovecot(),
  'dovecot-dot': () => startDovecot({ separator: '.' }),
  radicale: () => startRadicale(),
  xandikos: () => startXandikos(),
};

/**
 * Returns the provide key of a server.
 *
 * @param name - the server
 * @returns `server:<name>`
 */
export function serverKey<N extends ServerName>(name: N): ServerKey<N> {
  return `server:${name}`;
}

/**
 * Parses a comma-separated server list (the value of `KLOSET_TS_SERVERS`): blanks are ignored, duplicates removed.
 *
 * @param list - e.g. `radosgw,dovecot`; undefined or empty means none
 * @returns the names in order
 * @throws TypeError naming every unknown server
 */
export function parseServerList(list: string | undefined): ServerName[] {
  const names = (list ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = names.filter((n) => !(SERVER_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    const known = SERVER_NAMES.join(', ');
    throw new TypeError(`KLOSET_TS_SERVERS: unknown server ${unknown.join(', ')} (known: ${known})`);
  }
  return [...new Set(names as ServerName[])];
}

/** A handle without its methods: what survives `JSON.stringify`. */
export type WithoutMethods<T> = { [K in keyof T as T[K] extends (...args: never[]) => unknown ? never : K]: T[K] };

/**
 * Strips the functions off a running server's handle, leaving what can be sent to test workers.
 *
 * @param server - the handle
 * @returns a JSON-serialisable copy
 */
export function serverInfo<T extends { stop(): Promise<void> }>(server: T): WithoutMethods<T> {
  return JSON.parse(JSON.stringify(server)) as WithoutMethods<T>;
}
