// The SDK's error vocabulary: integrations throw these; only the SDK turns them into gRPC statuses and text.
import { status } from '@grpc/grpc-js';

/** One problem with one configuration key. */
export interface ConfigProblem {
  /** The config key concerned (snake_case, as the user wrote it). */
  key: string;
  /** What was wrong, e.g. `expected a size such as 16MiB, got "abc"`. */
  message: string;
}

/**
 * Base class of every SDK error; `code` is the gRPC status the SDK will send.
 *
 * Every error class names itself (`override name = '…'`): the executables' bundles are built without esbuild's
 * keepNames (scripts/build-sea.ts), where a class renamed to avoid a clash between modules would otherwise be called
 * `ServiceError2`.
 */
export class KlosetError extends Error {
  override name = 'KlosetError';
  /** gRPC status code used when this error ends an RPC. */
  readonly code: status;
  constructor(message: string, code: status, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** A bad configuration: lists every problem found, each naming its key. */
export class ConfigError extends KlosetError {
  override name = 'ConfigError';
  /** Every problem, in declaration order. */
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[] | ConfigProblem | string, message?: string) {
    const list =
      typeof problems === 'string'
        ? [{ key: problems, message: message ?? 'invalid value' }]
        : Array.isArray(problems)
          ? problems
          : [problems];
    super(list.map((p) => `option ${p.key}: ${p.message}`).join('; '), status.INVALID_ARGUMENT);
    this.problems = list;
  }
}

/** Credentials were refused or are missing. */
export class AuthError extends KlosetError {
  override name = 'AuthError';
  constructor(message: string, options?: { cause?: unknown; denied?: boolean }) {
    super(message, options?.denied ? status.PERMISSION_DENIED : status.UNAUTHENTICATED, options);
  }
}

/** The thing asked for does not exist (repository, object, bucket…). */
export class NotFoundError extends KlosetError {
  override name = 'NotFoundError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, status.NOT_FOUND, options);
  }
}

/** The service's quota or a storage limit is exhausted; retrying will not help. */
export class QuotaError extends KlosetError {
  override name = 'QuotaError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, status.RESOURCE_EXHAUSTED, options);
  }
}

/** The service answered with an error; `serviceCode` is its own code (`SlowDown`, `itemNotFound`…). */
export class ServiceError extends KlosetError {
  override name = 'ServiceError';
  /** The service's own error code, quoted in the message. */
  readonly serviceCode: string;
  /** HTTP status or protocol status when there is one. */
  readonly httpStatus: number | undefined;
  constructor(serviceCode: string, message: string, options?: { cause?: unknown; httpStatus?: number }) {
    super(message, status.UNKNOWN, options);
    this.serviceCode = serviceCode;
    this.httpStatus = options?.httpStatus;
  }
}

/** A problem with one item only: it becomes that item's error record or result, and the run goes on. */
export class ItemError extends KlosetError {
  override name = 'ItemError';
  /** The path of the item concerned. */
  readonly path: string;
  constructor(path: string, cause: unknown) {
    super(describeError(cause), status.UNKNOWN, { cause });
    this.path = path;
  }
}

/** The run must stop: a failure that later items would hit too (auth revoked, quota full). */
export class FatalError extends KlosetError {
  override name = 'FatalError';
  constructor(message: string, options?: { cause?: unknown; code?: status }) {
    super(message, options?.code ?? status.UNKNOWN, options);
  }
}

/** Message of any thrown value, without `Error:` prefixes or stacks, on one line. */
export function describeError(err: unknown): string {
  let text: string;
  if (err instanceof Error) text = err.message || err.name;
  else if (typeof err === 'string') text = err;
  else {
    try {
      text = JSON.stringify(err) ?? String(err);
    } catch {
      text = String(err);
    }
  }
  return text.replace(/\s*\n\s*/g, ' ').replace(/^(?:Error:\s*)+/, '').trim() || 'unknown error';
}

/** gRPC status for any thrown value: SDK errors carry theirs, anything else is INTERNAL. */
export function statusOf(err: unknown): status {
  if (err instanceof KlosetError) return err.code;
  return status.INTERNAL;
}
