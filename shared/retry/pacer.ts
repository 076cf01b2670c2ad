// The pacer: one retry layer for every service call — backoff with jitter, Retry-After, shared throttling, a connection cap.
import pLimit from 'p-limit';
import { describeError, FatalError, KlosetError, ServiceError } from '../errors.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { defaultClassifier, type Classifier } from './classify.ts';

/** Settings of one pacer. */
export interface PacerOptions {
  /** Attempts per call, including the first (default 10). */
  maxAttempts?: number;
  /** First backoff step in ms (default 200). */
  minSleepMs?: number;
  /** Longest backoff step in ms (default 30 s). */
  maxSleepMs?: number;
  /** Longest Retry-After honoured in ms (default 10 min); longer waits fail the call. */
  maxRetryAfterMs?: number;
  /** Calls in flight at most (default unlimited). */
  connections?: number;
  /** The service's classifier (default: network and HTTP classes). */
  classify?: Classifier;
  /** Aborts every pending wait. */
  signal?: AbortSignal;
  /** Logger for retries (debug) and the first throttling episode (info). */
  log?: Logger;
  /** Random source in [0,1) for jitter (tests). */
  random?: () => number;
}

/** Thrown when a call still fails after every attempt; the message says how many, how long, and the last cause. */
export class RetriesExhaustedError extends ServiceError {
  override name = 'RetriesExhaustedError';
  /** The error of the last attempt. */
  readonly last: unknown;
  constructor(what: string, attempts: number, elapsedMs: number, last: unknown) {
    const code = last instanceof ServiceError ? last.serviceCode : 'retries-exhausted';
    super(code, `${what}: gave up after ${attempts} attempts over ${(elapsedMs / 1000).toFixed(1)}s: ${describeError(last)}`, {
      cause: last,
      httpStatus: last instanceof ServiceError ? last.httpStatus : undefined,
    });
    this.last = last;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason ?? new Error('aborted'));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason ?? new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Runs service calls with retries and pacing; integrations create one per client. */
export class Pacer {
  private readonly maxAttempts: number;
  private readonly minSleep: number;
  private readonly maxSleep: number;
  private readonly maxRetryAfter: number;
  private readonly classify: Classifier;
  private readonly limit: ReturnType<typeof pLimit> | undefined;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly signal: AbortSignal | undefined;
  /** Shared delay imposed on every call while the service throttles; decays on success. */
  private paceMs = 0;
  private pausedUntil = 0;
  private throttledOnce = false;

  constructor(options: PacerOptions = {}) {
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 10);
    this.minSleep = options.minSleepMs ?? 200;
    this.maxSleep = options.maxSleepMs ?? 30_000;
    this.maxRetryAfter = options.maxRetryAfterMs ?? 600_000;
    this.classify = options.classify ?? defaultClassifier;
    this.limit = options.connections && options.connections > 0 ? pLimit(options.connections) : undefined;
    this.log = options.log ?? rootLog;
    this.random = options.random ?? Math.random;
    this.signal = options.signal;
  }

  /**
   * Calls `fn` until it succeeds, the classifier says fatal/permanent, or attempts run out.
   * `what` names the operation and its subject for messages, e.g. `GET s3://bucket/key`.
   */
  call<T>(what: string, fn: (attempt: number) => Promise<T>, classify?: Classifier): Promise<T> {
    const run = (): Promise<T> => this.attempts(what, fn, classify ?? this.classify);
    return this.limit ? this.limit(run) : run();
  }

  private async attempts<T>(what: string, fn: (attempt: number) => Promise<T>, classify: Classifier): Promise<T> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      const wait = Math.max(this.pausedUntil - Date.now(), 0) + this.paceMs;
      if (wait > 0) await sleep(wait, this.signal);
      try {
        const value = await fn(attempt);
        this.paceMs = Math.floor(this.paceMs / 2);
        return value;
      } catch (err) {
        if (this.signal?.aborted) throw err;
        if (err instanceof KlosetError && !(err instanceof ServiceError)) throw err;
        const c = classify(err);
        if (c.kind === 'fatal') throw err instanceof KlosetError ? err : new FatalError(`${what}: ${describeError(err)}`, { cause: err });
        if (c.kind === 'permanent') throw err;
        if (attempt >= this.maxAttempts) throw new RetriesExhaustedError(what, attempt, Date.now() - started, err);
        const backoff = Math.min(this.maxSleep, this.minSleep * 2 ** (attempt - 1));
        let delay = Math.round(backoff / 2 + (this.random() * backoff) / 2);
        if (c.kind === 'throttle') {
          if (c.retryAfterMs !== undefined) {
            if (c.retryAfterMs > this.maxRetryAfter) {
              throw new RetriesExhaustedError(what, attempt, Date.now() - started, err);
            }
            delay = Math.max(c.retryAfterMs, 0);
            this.pausedUntil = Math.max(this.pausedUntil, Date.now() + delay);
          }
          this.paceMs = Math.min(this.maxSleep, Math.max(this.minSleep, this.paceMs * 2));
          if (!this.throttledOnce) {
            this.throttledOnce = true;
            this.log.info(`the service is throttling requests; slowing down`, { what, delayMs: delay });
          }
        }
        if (this.log.enabled('debug')) {
          this.log.debug(`retrying after error`, { what, attempt, delayMs: delay, cause: describeError(err) });
        }
        await sleep(delay, this.signal);
      }
    }
  }
}
