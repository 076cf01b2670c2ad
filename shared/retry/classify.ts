// The retry vocabulary: how a service error is classified, Retry-After parsing, and common network/HTTP classes.

/** What to do about a failed call. */
export type Classification =
  /** Transient failure: retry with backoff. */
  | { kind: 'transient' }
  /** The service asks us to slow down: retry after `retryAfterMs` (or backoff), and pace every caller. */
  | { kind: 'throttle'; retryAfterMs?: number }
  /** Stop the whole run (auth revoked, quota full). */
  | { kind: 'fatal' }
  /** This call will never succeed (missing object, bad request): fail it now. */
  | { kind: 'permanent' };

/** A per-integration function from any thrown value to a Classification. */
export type Classifier = (err: unknown) => Classification;

/** Parses a Retry-After header (seconds, or an HTTP date) into milliseconds from `now`; undefined when absent or bad. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const t = value.trim();
  if (t === '') return undefined;
  if (/^\d+(?:\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000);
  const date = Date.parse(t);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND_TEMPORARY',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_SESSION_ERROR',
]);

/** True for network-level failures worth retrying (resets, timeouts, refused connections, premature close). */
export function isTransientNetworkError(err: unknown): boolean {
  let cur: unknown = err;
  for (let depth = 0; cur && depth < 5; depth++) {
    const e = cur as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown };
    if (typeof e.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
    if (e.name === 'TimeoutError') return true;
    if (typeof e.message === 'string' && /socket hang up|other side closed|premature close|network socket disconnected|read ECONNRESET|aborted/i.test(e.message)) {
      return true;
    }
    cur = e.cause;
  }
  return false;
}

/** Classification of an HTTP status alone: 408/425/5xx transient, 429 and 503 throttle, other 4xx permanent. */
export function classifyHttpStatus(status: number, retryAfter?: string | null): Classification | undefined {
  if (status === 429 || status === 503) return { kind: 'throttle', retryAfterMs: parseRetryAfter(retryAfter) };
  if (status === 408 || status === 425 || status >= 500) return { kind: 'transient' };
  if (status >= 400) return { kind: 'permanent' };
  return undefined;
}

/** The default classifier: network errors transient, HTTP statuses by `classifyHttpStatus`, anything else permanent. */
export const defaultClassifier: Classifier = (err) => {
  if (isTransientNetworkError(err)) return { kind: 'transient' };
  const e = err as { status?: unknown; statusCode?: unknown; $metadata?: { httpStatusCode?: number } };
  const status =
    typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : e?.$metadata?.httpStatusCode;
  if (typeof status === 'number') return classifyHttpStatus(status) ?? { kind: 'permanent' };
  return { kind: 'permanent' };
};
