// The Plakar v1.1.4 host side of every connector: Init/Ping/Close, the storage calls, and entry points to import/export.
import os from 'node:os';
import { ContractError, HostAbortError, HostError } from './errors.ts';
import { exportTree, type ExportEntry, type ExportOptions, type ExportOutcome } from './export.ts';
import { importAll, type ImportOptions, type ImportOutcome } from './import.ts';
import { bytes, decodeMessage, encodeMessage, num, resourceName, str, toNumber, type ResourceType } from './messages.ts';
import { recordSecrets } from './secret-scan.ts';
import type { ConnectorKind } from './spawn.ts';
import { EofError, GrpcConnection, GrpcError } from './transport.ts';

/** Largest chunk the host puts in one message (Put chunks, export content). */
export const HOST_CHUNK_SIZE = 1024 * 1024;

/** Length of every object MAC. */
export const MAC_LENGTH = 32;

/** The `Options` message of importer/exporter Init, with the host's values as defaults. */
export interface InitOptions {
  /** Default: this machine's host name. */
  hostname?: string;
  /** Default `linux`. */
  os?: string;
  /** Default `amd64`. */
  arch?: string;
  /** Default: process.cwd(). */
  cwd?: string;
  /** Default: CPU count − 1, at least 1 (Plakar's default). */
  maxConcurrency?: number;
  /** Default: none. */
  excludes?: string[];
  /** Always false in v1.1.4. */
  noxattr?: boolean;
}

/** What Init returned. */
export interface InitResult {
  origin: string;
  type: string;
  root: string;
  flags: number;
}

/** Harness behaviour switches. */
export interface HostSettings {
  /** Throw ContractError at the first contract violation (default true); when false they are collected. */
  strict?: boolean;
}

/** A byte range for ranged storage Gets. */
export interface ByteRange {
  offset: number;
  length: number;
}

const SERVICE: Record<ConnectorKind, string> = {
  importer: 'importer.Importer',
  exporter: 'plakar.exporter.Exporter',
  storage: 'store.Store',
};

const PACKAGE: Record<ConnectorKind, string> = {
  importer: 'importer',
  exporter: 'plakar.exporter',
  storage: 'store',
};

/** Location flag bits each kind may return from Init in v1.1.x (PROTOCOL §3.2). */
const KNOWN_FLAGS: Record<ConnectorKind, number> = {
  importer: 1 | 4 | 8 | 16,
  exporter: 1 | 32,
  storage: 1 | 2,
};

/** Plakar's default concurrency: CPU count − 1, at least 1. */
export function defaultMaxConcurrency(): number {
  return Math.max(1, os.availableParallelism() - 1);
}

/**
 * Drives one plugin instance like the Plakar host: `init` first and once, then the calls of that kind.
 * Every failure is a HostError carrying the host's own words; protocol breaks that abort the host are HostAbortError.
 */
export class PluginHost {
  /** The connector kind given to `init`. */
  kind?: ConnectorKind;
  /** What Init returned. */
  initResult?: InitResult;
  /** The options sent in Init (importer/exporter). */
  initOptions?: Required<InitOptions>;
  /** Contract violations collected when `strict` is false. */
  readonly violations: string[] = [];
  /** Things the host tolerates but that deserve a look (e.g. nlink > 1). */
  readonly warnings: string[] = [];
  /** Whether contract violations throw. */
  readonly strict: boolean;

  /** The client connection to the plugin. */
  readonly connection: GrpcConnection;

  constructor(connection: GrpcConnection, settings: HostSettings = {}) {
    this.connection = connection;
    this.strict = settings.strict ?? true;
  }

  /** Records a contract violation: throws ContractError when strict, otherwise collects it. */
  violation(message: string): void {
    if (this.strict) throw new ContractError(message);
    this.violations.push(message);
  }

  /** Records a warning. */
  warn(message: string): void {
    this.warnings.push(message);
  }

  /** Sends Init as the host does. `config` must hold `location` (the host always sends it). */
  async init(
    kind: ConnectorKind,
    proto: string,
    config: Record<string, string>,
    options: InitOptions = {},
  ): Promise<InitResult> {
    if (this.kind) throw new Error(`harness misuse: Init already sent (${this.kind}); the host sends it once per process`);
    if (typeof config['location'] !== 'string') throw new Error('harness misuse: config.location is required (the host always sends it)');
    recordSecrets(config);
    this.kind = kind;
    let request: object;
    if (kind === 'storage') {
      request = { proto, config };
    } else {
      const opts: Required<InitOptions> = {
        hostname: options.hostname ?? os.hostname(),
        os: options.os ?? 'linux',
        arch: options.arch ?? 'amd64',
        cwd: options.cwd ?? process.cwd(),
        maxConcurrency: options.maxConcurrency ?? defaultMaxConcurrency(),
        excludes: options.excludes ?? [],
        noxattr: options.noxattr ?? false,
      };
      this.initOptions = opts;
      request = {
        options: {
          hostname: opts.hostname,
          os: opts.os,
          arch: opts.arch,
          cwd: opts.cwd,
          maxconcurrency: opts.maxConcurrency,
          excludes: opts.excludes,
          noxattr: opts.noxattr,
        },
        proto,
        config,
      };
    }
    const reply = await this.unary('Init', request);
    const result: InitResult = {
      origin: str(reply, 'origin'),
      type: str(reply, 'type'),
      root: str(reply, 'root'),
      flags: num(reply, 'flags') >>> 0,
    };
    this.initResult = result;
    if (kind === 'importer') {
      if (result.origin === '') this.violation('importer Init returned an empty origin (it keys parent snapshots)');
      if (!result.root.startsWith('/')) this.violation(`importer Init returned root ${JSON.stringify(result.root)}, not an absolute path`);
    }
    if (kind === 'storage' && (result.type === 'fs' || result.type === 'ptar')) {
      this.violation(`storage Init returned the reserved type ${JSON.stringify(result.type)}`);
    }
    const unknown = result.flags & ~KNOWN_FLAGS[kind];
    if (unknown) this.warn(`${kind} Init returned unknown location flag bits 0x${(unknown >>> 0).toString(16)}`);
    return result;
  }

  /** Ping (all kinds). */
  async ping(): Promise<void> {
    await this.unary('Ping', {});
  }

  /** Close (all kinds); the host sends it from a deferred call and never closes the channel itself. */
  async close(): Promise<void> {
    await this.unary('Close', {});
  }

  /** Runs one Import like the host's backup (see ImportOptions); importer only. */
  async importAll(options: ImportOptions = {}): Promise<ImportOutcome> {
    this.expectKind('importer');
    return importAll(this, options);
  }

  /** Restores `entries` through Export like the host's restore (see ExportOptions); exporter only. */
  async exportTree(entries: ExportEntry[], options: ExportOptions = {}): Promise<ExportOutcome> {
    this.expectKind('exporter');
    return exportTree(this, entries, options);
  }

  /** Storage Create with the opaque repository config blob. */
  async create(config: Uint8Array): Promise<void> {
    this.expectKind('storage');
    await this.unary('Create', { config });
  }

  /** Storage Open: returns the blob stored by Create. */
  async open(): Promise<Buffer> {
    this.expectKind('storage');
    return bytes(await this.unary('Open', {}), 'config');
  }

  /** Storage Mode (2 = write, 4 = read). */
  async mode(): Promise<number> {
    this.expectKind('storage');
    return num(await this.unary('Mode', {}), 'mode');
  }

  /** Storage Size (−1 = unknown). */
  async size(): Promise<number> {
    this.expectKind('storage');
    return num(await this.unary('Size', {}), 'size');
  }

  /** Storage List; fails like the host on any MAC that is not 32 bytes ("invalid MAC length: N"). */
  async list(type: ResourceType): Promise<Buffer[]> {
    this.expectKind('storage');
    let reply;
    try {
      reply = await this.rawUnary('List', { type });
    } catch (err) {
      throw this.hostError(err, `failed to list ${resourceName(type)}: `);
    }
    const macs = reply['macs'];
    const out: Buffer[] = [];
    for (const mac of Array.isArray(macs) ? (macs as Uint8Array[]) : []) {
      if (mac.length !== MAC_LENGTH) throw new HostAbortError(`invalid MAC length: ${mac.length}`);
      out.push(Buffer.from(mac));
    }
    return out;
  }

  /**
   * Storage Put as the host sends it: `{mac, type}` alone, then chunk-only messages of at most `chunkSize` bytes
   * (never empty), then half-close. Returns `bytes_written`.
   */
  async put(
    type: ResourceType,
    mac: Uint8Array,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    chunkSize: number = HOST_CHUNK_SIZE,
  ): Promise<number> {
    this.expectKind('storage');
    checkMac(mac);
    const call = await this.connection.stream(this.path('Put'));
    try {
      await call.write(encodeMessage('store.PutRequest', { mac, type }));
    } catch (err) {
      call.cancel();
      throw err instanceof EofError ? new HostError('failed to send mac: EOF') : err;
    }
    let total = 0;
    try {
      for await (const piece of rechunk(data, chunkSize)) {
        await call.write(encodeMessage('store.PutRequest', { chunk: piece }));
        total += piece.length;
      }
    } catch (err) {
      if (err instanceof EofError) {
        // grpc-go's Send returned io.EOF: the host reports this and the plugin's own message is lost (§3.6.3).
        call.cancel();
        throw new HostError('failed to send chunk: EOF');
      }
      call.cancel();
      throw err;
    }
    let reply;
    try {
      reply = decodeMessage('store.PutResponse', await this.connection.closeAndRecv(call));
    } catch (err) {
      throw this.hostError(err, '');
    }
    const written = toNumber(reply['bytes_written']);
    if (written !== total) this.violation(`Put of ${total} bytes answered bytes_written=${written}`);
    return written;
  }

  /**
   * Storage Get. Without `range`, joins every chunk until the end. With `range`, reads exactly `range.length` bytes
   * like kloset's io.ReadFull ("unexpected EOF" when fewer arrive), then drains and ignores the rest and the status.
   */
  async get(type: ResourceType, mac: Uint8Array, range?: ByteRange): Promise<Buffer> {
    this.expectKind('storage');
    checkMac(mac);
    const request: Record<string, unknown> = { mac, type };
    if (range) request['range'] = { offset: range.offset, length: range.length };
    const call = await this.connection.serverStream(this.path('Get'), encodeMessage('store.GetRequest', request));
    const parts: Buffer[] = [];
    let got = 0;
    const want = range?.length;
    try {
      while (want === undefined || got < want) {
        const msg = await call.read();
        if (msg === undefined) break;
        const chunk = bytes(decodeMessage('store.GetResponse', msg), 'chunk');
        parts.push(chunk);
        got += chunk.length;
      }
    } catch (err) {
      throw this.hostError(err, 'failed to receive file data: ');
    }
    if (want !== undefined) {
      if (got < want) throw new HostError(got === 0 && want > 0 ? 'EOF' : 'unexpected EOF');
      // kloset closes the reader, which drains the stream; the drain's error is ignored.
      let extra = got - want;
      for (;;) {
        let msg: Buffer | undefined;
        try {
          msg = await call.read();
        } catch {
          break;
        }
        if (msg === undefined) break;
        extra += bytes(decodeMessage('store.GetResponse', msg), 'chunk').length;
      }
      if (extra > 0) this.warn(`ranged Get of ${want} bytes returned ${extra} extra bytes (ignored by the host)`);
      return Buffer.concat(parts).subarray(0, want);
    }
    return Buffer.concat(parts);
  }

  /** Storage Delete. */
  async delete(type: ResourceType, mac: Uint8Array): Promise<void> {
    this.expectKind('storage');
    checkMac(mac);
    try {
      await this.rawUnary('Delete', { mac, type });
    } catch (err) {
      throw this.hostError(err, `failed to delete ${resourceName(type)}: `);
    }
  }

  /** The full method path of `method` for this instance's kind. */
  path(method: string): string {
    if (!this.kind) throw new Error('harness misuse: Init must be the first call');
    return `/${SERVICE[this.kind]}/${method}`;
  }

  /** Converts a call failure to the HostError the host would produce, with its message prefix. */
  hostError(err: unknown, prefix: string): unknown {
    if (err instanceof GrpcError) return new HostError(prefix + err.hostMessage, err);
    return err;
  }

  private expectKind(kind: ConnectorKind): void {
    if (!this.kind) throw new Error('harness misuse: Init must be the first call');
    if (this.kind !== kind) throw new Error(`harness misuse: ${kind} call on a ${this.kind} instance`);
  }

  private async unary(method: string, request: object): Promise<ReturnType<typeof decodeMessage>> {
    try {
      return await this.rawUnary(method, request);
    } catch (err) {
      throw this.hostError(err, '');
    }
  }

  private async rawUnary(method: string, request: object): Promise<ReturnType<typeof decodeMessage>> {
    const kind = this.kind;
    if (!kind) throw new Error('harness misuse: Init must be the first call');
    const pkg = PACKAGE[kind];
    const reply = await this.connection.unary(this.path(method), encodeMessage(`${pkg}.${method}Request`, request));
    return decodeMessage(`${pkg}.${method}Response`, reply);
  }
}

function checkMac(mac: Uint8Array): void {
  if (mac.length !== MAC_LENGTH) throw new Error(`harness misuse: the host only sends ${MAC_LENGTH}-byte MACs`);
}

/** Re-chunks bytes or a stream into non-empty pieces of at most `size` bytes. */
export async function* rechunk(data: Uint8Array | AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  if (size <= 0) throw new Error('chunk size must be positive');
  if (data instanceof Uint8Array) {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    for (let off = 0; off < buf.length; off += size) yield buf.subarray(off, off + size);
    return;
  }
  for await (const piece of data) {
    const buf = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    for (let off = 0; off < buf.length; off += size) yield buf.subarray(off, off + size);
  }
}
