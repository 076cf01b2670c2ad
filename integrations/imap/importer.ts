// The imap importer: every mailbox as a directory, every message as `<UID>[,<flags>][-<subject>].eml` read with BODY.PEEK[] (bodies.ts).
import type { FetchMessageObject, ListResponse } from 'imapflow';
import {
  AuthError,
  defineImporter,
  describeError,
  FatalError,
  joinPath,
  NotFoundError,
  QuotaError,
  ServiceError,
  type ImportItem,
  type XattrItem,
} from '../../shared/index.ts';
import { BodyReader, type MailboxListing } from './bodies.ts';
import { connectForInit, imapPacer, Pool, resolveSettings } from './client.ts';
import {
  canonicalSpecialUse,
  compilePattern,
  gmailMailboxWanted,
  mailboxSegments,
  mailboxSelected,
  mailboxToPath,
  messageFileName,
  metadataName,
  uidSet,
} from './map.ts';
import { importerOptions, LOCATION_HELP } from './options.ts';

/** UIDs per metadata FETCH: memory stays flat however large the mailbox. */
const METADATA_BATCH = 500;

/** One mailbox to back up. */
export interface MailboxPlan {
  /** Native name (server delimiter). */
  name: string;
  delimiter: string;
  segments: string[];
  /** Snapshot directory. */
  path: string;
  selectable: boolean;
  specialUse: string | undefined;
}

/** The imap importer. */
export const importer = defineImporter({
  options: importerOptions,
  location: {
    help: LOCATION_HELP,
    examples: ['imap://imap.example.com', 'imaps://alice@imap.gmail.com', 'imap://mail.example.com/Archive/2024'],
    pattern: '^imaps?://[^/]+(/.*)?$',
  },
  async init(ctx) {
    const settings = resolveSettings(ctx);
    const include = ctx.options.include.map(compilePattern);
    const exclude = ctx.options.exclude.map(compilePattern);
    const first = await connectForInit(ctx, settings);
    const gmail = first.capabilities.has('X-GM-EXT-1');
    const pool = new Pool(settings, settings.concurrency, imapPacer(ctx, settings), ctx.log);
    pool.adopt(first);

    const listed = await pool.run('LIST', undefined, (s) => s.client.list());
    const plans = planMailboxes(listed, settings.segments, include, exclude, gmail && ctx.options.gmail === 'labels');
    if (settings.segments.length > 0 && plans.length === 0) {
      await pool.close();
      throw new NotFoundError(`mailbox ${JSON.stringify(settings.segments.join('/'))} not found on ${settings.account} (the location path names the mailbox to back up)`);
    }
    if (gmail) ctx.log.info(`Gmail detected: gmail=${ctx.options.gmail}`, { account: settings.account });

    const bodies = new BodyReader(pool, ctx.log, ctx.options.prefetchSize, ctx.host?.maxConcurrency ?? 1);

    return {
      origin: settings.account,
      type: 'imap',
      root: '/',
      async *records(signal): AsyncIterable<ImportItem> {
        const emitted = new Set<string>();
        for (const plan of plans) {
          if (signal.aborted) return;
          // Ancestors that are not mailboxes of their own (\NonExistent parents) still become directories.
          for (let depth = 1; depth < plan.segments.length; depth++) {
            const ancestor = mailboxToPath(plan.segments.slice(0, depth).join(plan.delimiter || '/'), plan.delimiter || '/');
            if (!emitted.has(ancestor) && !plans.some((p) => p.path === ancestor)) {
              emitted.add(ancestor);
              yield { type: 'dir', path: ancestor, mtime: new Date(0), perm: 0o700 };
            }
          }
          emitted.add(plan.path);
          if (!plan.selectable) {
            yield { type: 'dir', path: plan.path, mtime: new Date(0), perm: 0o700, xattrs: mailboxXattrs(plan, undefined) };
            continue;
          }
          try {
            yield* importMailbox(plan, signal);
          } catch (err) {
            if (signal.aborted) return;
            // Credentials revoked or the account gone: stop. Anything else is this mailbox's problem only.
            if (err instanceof FatalError || err instanceof AuthError || err instanceof QuotaError) throw err;
            const text = describeError(err);
            ctx.log.warn(`cannot back up mailbox ${plan.name}: ${text}`);
            yield { type: 'error', path: plan.path, error: `cannot back up mailbox ${JSON.stringify(plan.name)}: ${text}` };
          }
        }
      },
      async ping() {
        await pool.run('NOOP', undefined, (s) => s.client.noop());
      },
      async close() {
        bodies.clear();
        await pool.close();
      },
    };

    /** Directory record, then one record per message, metadata fetched in UID batches. */
    async function* importMailbox(plan: MailboxPlan, signal: AbortSignal): AsyncGenerator<ImportItem> {
      const found = await pool.run(`SEARCH ${plan.name}`, plan.name, async (s) => {
        const mailbox = await s.select(plan.name, true);
        const uids = mailbox.exists === 0 ? [] : ((await s.client.search({ all: true }, { uid: true })) || []);
        return { uidValidity: mailbox.uidValidity, uids: Uint32Array.from(uids).sort() };
      });
      const listing = bodies.listing(plan.name, found.uidValidity, found.uids);
      yield { type: 'dir', path: plan.path, mtime: new Date(0), perm: 0o700, xattrs: mailboxXattrs(plan, found.uidValidity) };
      for (let i = 0; i < found.uids.length; i += METADATA_BATCH) {
        if (signal.aborted) return;
        const batch = Array.from(found.uids.subarray(i, i + METADATA_BATCH));
        const messages = await pool.run(`FETCH ${plan.name} metadata`, plan.name, async (s) => {
          const mailbox = await s.select(plan.name, true);
          if (mailbox.uidValidity !== listing.uidValidity) {
            throw new ServiceError('UIDVALIDITY', `UIDVALIDITY changed during the backup (the server renumbered the mailbox); back it up again`);
          }
          const list = await s.client.fetchAll(
            uidSet(batch),
            { uid: true, flags: true, internalDate: true, size: true, envelope: true, labels: gmail },
            { uid: true },
          );
          return mergeRows(list).map(metadataOf);
        });
        messages.sort((a, b) => a.uid - b.uid);
        // The body reader looks ahead in the listing: it needs each message's place and size before its record goes out.
        const indexes = messages.map((m) => indexOf(listing.uids, m.uid, i));
        messages.forEach((m, k) => {
          const index = indexes[k] as number;
          if (index >= 0) listing.sizes[index] = m.size;
        });
        listing.known = Math.min(found.uids.length, i + METADATA_BATCH);
        for (const [k, m] of messages.entries()) {
          const index = indexes[k] as number;
          // Only UIDs of the listing: a row for another UID is an unsolicited FETCH (a flag change seen meanwhile, a
          // message that arrived after the SEARCH), not a message of this backup, and it has no place to read ahead from.
          if (index < 0) continue;
          const path = joinPath(plan.path, messageFileName(m.uid, m.flags, m.subject));
          yield {
            type: 'file',
            path,
            size: m.size,
            mtime: m.internalDate,
            perm: 0o600,
            open: async () => bodies.open(listing, index, path),
            xattrs: m.labels.length > 0 ? labelXattrs(m.labels) : undefined,
          };
        }
      }
    }
  },
});

/** The index of `uid` in the ascending `uids`, searching from `from`; -1 when absent. */
function indexOf(uids: Uint32Array, uid: number, from: number): number {
  let lo = from;
  let hi = uids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = uids[mid] as number;
    if (v === uid) return mid;
    if (v < uid) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** The few fields kept per message while its batch is turned into records. */
interface MessageMeta {
  uid: number;
  flags: string[];
  internalDate: Date;
  size: number;
  subject: string | undefined;
  labels: string[];
}

/**
 * One row per UID. A flag change made by another session while the FETCH runs comes back as a row of its own (UID and
 * FLAGS only) beside the message's full row, before or after it; taken alone it would be a second record of the same
 * message without its date, size or subject. Fields a later row carries win (its FLAGS are the newer ones).
 */
export function mergeRows(rows: readonly FetchMessageObject[]): FetchMessageObject[] {
  const byUid = new Map<number, FetchMessageObject>();
  for (const row of rows) {
    const seen = byUid.get(row.uid);
    if (!seen) {
      byUid.set(row.uid, row);
      continue;
    }
    const merged: FetchMessageObject = { ...seen };
    for (const [key, value] of Object.entries(row)) if (value !== undefined) (merged as unknown as Record<string, unknown>)[key] = value;
    byUid.set(row.uid, merged);
  }
  return [...byUid.values()];
}

function metadataOf(m: FetchMessageObject): MessageMeta {
  const date = m.internalDate instanceof Date ? m.internalDate : m.internalDate ? new Date(m.internalDate) : new Date(0);
  return {
    uid: m.uid,
    flags: [...(m.flags ?? [])],
    internalDate: Number.isNaN(date.getTime()) ? new Date(0) : date,
    size: typeof m.size === 'number' ? m.size : -1,
    subject: m.envelope?.subject || undefined,
    labels: [...(m.labels ?? [])].sort(),
  };
}

/** Mailbox metadata as extended attributes (names carry the value: exporters only see names). */
function mailboxXattrs(plan: MailboxPlan, uidValidity: bigint | undefined): XattrItem[] {
  const out: XattrItem[] = [];
  if (plan.specialUse) out.push({ name: metadataName('special-use', plan.specialUse), value: plan.specialUse });
  if (uidValidity !== undefined) out.push({ name: metadataName('uidvalidity', String(uidValidity)), value: String(uidValidity) });
  return out;
}

function labelXattrs(labels: readonly string[]): XattrItem[] {
  return labels.map((label) => ({ name: metadataName('gmail-label', label), value: label }));
}

/** Chooses and orders the mailboxes to back up (exported for tests). */
export function planMailboxes(
  listed: readonly ListResponse[],
  location: readonly string[],
  include: readonly RegExp[],
  exclude: readonly RegExp[],
  gmailLabels: boolean,
): MailboxPlan[] {
  const plans: MailboxPlan[] = [];
  for (const box of listed) {
    if (!box.path) continue;
    const delimiter = box.delimiter ?? '';
    const segments = mailboxSegments(box.path, delimiter || undefined);
    if (location.length > 0 && !location.every((s, i) => segments[i] === s || (i === 0 && s.toUpperCase() === 'INBOX' && segments[0]?.toUpperCase() === 'INBOX'))) continue;
    if (!mailboxSelected(segments, include, exclude)) continue;
    const flags = new Set([...(box.flags ?? [])].map((f) => f.toLowerCase()));
    // Only what the server says (RFC 6154), never imapflow's guess from the name: a folder called "Archive" is not \Archive.
    const specialUse = box.specialUseSource === 'extension' ? canonicalSpecialUse(box.specialUse) : undefined;
    if (gmailLabels && !gmailMailboxWanted(specialUse)) continue;
    plans.push({
      name: box.path,
      delimiter,
      segments,
      path: mailboxToPath(box.path, delimiter || undefined),
      selectable: !flags.has('\\noselect') && !flags.has('\\nonexistent'),
      specialUse,
    });
  }
  return plans.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
