// The imap exporter: mailboxes from directories (special-use mapped), messages APPENDed with flags, keywords and INTERNALDATE.
import type { Readable } from 'node:stream';
import type { ListResponse } from 'imapflow';
import {
  baseName,
  defineExporter,
  dirName,
  ItemError,
  KlosetError,
  type ExportEntry,
} from '../../shared/index.ts';
import { connectForInit, ImapError, imapPacer, Pool, resolveSettings, type Session } from './client.ts';
import {
  canonicalSpecialUse,
  GMAIL_SYSTEM_LABELS,
  guessSpecialUse,
  parseMessageFileName,
  pathSegments,
  readMetadata,
  segmentNeedsRename,
  segmentsToMailbox,
  uidSet,
} from './map.ts';
import { exporterOptions, LOCATION_HELP } from './options.ts';

/** Messages per FETCH while indexing a destination mailbox for `skip_existing`. */
const INDEX_BATCH = 1000;

/** Largest message the exporter accepts (IMAP APPEND needs the whole literal in memory). */
const MAX_MESSAGE = 1024 * 1024 * 1024;

/** Where a snapshot directory goes on the destination. */
interface Target {
  /** Native mailbox name ('' for the account root). */
  mailbox: string;
  /** Decoded segments of that name. */
  segments: string[];
}

/** The imap exporter. */
export const exporter = defineExporter({
  options: exporterOptions,
  location: {
    help: `${LOCATION_HELP}; a path restores below that mailbox`,
    examples: ['imap://imap.example.com', 'imap://mail.example.com/Restored'],
    pattern: '^imaps?://[^/]+(/.*)?$',
  },
  async init(ctx) {
    const settings = resolveSettings(ctx);
    const first = await connectForInit(ctx, settings);
    const gmail = first.capabilities.has('X-GM-EXT-1');
    const namespaceDelimiter = first.namespaces?.personal?.[0]?.delimiter ?? undefined;
    const pool = new Pool(settings, settings.concurrency, imapPacer(ctx, settings), ctx.log);
    pool.adopt(first);
    const listed = await pool.run('LIST', undefined, (s) => s.client.list());
    const delimiter = namespaceDelimiter || listed.find((b) => b.delimiter)?.delimiter || '/';
    const specials = specialUseMap(listed);
    const existing = new Set(listed.map((b) => mailboxKey(b.path)));
    const prefix = settings.segments;
    const { skipExisting, restoreDeleted } = ctx.options;

    const targets = new Map<string, Target>();
    const created = new Map<string, Promise<void>>();
    const indexes = new Map<string, Promise<{ baseline: Map<string, number>; remaining: Map<string, number> }>>();
    const appendedByKey = new Map<string, number>();
    const renamed = new Set<string>();
    /** Snapshot directories that were Gmail's All Mail: their messages carry labels. */
    const allMailDirs = new Set<string>();
    let appended = 0;
    let skipped = 0;

    /** Where a snapshot directory restores: mkdir decisions first, then the path itself. */
    const targetOf = (path: string, xattrNames: readonly string[] = [], name = ''): Target => {
      const known = targets.get(path);
      if (known) return known;
      let target: Target;
      if (path === '/') {
        // The restore target itself. When a single mailbox is restored, its original name comes with it.
        const special = prefix.length === 0 ? specialOf(xattrNames, undefined) : undefined;
        if (special && specials.has(special)) target = fromName(specials.get(special) as string);
        else if (prefix.length > 0) target = fromSegments(prefix);
        else if (name && name !== '/' && (xattrNames.length > 0 || /^inbox$/i.test(name))) target = fromSegments([name]);
        else target = { mailbox: '', segments: [] };
      } else {
        const parent = targetOf(dirName(path));
        const segment = pathSegments(`/${baseName(path)}`)[0] ?? '';
        const snapshotSegments = pathSegments(path);
        const special = prefix.length === 0 ? specialOf(xattrNames, snapshotSegments) : undefined;
        if (specialOf(xattrNames, undefined) === '\\All') allMailDirs.add(path);
        if (special && specials.has(special)) target = fromName(specials.get(special) as string);
        else if (parent.segments.length === 0 && segment.toUpperCase() === 'INBOX') target = fromSegments(['INBOX']);
        else {
          if (segmentNeedsRename(segment, delimiter) && !renamed.has(path)) {
            renamed.add(path);
            ctx.log.warn(`mailbox name ${JSON.stringify(segment)} contains the destination's delimiter ${JSON.stringify(delimiter)}; it is restored with "_" instead`);
          }
          target = fromSegments([...parent.segments, segment]);
        }
      }
      targets.set(path, target);
      return target;
    };

    function fromSegments(segments: string[]): Target {
      return { mailbox: segmentsToMailbox(segments, delimiter), segments };
    }
    function fromName(mailbox: string): Target {
      return { mailbox, segments: mailbox.split(delimiter) };
    }

    /** Creates a mailbox and its parents once; "already exists" is fine. */
    const ensureMailbox = (target: Target): Promise<void> => {
      if (!target.mailbox || existing.has(mailboxKey(target.mailbox))) return Promise.resolve();
      let pending = created.get(target.mailbox);
      if (!pending) {
        pending = (async () => {
          for (let depth = 1; depth <= target.segments.length; depth++) {
            const name = segmentsToMailbox(target.segments.slice(0, depth), delimiter);
            if (existing.has(mailboxKey(name))) continue;
            await pool.run(`CREATE ${name}`, undefined, async (s) => {
              try {
                await s.client.mailboxCreate(name);
              } catch (err) {
                if (!/ALREADYEXISTS|already exists/i.test(`${(err as ImapError).serverCode ?? ''} ${String((err as { responseText?: string }).responseText ?? '')}`)) throw err;
              }
            });
            existing.add(mailboxKey(name));
          }
        })();
        created.set(target.mailbox, pending);
        pending.catch(() => created.delete(target.mailbox));
      }
      return pending;
    };

    /** Counts of messages already in a mailbox, keyed by Message-ID, INTERNALDATE and size (built once, before appending). */
    const indexOf = (mailbox: string): Promise<{ baseline: Map<string, number>; remaining: Map<string, number> }> => {
      let pending = indexes.get(mailbox);
      if (!pending) {
        pending = buildIndex(pool, mailbox).then((baseline) => ({ baseline, remaining: new Map(baseline) }));
        indexes.set(mailbox, pending);
        pending.catch(() => indexes.delete(mailbox));
      }
      return pending;
    };

    return {
      origin: settings.account,
      type: 'imap',
      root: prefix.length > 0 ? `/${prefix.join('/')}` : '/',
      concurrency: settings.concurrency,
      async mkdir(entry) {
        const target = targetOf(entry.path, entry.xattrNames, entry.name);
        try {
          await ensureMailbox(target);
        } catch (err) {
          if (err instanceof KlosetError && !(err instanceof ItemError)) throw err;
          throw new ItemError(entry.path, `cannot create mailbox ${JSON.stringify(target.mailbox)}: ${(err as Error).message}`);
        }
      },
      async write(entry, content) {
        let target = targetOf(dirName(entry.path));
        if (!target.mailbox) {
          // A message restored on its own (the host sends a synthetic `/` first) has no mailbox: INBOX is where mail goes.
          ctx.log.once('root-message', 'info', 'messages outside any mailbox are restored into INBOX');
          target = fromSegments(['INBOX']);
        }
        const message = await readMessage(entry, content);
        const meta = readMetadata(entry.xattrNames);
        let flags = parseMessageFileName(baseName(entry.path)).flags.filter((f) => f.toLowerCase() !== '\\recent');
        if (!restoreDeleted) flags = flags.filter((f) => f.toLowerCase() !== '\\deleted');
        const labels = meta.get('gmail-label') ?? [];
        if (!gmail && labels.includes('\\Starred') && !flags.includes('\\Flagged')) flags.push('\\Flagged');
        const date = Number.isNaN(entry.mtime.getTime()) ? new Date() : entry.mtime;
        const key = messageKey(messageIdOf(message), date, message.length);
        // Gmail labels kept from All Mail: to Gmail they are set again; elsewhere they become folders (a copy per label).
        const targets = !gmail && labels.length > 0 && allMailDirs.has(dirName(entry.path)) ? labelFolders(labels, target) : [target];
        for (const t of targets) {
          try {
            await ensureMailbox(t);
            if (skipExisting) {
              const { remaining } = await indexOf(t.mailbox);
              const left = remaining.get(key) ?? 0;
              if (left > 0) {
                remaining.set(key, left - 1);
                skipped++;
                continue;
              }
            }
            const uid = await append(t.mailbox, message, flags, date, key);
            const ours = `${t.mailbox}\u0000${key}`;
            appendedByKey.set(ours, (appendedByKey.get(ours) ?? 0) + 1);
            appended++;
            if (gmail && labels.length > 0 && uid !== undefined) await addGmailLabels(t.mailbox, uid, labels);
          } catch (err) {
            if (err instanceof KlosetError && !(err instanceof ItemError)) throw err;
            throw new ItemError(entry.path, `cannot append to ${JSON.stringify(t.mailbox)}: ${(err as Error).message}`);
          }
        }
      },
      async finish() {
        ctx.log.info(`restore finished`, { appended, skipped, account: settings.account });
      },
      async ping() {
        await pool.run('NOOP', undefined, (s) => s.client.noop());
      },
      async close() {
        await pool.close();
      },
    };

    /**
     * APPENDs one message. A retry after a dropped connection first looks for the message (the server may
     * have stored it before the connection went), so a fault never leaves a duplicate behind.
     */
    async function append(mailbox: string, message: Buffer, flags: string[], date: Date, key: string): Promise<number | undefined> {
      let triedCreate = false;
      for (;;) {
        try {
          return await pool.pacer.call(
            `APPEND ${mailbox}`,
            async (attempt) =>
              pool.use(undefined, async (s) => {
                if (attempt > 1 && (await alreadyStored(s, mailbox, message.length, date, key))) return undefined;
                const res = await s.client.append(mailbox, message, flags, date);
                return res ? res.uid : undefined;
              }),
          );
        } catch (err) {
          if (!triedCreate && err instanceof ImapError && err.serverCode === 'TRYCREATE') {
            triedCreate = true;
            existing.delete(mailboxKey(mailbox));
            created.delete(mailbox);
            await ensureMailbox(fromName(mailbox));
            continue;
          }
          throw err;
        }
      }
    }

    /** After an interrupted APPEND: is a message with this key in the mailbox beyond what was there before? */
    async function alreadyStored(s: Session, mailbox: string, size: number, date: Date, key: string): Promise<boolean> {
      await s.select(mailbox, true);
      const uids = (await s.client.search({ larger: size - 1, smaller: size + 1 }, { uid: true })) || [];
      if (uids.length === 0) return false;
      const found = await s.client.fetchAll(uidSet([...uids].sort((a, b) => a - b)), { uid: true, internalDate: true, size: true, headers: ['message-id'] }, { uid: true });
      const matches = found.filter((m) => keyOfFetched(m) === key).length;
      // Without the skip_existing index the copies present before the restore are unknown: append again.
      if (!skipExisting) return false;
      const { baseline } = await indexOf(mailbox);
      return matches > (baseline.get(key) ?? 0) + (appendedByKey.get(`${mailbox}\u0000${key}`) ?? 0);
    }

    /** Sets a message's Gmail labels again after its APPEND to All Mail; a refusal leaves the message, unlabelled. */
    async function addGmailLabels(mailbox: string, uid: number, labels: string[]): Promise<void> {
      const store = (list: string[]) =>
        pool.run(`STORE X-GM-LABELS ${mailbox}`, mailbox, async (s) => {
          await s.select(mailbox, false);
          await s.client.messageFlagsAdd(String(uid), list, { uid: true, useLabels: true });
        });
      try {
        try {
          await store(labels);
        } catch (err) {
          // Some system labels (\Sent, \Draft) cannot be set by a client: keep the ones that can.
          const settable = labels.filter((l) => !l.startsWith('\\') || ['\\Inbox', '\\Important', '\\Starred'].includes(l));
          if (settable.length === labels.length || settable.length === 0) throw err;
          await store(settable);
        }
      } catch (err) {
        if (err instanceof KlosetError && !(err instanceof ItemError)) throw err;
        ctx.log.once('gmail-labels', 'warn', `Gmail refused to set labels again (${(err as Error).message}); the messages are restored without them`);
      }
    }

    /**
     * The folders a labelled Gmail message goes to on another server: \Inbox → INBOX, \Sent and \Draft → the destination's
     * special-use folders, a user label → the folder of that name (`/` nests); \Important and \Starred (kept as \Flagged)
     * are not folders. A message without a folder label stays in the All Mail folder.
     */
    function labelFolders(labels: readonly string[], allMail: Target): Target[] {
      const out = new Map<string, Target>();
      for (const label of labels) {
        const system = GMAIL_SYSTEM_LABELS[label];
        let t: Target | undefined;
        if (system === 'INBOX') t = fromSegments(['INBOX']);
        else if (system) t = specials.has(system) ? fromName(specials.get(system) as string) : fromSegments([system.slice(1)]);
        else if (system === undefined && !label.startsWith('\\')) t = fromSegments([...prefix, ...label.split('/').filter((x) => x !== '')]);
        if (t && t.mailbox) out.set(mailboxKey(t.mailbox), t);
      }
      return out.size > 0 ? [...out.values()] : [allMail];
    }
  },
});

/** Reads a message into memory (APPEND sends a literal of known size); refuses absurd sizes. */
async function readMessage(entry: ExportEntry, content: Readable): Promise<Buffer> {
  if (entry.size > MAX_MESSAGE) {
    content.resume();
    throw new ItemError(entry.path, `the message is ${entry.size} bytes, more than an IMAP server accepts`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of content as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MAX_MESSAGE) throw new ItemError(entry.path, 'the message is larger than an IMAP server accepts');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/** Special use of a snapshot directory: from its metadata, or guessed from well-known names when it has none. */
function specialOf(xattrNames: readonly string[], segments: readonly string[] | undefined): string | undefined {
  const meta = readMetadata(xattrNames);
  const recorded = canonicalSpecialUse(meta.get('special-use')?.[0]);
  if (recorded) return recorded;
  if (meta.size > 0 || !segments) return undefined;
  return guessSpecialUse(segments);
}

/** The destination's special-use mailboxes (RFC 6154; imapflow also guesses from names on servers without it). */
function specialUseMap(listed: readonly ListResponse[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const box of listed) {
    const special = canonicalSpecialUse(box.specialUse);
    if (!special || out.has(special)) continue;
    const flags = [...(box.flags ?? [])].map((f) => f.toLowerCase());
    if (flags.includes('\\noselect') || flags.includes('\\nonexistent')) continue;
    out.set(special, box.path);
  }
  return out;
}

/** INBOX is case-insensitive, every other name is not. */
function mailboxKey(name: string): string {
  return /^inbox$/i.test(name) ? 'INBOX' : name;
}

/** The identity of a message for `skip_existing`. */
function messageKey(messageId: string, date: Date, size: number): string {
  return `${messageId}\u0000${Math.floor(date.getTime() / 1000)}\u0000${size}`;
}

/** The Message-ID header of a raw message or header block ('' when absent). */
export function messageIdOf(raw: Buffer): string {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end < 0 ? Math.min(raw.length, 64 * 1024) : end).toString('latin1');
  const m = /^message-id:[ \t]*((?:.*)(?:\r?\n[ \t].*)*)/im.exec(head);
  return m ? (m[1] as string).replace(/\r?\n[ \t]+/g, ' ').trim() : '';
}

function keyOfFetched(m: { internalDate?: Date | string; size?: number; headers?: Buffer }): string {
  const date = m.internalDate instanceof Date ? m.internalDate : new Date(m.internalDate ?? 0);
  return messageKey(m.headers ? messageIdOf(Buffer.concat([m.headers, Buffer.from('\r\n\r\n')])) : '', date, m.size ?? -1);
}

/** Counts the messages of a destination mailbox by key, in batches (a missing mailbox is empty). */
async function buildIndex(pool: Pool, mailbox: string): Promise<Map<string, number>> {
  const index = new Map<string, number>();
  const uids = await pool.run(`SEARCH ${mailbox}`, mailbox, async (s) => {
    try {
      const opened = await s.select(mailbox, true);
      if (opened.exists === 0) return [];
    } catch (err) {
      if ((err as { mailboxMissing?: boolean }).mailboxMissing || (err instanceof ImapError && err.mailboxMissing)) return [];
      throw err;
    }
    return ((await s.client.search({ all: true }, { uid: true })) || []).sort((a, b) => a - b);
  });
  for (let i = 0; i < uids.length; i += INDEX_BATCH) {
    const batch = uids.slice(i, i + INDEX_BATCH);
    const found = await pool.run(`FETCH ${mailbox} index`, mailbox, async (s) => {
      await s.select(mailbox, true);
      return s.client.fetchAll(uidSet(batch), { uid: true, internalDate: true, size: true, headers: ['message-id'] }, { uid: true });
    });
    for (const m of found) {
      const key = keyOfFetched(m);
      index.set(key, (index.get(key) ?? 0) + 1);
    }
  }
  return index;
}
