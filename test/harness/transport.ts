// A gRPC client on raw node:http2 with hand-made framing that behaves like the Plakar host's grpc-go 1.81.1 client.
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';

/** grpc-go's default receive limit, which the Plakar host never raises (PROTOCOL §1.3). */
export const MAX_RECEIVE_MESSAGE = 4 * 1024 * 1024;

/** How long grpc-go waits for the server's SETTINGS frame before failing the connection (its 20 s connect deadline). */
export const SETTINGS_TIMEOUT_MS = 20_000;

/** The user-agent grpc-go 1.81.1 sends. */
export const USER_AGENT = 'grpc-go/1.81.1';

/** gRPC status codes. */
export const STATUS = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const GO_CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
];

/** Go's name for a status code, as printed in `rpc error: code = <name> desc = …`. */
export function goCodeName(code: number): string {
  return GO_CODE_NAMES[code] ?? `Code(${code})`;
}

/** The final status of one call. */
export interface CallStatus {
  code: number;
  details: string;
  /** Trailers (or trailers-only headers) as received; empty when the status was synthesised locally. */
  trailers: http2.IncomingHttpHeaders;
}

/** A non-OK gRPC status, formatted the way grpc-go's `status.Error` prints it. */
export class GrpcError extends Error {
  override readonly name = 'GrpcError';
  /** The gRPC status code. */
  readonly code: number;
  /** The status message (percent-decoded). */
  readonly details: string;

  constructor(code: number, details: string) {
    super(`rpc error: code = ${goCodeName(code)} desc = ${details}`);
    this.code = code;
    this.details = details;
  }

  /** What the host's `unwrap()` turns this status into (integration-grpc v1.1.0): the text the user sees. */
  get hostMessage(): string {
    if (this.code === STATUS.CANCELLED) return 'context canceled';
    if (this.code === STATUS.UNAVAILABLE) return `I/O error communicating with the integration (${this.details})`;
    return this.details;
  }
}

/** grpc-go's `Send` returned `io.EOF`: the server already ended the call, so the message was not delivered. */
export class EofError extends Error {
  override readonly name = 'EofError';
  constructor() {
    super('EOF');
  }
}

/** Decodes a `grpc-message` value like grpc-go: valid `%XX` escapes become bytes, anything else stays literal. */
export function decodeGrpcMessage(value: string): string {
  if (!value.includes('%')) return value;
  const bytes: number[] = [];
  const raw = Buffer.from(value, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as number;
    if (c === 0x25 && i + 2 < raw.length) {
      const hex = raw.subarray(i + 1, i + 3).toString('latin1');
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 2;
        continue;
      }
    }
    bytes.push(c);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Frames one protobuf payload: flag 0 (uncompressed), 4-byte big-endian length, payload. */
export function frameMessage(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = 0;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, 5);
  return out;
}

/** Splits a byte stream into gRPC messages, enforcing the receive limit on each length prefix like grpc-go. */
export class FrameParser {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly maxMessage: number;

  /** @param maxMessage largest accepted payload; larger prefixes throw RESOURCE_EXHAUSTED. */
  constructor(maxMessage: number = MAX_RECEIVE_MESSAGE) {
    this.maxMessage = maxMessage;
  }

  /** Adds bytes and returns every complete message payload; throws a GrpcError on a bad prefix. */
  push(data: Buffer): Buffer[] {
    this.chunks.push(data);
    this.buffered += data.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.buffered < 5) break;
      const head = this.peek(5);
      const flag = head[0] as number;
      const length = head.readUInt32BE(1);
      if (flag === 1) {
        throw new GrpcError(STATUS.INTERNAL, 'grpc: compressed flag set with identity or empty encoding');
      }
      if (flag !== 0) throw new GrpcError(STATUS.INTERNAL, `grpc: received unexpected payload format ${flag}`);
      if (length > this.maxMessage) {
        throw new GrpcError(
          STATUS.RESOURCE_EXHAUSTED,
          `grpc: received message larger than max (${length} vs. ${this.maxMessage})`,
        );
      }
      if (this.buffered < 5 + length) break;
      const all = this.take(5 + length);
      out.push(all.subarray(5));
    }
    return out;
  }

  /** Bytes of an incomplete message still buffered. */
  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined.subarray(0, n);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const joined = Buffer.concat(this.chunks);
      out = joined.subarray(0, n);
      this.chunks = joined.length > n ? [joined.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}

/** Options of a client connection. */
export interface ConnectionOptions {
  /** Receive limit per message (default 4 MiB, the host's). */
  maxReceiveMessage?: number;
  /** How long to wait for the plugin's SETTINGS frame (default 20 s). */
  settingsTimeoutMs?: number;
  /** Local watchdog per call in ms (no `grpc-timeout` is sent; the host sends none). Default: none. */
  callTimeoutMs?: number;
}

/** Number of parsed messages held before the HTTP/2 stream is paused (receive-side backpressure). */
const QUEUE_HIGH_WATER = 8;

type Waiter = { resolve: (value: Buffer | undefined) => void; reject: (err: unknown) => void };

/**
 * One gRPC call on an HTTP/2 stream. Reads mirror grpc-go's `Recv`: queued messages first, then `undefined` for an
 * OK end or a thrown GrpcError for any other status. Writes mirror `Send`: they wait for flow control and fail with
 * EofError once the server has ended the call.
 */
export class Call {
  /** Resolves with the final status once the call is over (never rejects). */
  readonly status: Promise<CallStatus>;
  /** Number of messages received so far. */
  received = 0;

  private queue: Buffer[] = [];
  private waiters: Waiter[] = [];
  private parser: FrameParser;
  private final?: CallStatus;
  private trailerStatus?: CallStatus;
  private resolveStatus!: (status: CallStatus) => void;
  private locallyCancelled = false;
  private halfClosed = false;
  private watchdog?: NodeJS.Timeout;
  private readonly endWaiters = new Set<() => void>();
  private readonly stream: http2.ClientHttp2Stream;
  private readonly connection: GrpcConnection;
  /** The method path of this call. */
  readonly path: string;

  constructor(stream: http2.ClientHttp2Stream, path: string, connection: GrpcConnection, maxReceive: number, timeoutMs?: number) {
    this.stream = stream;
    this.path = path;
    this.connection = connection;
    this.parser = new FrameParser(maxReceive);
    this.status = new Promise((resolve) => (this.resolveStatus = resolve));
    stream.on('response', (headers, flags) => this.onResponse(headers, flags));
    stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
      this.trailerStatus = statusFromHeaders(trailers);
      this.serverHasEnded();
    });
    stream.on('data', (chunk: Buffer) => {
      connection.received(chunk.length);
      this.onData(chunk);
    });
    stream.on('end', () => this.onEnd());
    stream.on('close', () => this.onClose());
    stream.on('error', () => {
      // The outcome is decided in 'close' from the trailers, the RST code or the session state.
    });
    if (timeoutMs !== undefined) {
      this.watchdog = setTimeout(() => {
        this.fail(new GrpcError(STATUS.DEADLINE_EXCEEDED, `harness watchdog: ${path} took over ${timeoutMs} ms`));
      }, timeoutMs);
    }
  }

  /** True once the final status is known. */
  get done(): boolean {
    return this.final !== undefined;
  }

  /** The final status, if known. */
  get finalStatus(): CallStatus | undefined {
    return this.final;
  }

  /** True when the server has sent its trailers (its side is over), even if queued messages remain unread. */
  get serverEnded(): boolean {
    return this.trailerStatus !== undefined || this.final !== undefined;
  }

  /** True once `halfClose()` was called. */
  get isHalfClosed(): boolean {
    return this.halfClosed;
  }

  /** Sends one message; resolves when HTTP/2 accepted it (after 'drain' if the window is full). */
  write(payload: Uint8Array): Promise<void> {
    if (this.halfClosed) return Promise.reject(new Error(`harness misuse: write after half-close on ${this.path}`));
    if (this.serverEnded || this.stream.destroyed || this.stream.closed) return Promise.reject(new EofError());
    const ok = this.stream.write(frameMessage(payload));
    if (ok) return Promise.resolve();
    // Like grpc-go's Send blocked on flow control: it returns io.EOF as soon as the server's status arrives.
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        this.stream.off('drain', onDrain);
        this.stream.off('close', onEnded);
        this.endWaiters.delete(onEnded);
      };
      const onDrain = (): void => {
        cleanup();
        resolve();
      };
      const onEnded = (): void => {
        cleanup();
        reject(new EofError());
      };
      this.stream.once('drain', onDrain);
      this.stream.once('close', onEnded);
      this.endWaiters.add(onEnded);
    });
  }

  /** Half-closes the request side (grpc-go `CloseSend`). */
  halfClose(): void {
    if (this.halfClosed) return;
    this.halfClosed = true;
    if (!this.stream.destroyed && !this.stream.closed) this.stream.end();
  }

  /** Sends one message and half-closes in the same step (what grpc-go does for unary and server-streaming calls). */
  writeLast(payload: Uint8Array): void {
    this.halfClosed = true;
    this.stream.end(frameMessage(payload));
  }

  /** Reads the next message; `undefined` at an OK end; throws GrpcError for a non-OK end. */
  read(): Promise<Buffer | undefined> {
    const next = this.queue.shift();
    if (next !== undefined) {
      this.maybeResume();
      return Promise.resolve(next);
    }
    if (this.final) {
      if (this.final.code === STATUS.OK) return Promise.resolve(undefined);
      return Promise.reject(new GrpcError(this.final.code, this.final.details));
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Iterates over every message until the end (throws like `read`). */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      const msg = await this.read();
      if (msg === undefined) return;
      yield msg;
    }
  }

  /** Cancels the call (RST_STREAM CANCEL), as grpc-go does when the call's context is cancelled. */
  cancel(): void {
    this.locallyCancelled = true;
    if (!this.stream.destroyed && !this.stream.closed) {
      this.stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    if (!this.final) this.finish({ code: STATUS.CANCELLED, details: 'context canceled', trailers: {} });
  }

  /** Reads and discards what is left, returning the final status (grpc-go's drain in `Close`). */
  async drain(): Promise<CallStatus> {
    for (;;) {
      try {
        const msg = await this.read();
        if (msg === undefined) break;
      } catch {
        break;
      }
    }
    return this.status;
  }

  private onResponse(headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader, flags: number): void {
    const httpStatus = Number(headers[':status']);
    const trailersOnly = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 || headers['grpc-status'] !== undefined;
    if (httpStatus !== 200) {
      this.fail(new GrpcError(httpStatusToCode(httpStatus), `unexpected HTTP status code received from server: ${httpStatus}`));
      return;
    }
    const contentType = String(headers['content-type'] ?? '');
    if (!/^application\/grpc($|[+;])/.test(contentType)) {
      this.fail(new GrpcError(STATUS.INTERNAL, `transport: received unexpected content-type "${contentType}"`));
      return;
    }
    if (trailersOnly) {
      this.trailerStatus = statusFromHeaders(headers);
      this.serverHasEnded();
    }
  }

  private serverHasEnded(): void {
    for (const waiter of [...this.endWaiters]) waiter();
  }

  private onData(chunk: Buffer): void {
    if (this.final) return;
    let messages: Buffer[];
    try {
      messages = this.parser.push(chunk);
    } catch (err) {
      this.fail(err instanceof GrpcError ? err : new GrpcError(STATUS.INTERNAL, String(err)));
      return;
    }
    for (const msg of messages) {
      this.received++;
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(msg);
      else this.queue.push(msg);
    }
    if (this.queue.length >= QUEUE_HIGH_WATER) this.stream.pause();
  }

  private maybeResume(): void {
    if (this.queue.length < QUEUE_HIGH_WATER && this.stream.isPaused() && !this.final) this.stream.resume();
  }

  private onEnd(): void {
    if (this.final) return;
    if (this.parser.pending > 0) {
      this.finish({ code: STATUS.INTERNAL, details: 'server closed the stream with an incomplete message', trailers: {} });
      return;
    }
    if (this.trailerStatus) this.finish(this.trailerStatus);
    // Without trailers the decision waits for 'close' (RST code, session state).
  }

  private onClose(): void {
    if (this.final) return;
    if (this.trailerStatus && this.parser.pending === 0) {
      this.finish(this.trailerStatus);
      return;
    }
    if (this.locallyCancelled) {
      this.finish({ code: STATUS.CANCELLED, details: 'context canceled', trailers: {} });
      return;
    }
    const session = this.stream.session;
    const dead = this.connection.deadReason ?? (!session || session.destroyed || session.closed ? 'error reading from server: EOF' : undefined);
    if (dead) {
      this.finish({ code: STATUS.UNAVAILABLE, details: dead, trailers: {} });
      return;
    }
    const rst = this.stream.rstCode;
    if (rst !== undefined && rst !== http2.constants.NGHTTP2_NO_ERROR) {
      this.finish({ code: rstToCode(rst), details: `stream terminated by RST_STREAM with error code: ${rstName(rst)}`, trailers: {} });
      return;
    }
    this.finish({ code: STATUS.INTERNAL, details: 'server closed the stream without sending trailers', trailers: {} });
  }

  /** Ends the call locally with `err` (like grpc-go failing `RecvMsg`) and resets the stream. */
  private fail(err: GrpcError): void {
    if (this.final) return;
    this.finish({ code: err.code, details: err.details, trailers: {} });
    if (!this.stream.destroyed && !this.stream.closed) this.stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  private finish(status: CallStatus): void {
    if (this.final) return;
    this.final = status;
    this.serverHasEnded();
    if (this.watchdog) clearTimeout(this.watchdog);
    this.connection.forget(this);
    const err = status.code === STATUS.OK ? undefined : new GrpcError(status.code, status.details);
    for (const waiter of this.waiters.splice(0)) {
      if (err) waiter.reject(err);
      else waiter.resolve(undefined);
    }
    this.resolveStatus(status);
  }

  /** Called by the connection when the transport dies. */
  transportDied(reason: string): void {
    if (this.final) return;
    this.finish({ code: STATUS.UNAVAILABLE, details: reason, trailers: {} });
  }
}

/**
 * A client connection over one Duplex, like the host's grpc-go ClientConn with its custom dialer: one HTTP/2 session,
 * no reconnection. Once the session dies, every call fails with UNAVAILABLE.
 */
export class GrpcConnection {
  /** Set when the transport is unusable: the text grpc-go would put in the UNAVAILABLE status. */
  deadReason?: string;
  /** True if the plugin sent GOAWAY (which breaks a real host for good). */
  goawayReceived = false;

  private readonly session: http2.ClientHttp2Session;
  private readonly ready: Promise<void>;
  private readonly calls = new Set<Call>();
  private readonly maxReceive: number;
  private readonly callTimeoutMs?: number;
  private gotSettings = false;
  private readonly bdp: BdpEstimator;
  /** The host side of the plugin's stdio. */
  readonly duplex: Duplex;

  /** Opens an HTTP/2 session over `duplex` (the connection preface is written at once). */
  constructor(duplex: Duplex, options: ConnectionOptions = {}) {
    this.duplex = duplex;
    this.maxReceive = options.maxReceiveMessage ?? MAX_RECEIVE_MESSAGE;
    this.callTimeoutMs = options.callTimeoutMs;
    duplex.on('error', () => {
      // Reported through the session's close.
    });
    this.session = http2.connect('http://127.0.0.1:0', {
      createConnection: () => duplex,
      settings: { enablePush: false },
      maxSessionMemory: 256,
    });
    this.bdp = new BdpEstimator(this.session);
    const settingsTimeout = options.settingsTimeoutMs ?? SETTINGS_TIMEOUT_MS;
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.die('connection error: desc = "error reading server preface: timed out waiting for the server SETTINGS"');
        reject(new GrpcError(STATUS.UNAVAILABLE, this.deadReason ?? 'timeout'));
      }, settingsTimeout);
      this.session.once('remoteSettings', () => {
        this.gotSettings = true;
        clearTimeout(timer);
        resolve();
      });
      this.session.once('close', () => {
        clearTimeout(timer);
        if (!this.gotSettings) reject(new GrpcError(STATUS.UNAVAILABLE, this.deadReason ?? 'error reading server preface: EOF'));
      });
    });
    this.ready.catch(() => {
      // Surfaced by the first call.
    });
    this.session.on('error', () => {
      // Reported through 'close'.
    });
    this.session.on('goaway', () => {
      this.goawayReceived = true;
      this.deadReason ??= 'the plugin sent GOAWAY; the host cannot reconnect (its dialer returns the same dead pipes)';
    });
    this.session.on('close', () => {
      this.die(this.gotSettings ? 'error reading from server: EOF' : 'connection error: desc = "error reading server preface: EOF"');
    });
  }

  /** Starts a call on `path` (e.g. `/store.Store/Get`); the request headers are the ones grpc-go sends. */
  async start(path: string): Promise<Call> {
    if (this.deadReason) throw new GrpcError(STATUS.UNAVAILABLE, this.deadReason);
    await this.ready;
    if (this.deadReason) throw new GrpcError(STATUS.UNAVAILABLE, this.deadReason);
    const stream = this.session.request(
      {
        ':method': 'POST',
        ':scheme': 'http',
        ':path': path,
        ':authority': '127.0.0.1:0',
        'content-type': 'application/grpc',
        'user-agent': USER_AGENT,
        te: 'trailers',
      },
      { endStream: false },
    );
    const call = new Call(stream, path, this, this.maxReceive, this.callTimeoutMs);
    this.calls.add(call);
    return call;
  }

  /** A unary call: one request, exactly one response message (grpc-go's cardinality checks), or a GrpcError. */
  async unary(path: string, request: Uint8Array): Promise<Buffer> {
    const call = await this.start(path);
    call.writeLast(request);
    const first = await call.read();
    if (first === undefined) {
      throw new GrpcError(STATUS.INTERNAL, 'cardinality violation: received no response message from non-server-streaming RPC');
    }
    const second = await call.read();
    if (second !== undefined) {
      call.cancel();
      throw new GrpcError(
        STATUS.INTERNAL,
        'cardinality violation: expected <EOF> for non server-streaming RPCs, but received another message',
      );
    }
    return first;
  }

  /** A server-streaming call: sends `request` with END_STREAM and returns the call to read from. */
  async serverStream(path: string, request: Uint8Array): Promise<Call> {
    const call = await this.start(path);
    call.writeLast(request);
    return call;
  }

  /** A client-streaming or bidi call: only the headers are sent; write, then `halfClose()`. */
  async stream(path: string): Promise<Call> {
    return this.start(path);
  }

  /** Completes a client-streaming call: half-closes and reads its single response (grpc-go `CloseAndRecv`). */
  async closeAndRecv(call: Call): Promise<Buffer> {
    call.halfClose();
    const first = await call.read();
    if (first === undefined) {
      throw new GrpcError(STATUS.INTERNAL, 'cardinality violation: received no response message from non-server-streaming RPC');
    }
    const rest = await call.drain();
    if (rest.code !== STATUS.OK) throw new GrpcError(rest.code, rest.details);
    return first;
  }

  /** Destroys the session and the duplex without GOAWAY, as when the host process exits. */
  close(): void {
    this.die('error reading from server: EOF');
    if (!this.session.destroyed) this.session.destroy();
    if (!this.duplex.destroyed) this.duplex.destroy();
  }

  /** True while the transport is usable. */
  get alive(): boolean {
    return this.deadReason === undefined;
  }

  /** Counts DATA bytes received, for grpc-go's bandwidth-delay-product window growth. */
  received(n: number): void {
    this.bdp.add(n);
  }

  /** The receive window the BDP estimator has set so far (65,535 until it grows). */
  get receiveWindow(): number {
    return this.bdp.window;
  }

  /** Removes a finished call from the live set. */
  forget(call: Call): void {
    this.calls.delete(call);
  }

  private die(reason: string): void {
    this.deadReason ??= reason;
    for (const call of [...this.calls]) call.transportDied(this.deadReason);
  }
}

/** grpc-go's bdpEstimator constants (internal/transport/bdp_estimator.go). */
const BDP_LIMIT = 16 * 1024 * 1024;
const BDP_ALPHA = 0.9;
const BDP_BETA = 0.66;
const BDP_GAMMA = 2;
const BDP_PING = Buffer.from([2, 4, 16, 16, 9, 14, 7, 7]);
const INITIAL_WINDOW = 65_535;

/**
 * grpc-go's client flow control (dynamic windows are on by default and the host sets no window): the first DATA
 * received after the last measurement sends a PING; the bytes received until its ACK are one sample; when a sample
 * reaches 2/3 of the estimate at the best bandwidth seen so far, the estimate becomes twice the sample (up to 16 MiB)
 * and both the connection window and every stream's initial window are raised to it (WINDOW_UPDATE + SETTINGS).
 */
class BdpEstimator {
  window = INITIAL_WINDOW;
  private sent = false;
  private sample = 0;
  private sampleCount = 0;
  private rtt = 0;
  private bwMax = 0;
  private readonly session: http2.ClientHttp2Session;

  constructor(session: http2.ClientHttp2Session) {
    this.session = session;
  }

  add(n: number): void {
    if (this.window === BDP_LIMIT) return;
    if (this.sent) {
      this.sample += n;
      return;
    }
    if (this.session.destroyed || this.session.closed) return;
    this.sent = true;
    this.sample = n;
    this.sampleCount++;
    const sentAt = performance.now();
    const ok = this.session.ping(BDP_PING, (err) => {
      if (err) return;
      this.calculate((performance.now() - sentAt) / 1000);
    });
    if (!ok) this.sent = false;
  }

  private calculate(rttSample: number): void {
    this.rtt += this.sampleCount < 10 ? (rttSample - this.rtt) / this.sampleCount : (rttSample - this.rtt) * BDP_ALPHA;
    this.sent = false;
    const bw = this.sample / (this.rtt * 1.5);
    if (bw > this.bwMax) this.bwMax = bw;
    if (this.sample >= BDP_BETA * this.window && bw === this.bwMax && this.window !== BDP_LIMIT) {
      const next = Math.min(BDP_LIMIT, Math.floor(BDP_GAMMA * this.sample));
      if (next <= this.window || this.session.destroyed || this.session.closed) return;
      this.window = next;
      try {
        this.session.setLocalWindowSize(next);
        this.session.settings({ initialWindowSize: next });
      } catch {
        // The session is going away.
      }
    }
  }
}

function statusFromHeaders(headers: http2.IncomingHttpHeaders): CallStatus {
  const raw = headers['grpc-status'];
  const message = headers['grpc-message'];
  const details = decodeGrpcMessage(Array.isArray(message) ? (message[0] ?? '') : (message ?? ''));
  if (raw === undefined) return { code: STATUS.UNKNOWN, details: details || 'missing grpc-status', trailers: headers };
  const code = Number(Array.isArray(raw) ? raw[0] : raw);
  if (!Number.isInteger(code) || code < 0) {
    return { code: STATUS.INTERNAL, details: `transport: malformed grpc-status: ${String(raw)}`, trailers: headers };
  }
  return { code, details, trailers: headers };
}

function httpStatusToCode(status: number): number {
  switch (status) {
    case 400:
      return STATUS.INTERNAL;
    case 401:
      return STATUS.UNAUTHENTICATED;
    case 403:
      return STATUS.PERMISSION_DENIED;
    case 404:
      return STATUS.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return STATUS.UNAVAILABLE;
    default:
      return STATUS.UNKNOWN;
  }
}

function rstToCode(code: number): number {
  const c = http2.constants;
  switch (code) {
    case c.NGHTTP2_CANCEL:
      return STATUS.CANCELLED;
    case c.NGHTTP2_REFUSED_STREAM:
      return STATUS.UNAVAILABLE;
    case c.NGHTTP2_ENHANCE_YOUR_CALM:
      return STATUS.RESOURCE_EXHAUSTED;
    case c.NGHTTP2_INADEQUATE_SECURITY:
      return STATUS.PERMISSION_DENIED;
    default:
      return STATUS.INTERNAL;
  }
}

function rstName(code: number): string {
  const names: Record<number, string> = {
    0: 'NO_ERROR',
    1: 'PROTOCOL_ERROR',
    2: 'INTERNAL_ERROR',
    3: 'FLOW_CONTROL_ERROR',
    5: 'STREAM_CLOSED',
    6: 'FRAME_SIZE_ERROR',
    7: 'REFUSED_STREAM',
    8: 'CANCEL',
    11: 'ENHANCE_YOUR_CALM',
  };
  return names[code] ?? `${code}`;
}
