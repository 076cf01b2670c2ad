// Protobuf encoding as Go emits it (defaults omitted, oneofs kept) and plain typed views of the connector messages.
import protobuf from 'protobufjs';
import { protoType } from '../../shared/protocol/codec.ts';

/** A `google.protobuf.Timestamp` as numbers (seconds may be negative: Go's zero time is −62135596800). */
export interface Timestamp {
  seconds: number;
  nanos: number;
}

/** `plakar.connectors.FileInfo` with 64-bit fields as JS numbers (exact up to 2^53). */
export interface FileInfo {
  name: string;
  size: number;
  /** Go FileMode bits, unsigned. */
  mode: number;
  /** Absent on the wire means the Unix epoch to the host. */
  modTime?: Timestamp;
  dev: number;
  ino: number;
  uid: number;
  gid: number;
  nlink: number;
  username: string;
  groupname: string;
  flags: number;
}

/** `plakar.connectors.Record` as plain data. `xattrType` carries kloset numbers: 0 = xattr, 1 = ADS. */
export interface WireRecord {
  hasReader: boolean;
  pathname: string;
  error: string;
  isXattr: boolean;
  xattrName: string;
  xattrType: number;
  target: string;
  fileInfo?: FileInfo;
  extendedAttributes: string[];
  fileAttributes: number;
}

/** `plakar.connectors.Result` as plain data; `header` is undefined when the plugin left it out. */
export interface WireResult {
  header?: WireRecord;
  error: string;
}

/** A decoded protobufjs message viewed as a property bag. */
export type Decoded = { readonly [key: string]: unknown };

/** Storage resource numbers (`store.StorageResource`). */
export const RESOURCE = {
  PACKFILE: 1,
  STATE: 2,
  LOCK: 3,
  ECC_PACKFILE: 4,
  ECC_STATE: 5,
} as const;

/** One of the storage resource numbers. */
export type ResourceType = (typeof RESOURCE)[keyof typeof RESOURCE];

/** kloset's `StorageResource.String()` for a resource number (used in the host's error texts). */
export function resourceName(type: number): string {
  const names: Record<number, string> = {
    0: 'undefined',
    1: 'packfile',
    2: 'state',
    3: 'lock',
    4: 'ECC packfile',
    5: 'ECC state',
  };
  return names[type] ?? 'unknown';
}

/** Encodes `value` as message `typeName`, omitting proto3 default scalars like Go does but keeping set oneof members. */
export function encodeMessage(typeName: string, value: object): Buffer {
  const type = protoType(typeName);
  const pruned = pruneDefaults(type, value as Record<string, unknown>);
  const bytes = type.encode(type.fromObject(pruned)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes bytes as message `typeName`; absent message fields read as null, absent scalars as defaults. */
export function decodeMessage(typeName: string, bytes: Uint8Array): Decoded {
  return protoType(typeName).decode(bytes) as unknown as Decoded;
}

function isDefaultScalar(value: unknown): boolean {
  if (value === 0 || value === '' || value === false || value === 0n) return true;
  if (value instanceof Uint8Array) return value.length === 0;
  if (typeof value === 'object' && value !== null && 'isZero' in value) {
    const { isZero } = value;
    if (typeof isZero === 'function') return (isZero as (this: unknown) => boolean).call(value);
  }
  return false;
}

function pruneDefaults(type: protobuf.Type, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    const v = value[field.name];
    if (v === undefined || v === null) continue;
    field.resolve();
    const sub = field.resolvedType instanceof protobuf.Type ? field.resolvedType : undefined;
    if (field.map) {
      if (Object.keys(v).length > 0) out[field.name] = v;
    } else if (field.repeated) {
      const list = v as unknown[];
      if (list.length > 0) out[field.name] = sub ? list.map((e) => pruneDefaults(sub, e as Record<string, unknown>)) : list;
    } else if (sub) {
      // A set message field is always on the wire in Go, even when empty.
      out[field.name] = pruneDefaults(sub, v as Record<string, unknown>);
    } else if (field.partOf) {
      // Oneof members and proto3 `optional` fields are sent when set, even with a default value (`12 00`).
      out[field.name] = v;
    } else if (!isDefaultScalar(v)) {
      out[field.name] = v;
    }
  }
  return out;
}

/** Reads a string field. */
export function str(m: Decoded, key: string): string {
  const v = m[key];
  return typeof v === 'string' ? v : '';
}

/** Reads a bool field. */
export function bool(m: Decoded, key: string): boolean {
  return m[key] === true;
}

/** Reads a numeric field (number or Long) as a JS number. */
export function num(m: Decoded, key: string): number {
  return toNumber(m[key]);
}

/** Converts a protobufjs number/Long/bigint to a JS number. */
export function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'object' && v !== null && 'toNumber' in v) {
    const { toNumber: fn } = v;
    if (typeof fn === 'function') return (fn as (this: unknown) => number).call(v);
  }
  return 0;
}

/** Reads a bytes field (absent reads as an empty buffer). */
export function bytes(m: Decoded, key: string): Buffer {
  const v = m[key];
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return Buffer.alloc(0);
}

/** Reads a message field, or undefined when it is absent. */
export function sub(m: Decoded, key: string): Decoded | undefined {
  const v = m[key];
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) ? (v as Decoded) : undefined;
}

/** True when the message has `key` set on the wire (for oneof members and message fields). */
export function has(m: Decoded, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(m, key) && m[key] !== null && m[key] !== undefined;
}

/** Converts a decoded FileInfo. */
export function fileInfoFromProto(m: Decoded): FileInfo {
  const ts = sub(m, 'mod_time');
  const info: FileInfo = {
    name: str(m, 'name'),
    size: num(m, 'size'),
    mode: num(m, 'mode') >>> 0,
    dev: num(m, 'dev'),
    ino: num(m, 'ino'),
    uid: num(m, 'uid'),
    gid: num(m, 'gid'),
    nlink: num(m, 'nlink'),
    username: str(m, 'username'),
    groupname: str(m, 'groupname'),
    flags: num(m, 'flags'),
  };
  if (ts) info.modTime = { seconds: num(ts, 'seconds'), nanos: num(ts, 'nanos') };
  return info;
}

/** Converts a FileInfo to the object protobufjs encodes. */
export function fileInfoToProto(info: FileInfo): Record<string, unknown> {
  return {
    name: info.name,
    size: info.size,
    mode: info.mode >>> 0,
    mod_time: info.modTime ? { seconds: info.modTime.seconds, nanos: info.modTime.nanos } : undefined,
    dev: info.dev,
    ino: info.ino,
    uid: info.uid,
    gid: info.gid,
    nlink: info.nlink,
    username: info.username,
    groupname: info.groupname,
    flags: info.flags,
  };
}

/** Converts a decoded Record. */
export function recordFromProto(m: Decoded): WireRecord {
  const fi = sub(m, 'fileInfo');
  const xattrs = m['extendedAttributes'];
  const record: WireRecord = {
    hasReader: bool(m, 'hasReader'),
    pathname: str(m, 'pathname'),
    error: str(m, 'error'),
    isXattr: bool(m, 'isXattr'),
    xattrName: str(m, 'xattrName'),
    xattrType: num(m, 'xattrType'),
    target: str(m, 'target'),
    extendedAttributes: Array.isArray(xattrs) ? xattrs.map(String) : [],
    fileAttributes: num(m, 'fileAttributes'),
  };
  if (fi) record.fileInfo = fileInfoFromProto(fi);
  return record;
}

/** Converts a Record to the object protobufjs encodes. */
export function recordToProto(record: WireRecord): Record<string, unknown> {
  return {
    hasReader: record.hasReader,
    pathname: record.pathname,
    error: record.error,
    isXattr: record.isXattr,
    xattrName: record.xattrName,
    xattrType: record.xattrType,
    target: record.target,
    fileInfo: record.fileInfo ? fileInfoToProto(record.fileInfo) : undefined,
    extendedAttributes: record.extendedAttributes,
    fileAttributes: record.fileAttributes,
  };
}

/** Converts a decoded Result. */
export function resultFromProto(m: Decoded): WireResult {
  const header = sub(m, 'header');
  return { header: header ? recordFromProto(header) : undefined, error: str(m, 'error') };
}

/** A FileInfo with every field defaulted, overridden by `partial`. */
export function makeFileInfo(partial: Partial<FileInfo> = {}): FileInfo {
  return {
    name: '',
    size: 0,
    mode: 0o644,
    dev: 0,
    ino: 0,
    uid: 0,
    gid: 0,
    nlink: 1,
    username: '',
    groupname: '',
    flags: 0,
    ...partial,
  };
}

/** A Record with every field defaulted, overridden by `partial`. */
export function makeRecord(partial: Partial<WireRecord> & { pathname: string }): WireRecord {
  return {
    hasReader: false,
    error: '',
    isXattr: false,
    xattrName: '',
    xattrType: 0,
    target: '',
    extendedAttributes: [],
    fileAttributes: 0,
    ...partial,
  };
}

/** The key under which imported content is stored: the pathname, or `xattr:<path><sep><name>` (Go SDK's scheme). */
export function contentKey(record: Pick<WireRecord, 'pathname' | 'isXattr' | 'xattrName' | 'xattrType'>): string {
  if (!record.isXattr) return record.pathname;
  return `xattr:${record.pathname}${record.xattrType === 1 ? '@' : ':'}${record.xattrName}`;
}
