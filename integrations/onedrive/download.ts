// Downloads through pre-authenticated URLs: ranged, resumed after a broken connection from the byte where it stopped,
// a stale URL replaced, and whole files checked against the hashes Graph reported while they stream.
import { createHash, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describeError } from '../../shared/index.ts';
import type { Hashes } from './api.ts';
import { classify, errorFromResponse, networkError, OneDriveError, type GraphClient } from './client.ts';
import { QuickXorHash } from './quickxorhash.ts';

/** What to download. */
export interface DownloadSpec {
  /**
   * The action and subject for messages (`cannot read packfile …`); leave it out where the caller's own prefix names
   * the file already (the SDK's Open says `cannot read <path>:`).
   */
  what?: string;
  /** Gives a pre-authenticated URL; called again when one goes stale. */
  resolveUrl(): Promise<string>;
  /** First byte (default 0). */
  offset?: number;
  /** Bytes wanted (default: to the end). */
  length?: number;
  /** For a whole file: the size and hashes to check (any given hash is verified). */
  expect?: { size: number; hashes?: Hashes };
}

/** Statuses of a pre-authenticated URL that mean "ask Graph for a new one". */
const STALE_STATUSES = new Set([401, 403, 404, 410]);

/** The bytes of `spec` as a stream; an error ends the stream (mismatched hash, gone item, retries exhausted). */
export function download(g: GraphClient, spec: DownloadSpec, maxAttempts: number): Readable {
  const label = spec.what ?? 'download';
  const prefixed = (message: string): string => (spec.what ? `${spec.what}: ${message}` : message);
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(g.signal.reason);
  async function* run(): AsyncGenerator<Buffer> {
    // Registered here, not before: a stream destroyed before its first read never runs this generator's finally.
    g.signal.addEventListener('abort', onAbort, { once: true });
    const start = spec.offset ?? 0;
    const end = spec.length !== undefined ? start + spec.length : spec.expect?.size;
    if (end !== undefined && end <= start) return;
    const verify = spec.expect && start === 0 && spec.length === undefined ? new Verifier(spec.expect.hashes) : undefined;
    let url: string | undefined;
    let offset = start;
    let broken = 0;
    let staleRefreshes = 0;
    try {
      for (;;) {
        url ??= await spec.resolveUrl();
        const res = await open(url, offset, end);
        if (res === 'stale') {
          if (staleRefreshes++ >= 2) {
            throw new OneDriveError('itemChanged', prefixed('the file changed or was deleted while it was read'));
          }
          url = undefined;
          continue;
        }
        let ended = false;
        try {
          for await (const piece of bodyWithIdleTimeout(res, g.timeoutMs)) {
            let chunk = piece;
            if (end !== undefined && offset + chunk.length > end) chunk = chunk.subarray(0, end - offset);
            if (chunk.length === 0) continue;
            verify?.update(chunk);
            offset += chunk.length;
            staleRefreshes = 0;
            yield chunk;
            if (end !== undefined && offset >= end) break;
          }
          ended = true;
        } catch (err) {
          if (controller.signal.aborted || g.signal.aborted) throw err;
          broken++;
          if (broken >= maxAttempts) {
            throw new OneDriveError('network', prefixed(`the connection broke ${broken} times; gave up at byte ${offset}: ${describeError(err)}`), { cause: err });
          }
          g.log.debug('download interrupted; resuming', { what: label, offset, cause: describeError(err) });
          await sleep(Math.min(10_000, 200 * 2 ** (broken - 1)));
          continue;
        }
        if (ended && (end === undefined || offset >= end)) break;
        if (ended && end !== undefined && offset < end) {
          // The server closed the body early: ask for the rest.
          broken++;
          if (broken >= maxAttempts) throw new OneDriveError('network', prefixed(`the download kept ending early at byte ${offset} of ${end}`));
        }
      }
      if (spec.expect && verify) verify.check(prefixed, spec.expect.size);
    } finally {
      g.signal.removeEventListener('abort', onAbort);
      controller.abort();
    }
  }

  /** GETs `url` from `offset`; 'stale' when the URL must be replaced. Retries through the pacer. */
  async function open(url: string, offset: number, end: number | undefined): Promise<Response | 'stale'> {
    return g.pacer.call(
      label,
      async () => {
        const headers: Record<string, string> = {};
        if (offset > 0 || end !== undefined) headers.range = `bytes=${offset}-${end !== undefined ? end - 1 : ''}`;
        let res: Response;
        try {
          res = await fetchWithHeaderTimeout(url, headers, g.timeoutMs, controller);
        } catch (err) {
          throw networkError(err, g.signal);
        }
        if (STALE_STATUSES.has(res.status)) {
          await res.body?.cancel().catch(() => undefined);
          return 'stale' as const;
        }
        if (res.status === 416) {
          await res.body?.cancel().catch(() => undefined);
          throw new OneDriveError('rangeNotSatisfiable', `the file is shorter than expected (asked for bytes from ${offset})`, { httpStatus: 416 });
        }
        if (!res.ok) throw await errorFromResponse(res);
        if (offset > 0 && res.status !== 206) {
          await res.body?.cancel().catch(() => undefined);
          throw new OneDriveError('rangeIgnored', 'the download server ignored the Range header', { httpStatus: res.status });
        }
        return res;
      },
      classify,
    );
  }

  const stream = Readable.from(run(), { objectMode: false, highWaterMark: 1024 * 1024 });
  stream.on('close', () => controller.abort());
  return stream;
}

/** fetch with a timeout on the response headers only (the body has its own idle timeout). */
async function fetchWithHeaderTimeout(url: string, headers: Record<string, string>, timeoutMs: number, controller: AbortController): Promise<Response> {
  const local = new AbortController();
  const timer = setTimeout(() => local.abort(new DOMException('no response headers in time', 'TimeoutError')), timeoutMs);
  const onOuter = (): void => local.abort(controller.signal.reason);
  controller.signal.addEventListener('abort', onOuter, { once: true });
  try {
    return await fetch(url, { headers, signal: local.signal });
  } finally {
    clearTimeout(timer);
    controller.signal.removeEventListener('abort', onOuter);
  }
}


/** The body's chunks; fails when no byte arrives for `idleMs`. */
async function* bodyWithIdleTimeout(res: Response, idleMs: number): AsyncGenerator<Buffer> {
  if (!res.body) return;
  const reader = res.body.getReader();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no data for ${Math.round(idleMs / 1000)}s`)), idleMs);
      });
      let next: Awaited<ReturnType<typeof reader.read>>;
      try {
        next = await Promise.race([reader.read(), idle]);
      } finally {
        clearTimeout(timer);
      }
      if (next.done) return;
      const v = next.value;
      yield Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    }
  } finally {
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Hashes a stream as it passes and compares with what Graph reported. */
export class Verifier {
  private readonly qx: QuickXorHash | undefined;
  private readonly sha1: Hash | undefined;
  private readonly sha256: Hash | undefined;
  private readonly expected: Hashes;
  private size = 0;

  constructor(expected: Hashes = {}) {
    this.expected = expected;
    this.qx = expected.quickXorHash ? new QuickXorHash() : undefined;
    this.sha1 = expected.sha1Hash ? createHash('sha1') : undefined;
    this.sha256 = expected.sha256Hash ? createHash('sha256') : undefined;
  }

  update(chunk: Buffer): void {
    this.size += chunk.length;
    this.qx?.update(chunk);
    this.sha1?.update(chunk);
    this.sha256?.update(chunk);
  }

  /** Throws when the size or a reported hash does not match. */
  check(prefixed: (message: string) => string, size: number): void {
    const bad: string[] = [];
    if (this.size !== size) bad.push(`size ${this.size} instead of ${size}`);
    if (this.qx && this.qx.digestBase64() !== this.expected.quickXorHash) bad.push('quickXorHash');
    if (this.sha1 && this.sha1.digest('hex').toUpperCase() !== this.expected.sha1Hash?.toUpperCase()) bad.push('sha1Hash');
    if (this.sha256 && this.sha256.digest('hex').toUpperCase() !== this.expected.sha256Hash?.toUpperCase()) bad.push('sha256Hash');
    if (bad.length > 0) {
      throw new OneDriveError(
        'hashMismatch',
        prefixed(`the downloaded content does not match what OneDrive reported (${bad.join(', ')}); the file changed during the backup or the download was corrupted`),
      );
    }
  }
}
