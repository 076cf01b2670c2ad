// The S3 client: the AWS SDK client built from typed options, the retry classifier, error → SDK error mapping, listing and resumable reads.
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  S3Client,
  type BucketLocationConstraint,
  type GetObjectCommandOutput,
  type ListObjectsV2CommandOutput,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import {
  AuthError,
  describeError,
  isTransientNetworkError,
  KlosetError,
  NotFoundError,
  parseRetryAfter,
  RetriesExhaustedError,
  ServiceError,
  type ByteRange,
  type Classification,
  type ConnectorContext,
  type Logger,
  type Pacer,
} from '../../shared/index.ts';
import type { CommonValues, S3Location } from './options.ts';

// The SDK warns on every start under Node 20; the shipped executable embeds a current Node.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** User-Agent suffix sent with every request. */
const USER_AGENT = 'kloset-ts-s3/0.1.0';

/** A TCP connect taking longer than this is a failed attempt. */
const CONNECT_TIMEOUT_MS = 20_000;

/** S3 error codes meaning "slow down" (throttle every caller). */
const THROTTLE_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestLimitExceeded',
  'TooManyRequests',
  'TooManyRequestsException',
  'BandwidthLimitExceeded',
  'ServiceUnavailable',
  'EC2ThrottledException',
]);

/** S3 error codes worth another attempt. */
const TRANSIENT_CODES = new Set([
  'InternalError',
  'RequestTimeout',
  'RequestTimeoutException',
  'IncompleteBody',
  'BadDigest',
  'XAmzContentSHA256Mismatch',
  'OperationAborted',
  'TimeoutError',
  'PriorRequestNotComplete',
  'ServerError',
]);

/** Codes meaning the credentials are wrong or lack permission: retrying cannot help, the run stops. */
const AUTH_HINTS: Readonly<Record<string, string>> = {
  InvalidAccessKeyId: 'the access key is not known to the service (hint: check access_key)',
  SignatureDoesNotMatch: 'the request signature does not match (hint: check secret_access_key, and region for services outside AWS)',
  AccessDenied: 'access denied (hint: the credentials lack permission on this bucket or prefix; check access_key, secret_access_key and the bucket policy)',
  AllAccessDisabled: 'all access to this bucket has been disabled',
  AccountProblem: 'the account has a problem that prevents this operation',
  ExpiredToken: 'the session token has expired (hint: refresh session_token or the credential source)',
  InvalidToken: 'the session token is malformed or invalid (hint: check session_token)',
  TokenRefreshRequired: 'the session token must be refreshed',
  InvalidSecurity: 'the security credentials are not valid',
  AuthorizationHeaderMalformed: 'the authorization header is malformed (hint: check region)',
  NotSignedUp: 'the account is not signed up for S3',
  CredentialsProviderError: 'no credentials found (hint: set access_key and secret_access_key, or configure the AWS credential chain: AWS_* variables, profile, instance role)',
  Forbidden: 'access denied (hint: check access_key, secret_access_key and the permissions on this bucket)',
};

/** What the error reports about itself: its S3 code (or Node error code) and HTTP status. */
export function errorFacts(err: unknown): { code: string; status: number | undefined; message: string; retryAfter: string | undefined } {
  const e = (err ?? {}) as {
    name?: unknown;
    Code?: unknown;
    code?: unknown;
    message?: unknown;
    $metadata?: { httpStatusCode?: number };
    $response?: { statusCode?: number; headers?: Record<string, string | undefined> };
  };
  let code = typeof e.Code === 'string' ? e.Code : typeof e.code === 'string' ? e.code : typeof e.name === 'string' ? e.name : 'Error';
  const status = e.$metadata?.httpStatusCode ?? e.$response?.statusCode;
  if ((code === 'Unknown' || code === 'UnknownError' || code === 'Error' || code === 'S3ServiceException') && status !== undefined) {
    code = status === 404 ? 'NotFound' : status === 403 ? 'Forbidden' : status === 503 ? 'ServiceUnavailable' : `HTTP${status}`;
  }
  let message = typeof e.message === 'string' ? e.message : '';
  if (message === 'UnknownError' || message === code) message = '';
  return { code, status, message, retryAfter: e.$response?.headers?.['retry-after'] };
}

/**
 * True when the service refused the SSE-KMS key rather than the request's credentials: AWS answers `KMS.*` codes or
 * an AccessDenied naming a `kms:` action; Ceph answers InvalidAccessKeyId with "Failed to retrieve the actual key,
 * kms-keyid: …". That is about one key (sse_kms_key_id, or the key an object was written with), not the access key.
 */
export function isKmsRefusal(facts: { code: string; message: string }): boolean {
  return facts.code.startsWith('KMS.') || /\bkms[-:]|\bKMS key\b/i.test(facts.message);
}

function innermost(err: unknown): unknown {
  return err instanceof ServiceError && err.cause !== undefined ? err.cause : err;
}

/**
 * The S3 classifier for the pacer: SlowDown/503/429 throttle; 500/InternalError/RequestTimeout and network resets
 * transient; AccessDenied/InvalidAccessKeyId/SignatureDoesNotMatch (and other credential failures) fatal; the rest
 * (missing object, bad request) permanent.
 */
export function classify(err: unknown): Classification {
  if (err instanceof AuthError) return { kind: 'fatal' };
  const raw = innermost(err);
  const facts = errorFacts(raw);
  const { code, status, retryAfter } = facts;
  if (THROTTLE_CODES.has(code) || status === 429 || status === 503) return { kind: 'throttle', retryAfterMs: parseRetryAfter(retryAfter) };
  if (isKmsRefusal(facts)) return { kind: 'permanent' };
  if (code in AUTH_HINTS) return { kind: 'fatal' };
  // 501: the service lacks the feature (conditional PUT, tagging…); asking again cannot help.
  if (code === 'NotImplemented' || status === 501) return { kind: 'permanent' };
  if (TRANSIENT_CODES.has(code) || (status !== undefined && (status >= 500 || status === 408))) return { kind: 'transient' };
  if (isTransientNetworkError(raw)) return { kind: 'transient' };
  return { kind: 'permanent' };
}

function networkReason(code: string, message: string, host: string): string | undefined {
  switch (code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot resolve host ${JSON.stringify(host.replace(/:\d+$/, ''))} (hint: check location and endpoint)`;
    case 'ECONNREFUSED':
      return `connection refused by ${host} (hint: check location, endpoint, port and use_tls)`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${host} is unreachable (hint: check location and endpoint)`;
    case 'ECONNRESET':
      return `connection reset by ${host}`;
    case 'ETIMEDOUT':
    case 'TimeoutError':
      return `${host} did not answer in time`;
    case 'EPROTO':
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
      return `TLS handshake with ${host} failed: the service does not seem to speak TLS there (hint: use_tls=false for a plain-HTTP endpoint)`;
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'CERT_HAS_EXPIRED':
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `the TLS certificate of ${host} is not trusted (${code}) (hint: fix the certificate, or tls_insecure_no_verify=true for testing)`;
    default:
      if (/wrong version number|packet length too long/i.test(message)) {
        return `TLS handshake with ${host} failed: the service does not seem to speak TLS there (hint: use_tls=false for a plain-HTTP endpoint)`;
      }
      return undefined;
  }
}

/** Settings needed to build an S3 client, resolved from options. */
export interface ClientSettings {
  location: S3Location;
  options: CommonValues;
  /** Sockets per protocol (sized to the concurrency of the connector). */
  maxSockets: number;
}

/** One bucket behind the AWS SDK, with the pacer wrapped around every call and SDK errors mapped for the user. */
export class S3 {
  readonly client: S3Client;
  readonly loc: S3Location;
  readonly bucket: string;
  readonly prefix: string;
  readonly log: Logger;
  private readonly pacer: Pacer;
  private readonly quick: Pacer;
  private readonly signal: AbortSignal;
  private readonly maxAttempts: number;
  private readonly listChunk: number;
  private readonly agents: Array<http.Agent>;
  /** SSE-C parameters for every object request. */
  readonly ssec: { SSECustomerAlgorithm?: string; SSECustomerKey?: string };
  /** Requester-pays parameter for every object request. */
  readonly payer: { RequestPayer?: 'requester' };

  constructor(ctx: ConnectorContext<CommonValues>, settings: ClientSettings) {
    const o = settings.options;
    this.loc = settings.location;
    this.bucket = this.loc.bucket;
    this.prefix = this.loc.prefix;
    this.log = ctx.log;
    // One signal per client, followed by every request: it may have many listeners at once (one per request in flight).
    const abort = new AbortController();
    setMaxListeners(0, abort.signal);
    if (ctx.signal.aborted) abort.abort(ctx.signal.reason);
    else ctx.signal.addEventListener('abort', () => abort.abort(ctx.signal.reason), { once: true });
    this.signal = abort.signal;
    this.maxAttempts = o.maxRetries;
    this.listChunk = o.listChunk;
    this.pacer = ctx.pacer({ classify });
    // Probes at Init fail fast: a wrong endpoint should not keep the user waiting through a full backoff.
    this.quick = ctx.pacer({ classify, maxAttempts: Math.min(3, o.maxRetries), maxSleepMs: 2000 });
    const agentOptions = { keepAlive: true, maxSockets: settings.maxSockets, maxFreeSockets: settings.maxSockets, keepAliveMsecs: 15_000 };
    const httpAgent = new http.Agent(agentOptions);
    const httpsAgent = new https.Agent({ ...agentOptions, rejectUnauthorized: !o.tlsInsecureNoVerify });
    this.agents = [httpAgent, httpsAgent];
    const checksum = o.requestChecksum === 'when_supported' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED';
    const config: S3ClientConfig = {
      endpoint: this.loc.endpointUrl,
      region: this.loc.region,
      forcePathStyle: this.loc.forcePathStyle,
      followRegionRedirects: true,
      maxAttempts: 1,
      requestChecksumCalculation: checksum,
      responseChecksumValidation: checksum,
      customUserAgent: USER_AGENT,
      requestHandler: new NodeHttpHandler({
        httpAgent,
        httpsAgent,
        connectionTimeout: CONNECT_TIMEOUT_MS,
        // A socket idle for `timeout` (no byte either way) is a failed attempt: a stalled transfer is retried.
        socketTimeout: o.timeout,
      }),
    };
    if (o.accessKey !== undefined && o.secretAccessKey !== undefined) {
      config.credentials = { accessKeyId: o.accessKey, secretAccessKey: o.secretAccessKey, sessionToken: o.sessionToken };
    } else if (o.profile !== undefined) {
      config.profile = o.profile;
    }
    this.client = new S3Client(config);
    this.ssec = o.sseCustomerKey
      ? { SSECustomerAlgorithm: 'AES256', SSECustomerKey: Buffer.from(o.sseCustomerKey.trim(), 'base64') as unknown as string }
      : {};
    this.payer = o.requesterPays ? { RequestPayer: 'requester' } : {};
  }

  /** `s3://host/bucket/key` for messages. */
  url(key = ''): string {
    return `s3://${this.loc.host}/${this.bucket}${key ? `/${key}` : ''}`;
  }

  /** The full key of a name relative to the prefix. */
  key(name: string): string {
    return this.prefix + name;
  }

  /**
   * Runs one service call under the pacer (retries, throttling, connection cap) and maps any failure to an SDK error
   * whose message starts with `what` (e.g. `cannot read s3://host/bucket/key`).
   */
  async call<T>(what: string, op: (abortSignal: AbortSignal) => Promise<T>, options: { quick?: boolean } = {}): Promise<T> {
    const pacer = options.quick ? this.quick : this.pacer;
    try {
      return await pacer.call(
        what,
        async () => {
          try {
            return await op(this.signal);
          } catch (err) {
            throw this.translate(err);
          }
        },
        classify,
      );
    } catch (err) {
      throw this.finish(err, what);
    }
  }

  /** Maps an SDK or network error to an SDK error class; messages carry the cause only (the caller adds `what`). */
  translate(err: unknown): unknown {
    if (err instanceof KlosetError) return err;
    const facts = errorFacts(err);
    const { code, status } = facts;
    if (isKmsRefusal(facts)) {
      return new ServiceError(code, `the service refused the KMS key: ${facts.message.slice(0, 200)} (${code}) (hint: check sse_kms_key_id, and that these credentials may use that key)`, {
        cause: err,
        httpStatus: status,
      });
    }
    const auth = AUTH_HINTS[code];
    if (auth) return new AuthError(`${auth} (${code})`, { cause: err, denied: code === 'AccessDenied' || code === 'Forbidden' });
    if (code === 'NoSuchBucket') {
      return new NotFoundError(`bucket ${JSON.stringify(this.bucket)} does not exist (NoSuchBucket) (hint: check the location, or create the bucket)`, {
        cause: err,
      });
    }
    if (code === 'NoSuchKey' || code === 'NotFound') return new NotFoundError(`no such object (${code})`, { cause: err });
    if (code === 'InvalidObjectState') {
      return new ServiceError(code, 'the object is archived (GLACIER or DEEP_ARCHIVE) and must be restored before it can be read (InvalidObjectState)', {
        cause: err,
        httpStatus: status,
      });
    }
    const net = networkReason(code, facts.message, this.loc.host);
    if (net) return new ServiceError(code, net, { cause: err, httpStatus: status });
    const detail = facts.message && !/^<|^\s*$/.test(facts.message) ? `: ${facts.message.slice(0, 200)}` : '';
    const statusText = status !== undefined && !code.startsWith('HTTP') ? ` (HTTP ${status})` : '';
    return new ServiceError(code, `${code}${statusText}${detail || (code === 'Error' ? `: ${describeError(err)}` : '')}`, { cause: err, httpStatus: status });
  }

  /** Prefixes a translated error with `what` (retries-exhausted errors already carry it). */
  private finish(err: unknown, what: string): unknown {
    if (err instanceof RetriesExhaustedError) return err;
    if (err instanceof AuthError) return new AuthError(`${what}: ${err.message}`, { cause: err.cause, denied: err.code === 7 });
    if (err instanceof NotFoundError) return new NotFoundError(`${what}: ${err.message}`, { cause: err.cause });
    if (err instanceof ServiceError) return new ServiceError(err.serviceCode, `${what}: ${err.message}`, { cause: err.cause, httpStatus: err.httpStatus });
    if (err instanceof KlosetError) return err;
    const t = this.translate(err);
    return t instanceof KlosetError ? this.finish(t, what) : t;
  }

  /** Checks the bucket answers with these credentials (one cheap listing of the prefix); fails fast. */
  async probe(what: string): Promise<void> {
    const page = await this.call(
      what,
      (abortSignal) =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix || undefined, MaxKeys: 1, ...this.payer }), {
          abortSignal,
        }),
      { quick: true },
    );
    checkListing(page, what);
  }

  /** Creates the bucket when it does not exist (with the region's location constraint outside us-east-1). */
  async ensureBucket(): Promise<void> {
    try {
      await this.call(`cannot reach bucket ${this.url()}`, (abortSignal) => this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal }), {
        quick: true,
      });
      return;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    const region = this.loc.region;
    try {
      await this.call(`cannot create bucket ${this.url()}`, (abortSignal) =>
        this.client.send(
          new CreateBucketCommand({
            Bucket: this.bucket,
            CreateBucketConfiguration:
              region && region !== 'us-east-1' && /amazonaws\.com/.test(this.loc.host) ? { LocationConstraint: region as BucketLocationConstraint } : undefined,
          }),
          { abortSignal },
        ),
      );
      this.log.info('created the bucket', { bucket: this.bucket });
    } catch (err) {
      if (err instanceof ServiceError && (err.serviceCode === 'BucketAlreadyOwnedByYou' || err.serviceCode === 'BucketAlreadyExists')) {
        if (err.serviceCode === 'BucketAlreadyExists') throw err;
        return;
      }
      throw err;
    }
  }

  /** Every object under `prefix`, one ListObjectsV2 page at a time (the next page is fetched while this one is used). */
  async *listPages(prefix: string, signal?: AbortSignal): AsyncGenerator<ListedObject[]> {
    const what = `cannot list ${this.url(prefix)}`;
    const fetchPage = (token: string | undefined): Promise<ListObjectsV2CommandOutput> =>
      this.call(what, (abortSignal) =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix || undefined,
            ContinuationToken: token,
            EncodingType: 'url',
            MaxKeys: this.listChunk,
            ...this.payer,
          }),
          { abortSignal },
        ),
      );
    let next: Promise<ListObjectsV2CommandOutput> | undefined = fetchPage(undefined);
    while (next) {
      const page: ListObjectsV2CommandOutput = checkListing(await next, what);
      next = page.IsTruncated ? (page.NextContinuationToken ? fetchPage(page.NextContinuationToken) : undefined) : undefined;
      if (page.IsTruncated && !page.NextContinuationToken) {
        throw new ServiceError('InvalidListing', `${what}: the service said the listing is truncated but gave no continuation token`);
      }
      next?.catch(() => undefined);
      const out: ListedObject[] = [];
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        out.push({
          key: decodeListedKey(o.Key, page.EncodingType),
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
          etag: o.ETag,
          storageClass: o.StorageClass,
        });
      }
      yield out;
      if (signal?.aborted) return;
    }
  }

  /**
   * Streams an object (or a byte range of it). A connection that breaks mid-body is resumed with a ranged GET from
   * where it stopped (If-Match on the ETag, so a replaced object fails instead of mixing versions), up to max_retries.
   */
  async download(key: string, options: { range?: ByteRange; etag?: string; what?: string } = {}): Promise<Readable> {
    const what = options.what ?? `cannot read ${this.url(key)}`;
    const range = options.range;
    const get = (start: number, end: number | undefined, etag: string | undefined): Promise<GetObjectCommandOutput> =>
      this.call(what, (abortSignal) =>
        this.client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: key,
            Range: start > 0 || end !== undefined ? `bytes=${start}-${end ?? ''}` : undefined,
            IfMatch: etag,
            ...this.ssec,
            ...this.payer,
          }),
          { abortSignal },
        ),
      );
    const firstStart = range?.offset ?? 0;
    const lastByte = range ? range.offset + range.length - 1 : undefined;
    let first: GetObjectCommandOutput;
    try {
      first = await get(firstStart, lastByte, options.etag);
    } catch (err) {
      // A range that starts at or past the end of the object is an empty read, not an error.
      if (range && err instanceof ServiceError && (err.serviceCode === 'InvalidRange' || err.httpStatus === 416)) return Readable.from([]);
      throw err;
    }
    const expected = first.ContentLength;
    const etag = first.ETag ?? options.etag;
    const maxFailures = this.maxAttempts;
    const log = this.log;
    const self = this;
    async function* body(): AsyncGenerator<Buffer> {
      let stream = first.Body as Readable | undefined;
      let got = 0;
      let failures = 0;
      try {
        for (;;) {
          try {
            if (!stream) throw new ServiceError('EmptyBody', 'the service sent no body');
            // Pieces go on as they arrive (16–64 KiB socket reads): the SDK gathers them into its messages without
            // a copy of its own, and bytes already received are good even when the connection breaks after them.
            for await (const chunk of stream as AsyncIterable<Buffer>) {
              got += chunk.length;
              yield chunk;
            }
            if (expected !== undefined && got < expected) {
              throw Object.assign(new Error(`the connection closed after ${got} of ${expected} bytes`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
            }
            return;
          } catch (err) {
            stream?.destroy();
            stream = undefined;
            if (self.signal.aborted) throw err;
            const c = classify(err);
            failures++;
            if ((c.kind !== 'transient' && c.kind !== 'throttle') || failures >= maxFailures) {
              const t = self.translate(err);
              throw t instanceof KlosetError ? self.finish(t, `${what} (after ${got} bytes, ${failures} attempts)`) : t;
            }
            log.debug('resuming an interrupted read', { key, offset: firstStart + got, attempt: failures, cause: describeError(err) });
            await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** failures)));
            const r = await get(firstStart + got, lastByte, etag);
            stream = r.Body as Readable | undefined;
          }
        }
      } finally {
        stream?.destroy();
      }
    }
    return Readable.from(body(), { objectMode: false, highWaterMark: 1024 * 1024 });
  }

  /** Closes open sockets; the client stays usable (new calls open new connections). */
  releaseSockets(): void {
    for (const a of this.agents) a.destroy();
  }
}

/** One object of a listing. */
export interface ListedObject {
  key: string;
  size: number;
  lastModified: Date;
  etag: string | undefined;
  storageClass: string | undefined;
}

/** Decodes a key of a listing made with EncodingType=url (`+` is a space, as Go's url.QueryUnescape reads it). */
export function decodeListedKey(key: string, encodingType: string | undefined): string {
  if (encodingType !== 'url') return key;
  try {
    return decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    return key;
  }
}

/** Sockets for a connector whose calls run `parallel` at a time. */
export function socketsFor(parallel: number): number {
  return Math.max(16, parallel + 8);
}

/**
 * A listing answer that is not a ListBucketResult (an HTML portal page, an empty 200 from a proxy) parses as an empty
 * page; every S3 implementation names the bucket in a real one, so its absence is refused instead of read as "no objects".
 */
function checkListing(page: ListObjectsV2CommandOutput, what: string): ListObjectsV2CommandOutput {
  if (page.Name === undefined && page.KeyCount === undefined && page.Contents === undefined) {
    throw new ServiceError('InvalidListing', `${what}: the answer is not an S3 listing (no ListBucketResult); check that the endpoint is an S3 service`);
  }
  return page;
}
