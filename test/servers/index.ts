// Real servers for tests: start functions, handle types, and the `server:<name>` keys the global setup provides.
import type { ProvidedServers } from './registry.ts';

export { freePort, freePorts } from './ports.ts';
export {
  RADOSGW_MEMSTORE_BYTES,
  startRadosgw,
  type Radosgw,
  type RadosgwInfo,
  type RadosgwOptions,
} from './radosgw.ts';
export { startSwift, type Swift, type SwiftInfo } from './swift.ts';
export {
  addDovecotUser,
  DOVECOT_SPECIAL_USE,
  startDovecot,
  type Dovecot,
  type DovecotInfo,
  type DovecotOptions,
  type DovecotUser,
} from './dovecot.ts';
export {
  startRadicale,
  type Radicale,
  type RadicaleInfo,
  type RadicaleOptions,
  type RadicaleUser,
} from './radicale.ts';
export { startXandikos, type Xandikos, type XandikosInfo } from './xandikos.ts';
export {
  parseServerList,
  SERVER_NAMES,
  serverInfo,
  serverKey,
  STARTERS,
  type ProvidedServers,
  type RunningServer,
  type ServerInfos,
  type ServerKey,
  type ServerName,
  type WithoutMethods,
} from './registry.ts';
export { providedServer } from './provided.ts';

declare module 'vitest' {
  /** Values `test/global-setup.ts` provides: `inject('server:radosgw')` etc. (undefined when not started). */
  export interface ProvidedContext extends ProvidedServers {}
}
