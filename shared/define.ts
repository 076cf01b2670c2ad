// The author API: defineIntegration and one define call per connector kind, with the types authors implement.
import type { Readable } from 'node:stream';
import type { Logger } from './log.ts';
import type { OptionList, OptionValues } from './options/builders.ts';
import type { Pacer, PacerOptions } from './retry/pacer.ts';

/** The three connector kinds. */
export type ConnectorKind = 'importer' | 'exporter' | 'storage';

/** Bytes an integration hands the SDK: a stream, an async iterable of chunks, or one buffer. */
export type ContentSource = Readable | AsyncIterable<Uint8Array> | Uint8Array;

/** The host's options (importer and exporter only). */
export interface HostOptions {
  hostname: string;
  os: string;
  arch: string;
  cwd: string;
  /** The host's `-concurrency` (at least 1). */
  maxConcurrency: number;
  excludes: string[];
  noXattr: boolean;
}

/** What every connector's `init` receives. */
export interface ConnectorContext<V> {
  /** Integration name, e.g. `s3`. */
  integration: string;
  kind: ConnectorKind;
  /** The protocol the host matched (one of the manifest's `protocols`). */
  proto: string;
  /** Parsed, validated options (camelCase); `location` is the raw location string. */
  options: V;
  /** The host's options; absent for storage. */
  host: HostOptions | undefined;
  log: Logger;
  /** Aborted when the process is shutting down. */
  signal: AbortSignal;
  /** A pacer with the common retry options applied (`max_retries` when declared). */
  pacer(options?: PacerOptions): Pacer;
  /** Registers an extra secret (a token obtained at run time) for redaction. */
  addSecret(value: string): void;
}

/** Location flags an importer may return (PROTOCOL.md §3.2). */
export interface ImporterFlags {
  /** Import can run only once: the host skips its statistics pre-scan. */
  stream?: boolean;
  /** Several importers of this type/origin cannot merge into one snapshot. */
  nomerge?: boolean;
}

/** An extended attribute of a file, sent as its own record with the value served through Open. */
export interface XattrItem {
  name: string;
  /** `ads` for an NTFS alternate data stream; default `xattr`. */
  kind?: 'xattr' | 'ads';
  /** The value, or a lazy opener for large values. */
  value: Uint8Array | string | (() => Promise<ContentSource>);
}

/** A regular file to back up. `open` is called lazily, only if the host needs the bytes. */
export interface ImportFile {
  type: 'file';
  /** Absolute snapshot path (segments encoded with `encodeSegment` where needed). */
  path: string;
  /** Size in bytes, or -1 when unknown (e.g. exported documents). */
  size: number;
  mtime: Date;
  /** Permission bits (default 0o644). */
  perm?: number;
  open: () => Promise<ContentSource>;
  /** Extended attributes sent as separate records. */
  xattrs?: XattrItem[];
  /** Names for the record's `extendedAttributes` (default: the names of `xattrs`). */
  xattrNames?: string[];
}

/** A directory record (optional: the host creates missing parents itself). */
export interface ImportDir {
  type: 'dir';
  path: string;
  mtime?: Date;
  perm?: number;
  xattrs?: XattrItem[];
  xattrNames?: string[];
}

/** A symbolic link. */
export interface ImportSymlink {
  type: 'symlink';
  path: string;
  target: string;
  mtime?: Date;
}

/** A per-item failure: recorded in the snapshot's error index; the backup continues. */
export interface ImportErrorItem {
  type: 'error';
  path: string;
  error: unknown;
}

/** Anything an importer yields. */
export type ImportItem = ImportFile | ImportDir | ImportSymlink | ImportErrorItem;

/** A running importer, returned by `init`. */
export interface ImporterInstance {
  /** Identity of the source account; stable across runs (the parent snapshot is found by type+origin+root). */
  origin: string;
  /** Snapshot type (default: the protocol). */
  type?: string;
  /** Absolute path under which records live. */
  root: string;
  flags?: ImporterFlags;
  /** Yields every item; throwing ends the whole import with an error status. */
  records(signal: AbortSignal): AsyncIterable<ImportItem>;
  ping?(): Promise<void>;
  close?(): Promise<void>;
}

/** One entry restored through an exporter. Paths are relative to the restore target: `/` is the target itself. */
export interface ExportEntry {
  /** Clean absolute path below the target (`/` is the target). */
  path: string;
  /** Base name from the snapshot (do not derive paths from it; use `path`). */
  name: string;
  /** Size in bytes (-1 when unknown). */
  size: number;
  /** Go FileMode bits. */
  mode: number;
  /** Unix permission bits (rwx + setuid/setgid/sticky). */
  perm: number;
  mtime: Date;
  /** The record's extended-attribute names. */
  xattrNames: string[];
  /** Symlink target, when a symlink. */
  target: string;
}

/** A running exporter, returned by `init`. */
export interface ExporterInstance {
  origin?: string;
  type?: string;
  root?: string;
  /** How many `write`s may run at once (default: the host's maxconcurrency). */
  concurrency?: number;
  /** Stores one regular file; `content` streams its bytes. Throw ItemError for a per-item failure. */
  write(entry: ExportEntry, content: Readable): Promise<void>;
  /** Creates a directory (called in pre-order, before its children). Default: nothing. */
  mkdir?(entry: ExportEntry): Promise<void>;
  /** Creates a symbolic link. Default: reported as unsupported for this item. */
  symlink?(entry: ExportEntry): Promise<void>;
  /** Called once after the last entry was written (directory times, summaries). */
  finish?(): Promise<void>;
  ping?(): Promise<void>;
  close?(): Promise<void>;
}

/** Storage resource types (PROTOCOL.md §3.6.2). */
export type Resource = 'packfile' | 'state' | 'lock' | 'ecc-packfile' | 'ecc-state';

/** A byte range of an object. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** A running storage connector, returned by `init`. MACs are 32-byte buffers. */
export interface StorageInstance {
  origin: string;
  type?: string;
  root?: string;
  /** `file` for a single-file repository; rarely needed. */
  flags?: { file?: boolean; localfs?: boolean };
  /** Creates an empty repository holding `config` verbatim; fails if one exists. */
  create(config: Buffer): Promise<void>;
  /** Returns the bytes stored by create; throws NotFoundError when there is no repository. */
  open(): Promise<Buffer>;
  /** 2 = write, 4 = read, 6 = both (default 6). */
  mode?(): Promise<number>;
  /** Total bytes used, or -1 when unknown or costly (default -1). */
  size?(): Promise<number>;
  /** Every MAC of one resource type. Foreign or malformed names must be skipped, listing errors thrown. */
  list(resource: Resource): AsyncIterable<Buffer> | Promise<Iterable<Buffer>>;
  /** Stores `content` under (resource, mac), replacing any object; complete and visible when it resolves. Returns bytes stored. */
  put(resource: Resource, mac: Buffer, content: Readable, info: { hot: boolean }): Promise<number | void>;
  /** Streams an object or a range of it (the SDK trims to the range and chunks the reply). */
  get(resource: Resource, mac: Buffer, range: ByteRange | undefined): Promise<ContentSource>;
  delete(resource: Resource, mac: Buffer): Promise<void>;
  ping?(): Promise<void>;
  close?(): Promise<void>;
  /**
   * Opts in to the SDK's read-ahead packfile cache (PROTOCOL.md §9: restores read packfiles through thousands of tiny
   * sequential ranged Gets): `fetch` downloads a whole object; the SDK caches packfiles on disk and answers ranges locally.
   * Declare `readAheadOptions` in the storage options so users can tune or turn it off.
   */
  readAhead?: { fetch(resource: Resource, mac: Buffer): Promise<ContentSource> };
}

/** How a connector's `location` looks, for docs and the schema. */
export interface LocationSpec {
  help: string;
  examples?: readonly string[];
  /** A regular expression for the schema. */
  pattern?: string;
}

interface ConnectorBase<L extends OptionList> {
  options: L;
  location: LocationSpec;
}

/** An importer definition. */
export interface ImporterDefinition<L extends OptionList = OptionList> extends ConnectorBase<L> {
  kind: 'importer';
  init(ctx: ConnectorContext<OptionValues<L>>): Promise<ImporterInstance>;
}

/** An exporter definition. */
export interface ExporterDefinition<L extends OptionList = OptionList> extends ConnectorBase<L> {
  kind: 'exporter';
  init(ctx: ConnectorContext<OptionValues<L>>): Promise<ExporterInstance>;
}

/** A storage definition. */
export interface StorageDefinition<L extends OptionList = OptionList> extends ConnectorBase<L> {
  kind: 'storage';
  init(ctx: ConnectorContext<OptionValues<L>>): Promise<StorageInstance>;
}

/** Any connector definition. */
export type ConnectorDefinition = ImporterDefinition | ExporterDefinition | StorageDefinition;

/** Defines an importer: its options and an `init` that returns the running instance. */
export function defineImporter<const L extends OptionList>(def: Omit<ImporterDefinition<L>, 'kind'>): ImporterDefinition<L> {
  return { ...def, kind: 'importer' };
}

/** Defines an exporter. */
export function defineExporter<const L extends OptionList>(def: Omit<ExporterDefinition<L>, 'kind'>): ExporterDefinition<L> {
  return { ...def, kind: 'exporter' };
}

/** Defines a storage connector. */
export function defineStorage<const L extends OptionList>(def: Omit<StorageDefinition<L>, 'kind'>): StorageDefinition<L> {
  return { ...def, kind: 'storage' };
}

/** A command a person runs from a terminal (e.g. `login`); never run by Plakar. */
export interface IntegrationCommand {
  help: string;
  run(args: string[]): Promise<number>;
}

/** One integration: one executable serving up to three connectors. */
export interface Integration {
  /** Package name: lowercase letters and digits (no `_`). */
  name: string;
  displayName: string;
  description: string;
  version: string;
  /** URL schemes served (manifest `protocols`). */
  protocols: readonly string[];
  importer?: ImporterDefinition<any>;
  exporter?: ExporterDefinition<any>;
  storage?: StorageDefinition<any>;
  commands?: Record<string, IntegrationCommand>;
}

/** Defines an integration; checks its name and protocols at once. */
export function defineIntegration(def: Integration): Integration {
  if (!/^[a-z0-9]+(?:-[a-z0-9]+)*$/.test(def.name)) throw new Error(`integration name ${JSON.stringify(def.name)}: use [a-z0-9-]`);
  for (const p of def.protocols) {
    if (!/^[A-Za-z0-9+.-]{2,}$/.test(p)) throw new Error(`protocol ${JSON.stringify(p)}: letters, digits, + - . and at least 2 characters`);
    if (['fs', 'ptar', 'ptar+http', 'ptar+https', 'http', 'https', 'stdin', 'stdout', 'stderr', 'tar', 'tar+gz', 'tar+gzip', 'tgz'].includes(p)) {
      throw new Error(`protocol ${p} is built into Plakar`);
    }
  }
  return def;
}

/** The connector definition of `kind`, if the integration has one. */
export function connectorOf(integration: Integration, kind: ConnectorKind): ConnectorDefinition | undefined {
  return integration[kind];
}

/** Option keys declared by the integration's connectors other than `kind`. */
export function siblingKeys(integration: Integration, kind: ConnectorKind): string[] {
  const keys: string[] = [];
  for (const k of ['importer', 'exporter', 'storage'] as const) {
    if (k === kind) continue;
    for (const spec of integration[k]?.options ?? []) keys.push(spec.key, ...spec.deprecatedAlias);
  }
  return keys;
}
