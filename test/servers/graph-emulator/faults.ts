// Test controls of the Graph emulator: throttling, failures, dropped connections and request counting.

/** Which part of the emulator a request reached. */
export type RequestKind = 'graph' | 'token' | 'upload' | 'download';

/** What a fault rule sees of a request. */
export interface RequestInfo {
  kind: RequestKind;
  method: string;
  /** Path without the query, e.g. `/v1.0/drives/x/root/delta` or `/upload/abc`. */
  path: string;
  /** Arrival number of the request (1, 2, 3…), to spread faults over requests. */
  seq: number;
}

/** A predicate selecting requests for a fault. */
export type RequestMatch = (r: RequestInfo) => boolean;

/** What a fault does. */
export type FaultAction =
  /** Answer with this status and a Graph error body (and Retry-After in seconds when given). */
  | { type: 'status'; status: number; code: string; message?: string; retryAfter?: number }
  /**
   * Close the connection: at once, after `afterBytes` of the response (downloads) or of the request body (uploads:
   * the fragment is lost), or, with `afterCommit`, after an upload fragment was stored but before the reply.
   */
  | { type: 'drop'; afterBytes?: number; afterCommit?: boolean }
  /** Wait before answering normally. */
  | { type: 'delay'; ms: number }
  /** Uploads: store the body with its first byte flipped, as if it had been damaged on the way in. */
  | { type: 'corrupt' };

interface Rule {
  remaining: number;
  match: RequestMatch;
  action: FaultAction;
}

/** One logged request. */
export interface LoggedRequest extends RequestInfo {
  status: number;
  query: string;
  /** Range or Content-Range header, when present. */
  range?: string;
  /** The SdkVersion header the Graph client's TelemetryHandler adds (proof that its middleware chain sent the request). */
  sdkVersion?: string;
  /** Whether an Authorization header came with the request. */
  authorized: boolean;
}

/** Fault rules (consumed in order) and counters. */
export class Faults {
  private rules: Rule[] = [];
  /** Every request, in arrival order. */
  readonly log: LoggedRequest[] = [];

  /** Adds a rule for the next `count` matching requests. */
  add(count: number, action: FaultAction, match: RequestMatch = () => true): void {
    this.rules.push({ remaining: count, match, action });
  }

  /** The action for `r`, consuming one use of the first matching rule. */
  take(r: RequestInfo): FaultAction | undefined {
    for (const rule of this.rules) {
      if (rule.remaining > 0 && rule.match(r)) {
        rule.remaining--;
        if (rule.remaining === 0) this.rules = this.rules.filter((x) => x !== rule);
        return rule.action;
      }
    }
    return undefined;
  }

  /** Drops every pending rule. */
  clear(): void {
    this.rules = [];
  }

  /** Rules not yet used up. */
  get pending(): number {
    return this.rules.reduce((n, r) => n + r.remaining, 0);
  }

  /** Requests so far, optionally only those matching. */
  count(match?: (r: LoggedRequest) => boolean): number {
    return match ? this.log.filter(match).length : this.log.length;
  }
}
