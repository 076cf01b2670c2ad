// Shared connector runtime: the per-process state every server uses (init once, scope, shutdown signal, close hooks).
import type { ConnectorContext, ConnectorDefinition, ConnectorKind, HostOptions, Integration } from '../define.ts';
import { siblingKeys } from '../define.ts';
import { KlosetError } from '../errors.ts';
import { log, setLogScope } from '../log.ts';
import { parseConfig } from '../options/parse.ts';
import { redactor } from '../redact.ts';
import { Pacer, type PacerOptions } from '../retry/pacer.ts';
import { status } from '@grpc/grpc-js';

/** Thrown when an RPC other than Init/Ping/Close arrives before a successful Init. */
export class NotInitialisedError extends KlosetError {
  override name = 'NotInitialisedError';
  constructor(method: string) {
    super(`${method} called before a successful Init`, status.FAILED_PRECONDITION);
  }
}

/** Per-process connector state shared by a server's handlers. */
export class ConnectorRuntime<I> {
  /** `<integration> <kind>`, the prefix of every status message. */
  readonly scope: string;
  readonly abort = new AbortController();
  instance: I | undefined;
  /** The parsed options of the successful Init. */
  options: Record<string, unknown> = {};
  private initialising: Promise<I> | undefined;
  private closed = false;

  readonly integration: Integration;
  readonly kind: ConnectorKind;
  readonly def: ConnectorDefinition;

  constructor(integration: Integration, kind: ConnectorKind, def: ConnectorDefinition) {
    this.integration = integration;
    this.kind = kind;
    this.def = def;
    this.scope = `${integration.name} ${kind}`;
    setLogScope(`${integration.name}/${kind}`);
  }

  /** Parses the config and runs the author's init once; a second Init gets the first one's result. */
  init(proto: string, config: Record<string, string>, host: HostOptions | undefined): Promise<I> {
    this.initialising ??= (async () => {
      const options = parseConfig(this.def.options, config, { siblingKeys: siblingKeys(this.integration, this.kind) });
      const maxRetries = (options as { maxRetries?: number }).maxRetries;
      const ctx: ConnectorContext<typeof options> = {
        integration: this.integration.name,
        kind: this.kind,
        proto,
        options,
        host,
        log,
        signal: this.abort.signal,
        pacer: (o?: PacerOptions) => new Pacer({ maxAttempts: maxRetries, signal: this.abort.signal, log, ...o }),
        addSecret: (v: string) => redactor.add(v),
      };
      const instance = (await (this.def.init as (c: typeof ctx) => Promise<unknown>)(ctx)) as I;
      this.options = options as Record<string, unknown>;
      this.instance = instance;
      return instance;
    })();
    // A failed Init leaves the process uninitialised, so a corrected Init can follow (the host never retries; tools may).
    this.initialising.catch(() => {
      this.initialising = undefined;
    });
    return this.initialising;
  }

  /** The instance, or NotInitialisedError. */
  require(method: string): I {
    if (this.instance === undefined) throw new NotInitialisedError(method);
    return this.instance;
  }

  /** Cleanups the SDK itself registered (caches), run after the instance's own close. */
  readonly cleanups: Array<() => Promise<void>> = [];

  /** Runs the instance's close once (on Close, and again harmlessly on EOF). Later calls still work (PROTOCOL.md §9). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const inst = this.instance as { close?: () => Promise<void> } | undefined;
    try {
      await inst?.close?.();
    } finally {
      for (const c of this.cleanups) await c().catch(() => undefined);
    }
  }

  /** Shutdown: abort pending work and close (idempotent). */
  async shutdown(): Promise<void> {
    this.abort.abort(new Error('shutting down'));
    await this.close().catch((err: unknown) => log.debug(`close during shutdown failed: ${String(err)}`));
  }
}

/** Host options from an importer/exporter InitRequest.options (protobufjs message). */
export function hostOptionsFrom(msg: Record<string, unknown> | null | undefined): HostOptions {
  const m = (msg ?? {}) as {
    hostname?: string;
    os?: string;
    arch?: string;
    cwd?: string;
    maxconcurrency?: unknown;
    excludes?: string[];
    noxattr?: boolean;
  };
  const mc = Number(typeof m.maxconcurrency === 'object' && m.maxconcurrency !== null ? String(m.maxconcurrency) : (m.maxconcurrency ?? 0));
  return {
    hostname: m.hostname ?? '',
    os: m.os ?? '',
    arch: m.arch ?? '',
    cwd: m.cwd ?? '',
    maxConcurrency: Number.isFinite(mc) && mc >= 1 ? Math.floor(mc) : 1,
    excludes: [...(m.excludes ?? [])],
    noXattr: m.noxattr === true,
  };
}

/** The config map of an InitRequest (protobufjs gives a plain object for map fields). */
export function configFrom(msg: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((msg ?? {}) as Record<string, unknown>)) out[k] = String(v);
  return out;
}
