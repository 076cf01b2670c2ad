// imap importer body batches against Dovecot: every record holds the server's body of its own UID (sha256 per UID), with
// sizes around the batch limit and 1, 3 or 8 concurrent Opens; a connection cut mid-batch resumes with the bodies not yet
// received; unsolicited FLAGS rows and an under-reported RFC822.SIZE change nothing; a message deleted between the
// listing and its Open is an error for that message only.
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BATCH_MESSAGE_MAX } from '../../../integrations/imap/bodies.ts';
import { parseMessageFileName } from '../../../integrations/imap/map.ts';
import { isDir, type ImportOutcome } from '../../harness/index.ts';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { accountConfig, client, connector, makeMessages, seed, type SeedMessage } from './helpers.ts';
import { startProxy, type FaultProxy } from './proxy.ts';

const boxes = ['INBOX', 'Work'];
let d: Dovecot;
let proxy: FaultProxy;
/** sha256 of every body on the server, by `<mailbox>/<uid>`. */
let server: Map<string, string>;

/** A message whose raw form is exactly `size` bytes. */
function sized(n: number, size: number): SeedMessage {
  const head = `From: edge${n}@example.com\r\nTo: alice@example.com\r\nSubject: size ${size}\r\nMessage-ID: <edge-${n}@example.com>\r\n\r\n`;
  const line = `edge ${n} ${'y'.repeat(70)}\r\n`;
  const body = line.repeat(Math.ceil(size / line.length)).slice(0, size - head.length);
  return { mailbox: 'INBOX', raw: Buffer.from(head + body), flags: [], date: new Date(Date.UTC(2020, 0, 1 + n)) };
}

beforeAll(async () => {
  d = await startDovecot({ users: ['alice', 'bob'].map((user) => ({ user, password: `${user}pw` })) });
  const edges = [BATCH_MESSAGE_MAX - 1, BATCH_MESSAGE_MAX, BATCH_MESSAGE_MAX + 1, 300_000, 1_200_000].map((size, k) => sized(k, size));
  const messages = [...makeMessages(160, boxes, 31).slice(0, 80), ...edges, ...makeMessages(160, boxes, 31).slice(80)];
  for (const user of ['alice', 'bob']) await seed(d, user, boxes, messages);
  server = await serverBodies('alice');
  proxy = await startProxy(d.port);
}, 240_000);
afterAll(async () => {
  await proxy?.close();
  await d?.stop();
});

async function serverBodies(user: string): Promise<Map<string, string>> {
  const c = await client(d, user);
  const out = new Map<string, string>();
  try {
    for (const box of boxes) {
      await c.mailboxOpen(box, { readOnly: true });
      for await (const m of c.fetch('1:*', { uid: true, source: true }, { uid: true })) {
        out.set(`${box}/${m.uid}`, createHash('sha256').update(m.source as Buffer).digest('hex'));
      }
    }
  } finally {
    await c.logout();
  }
  return out;
}

/** `<mailbox>/<uid>` of a message record. */
function keyOf(pathname: string): string {
  const parts = pathname.split('/');
  return `${parts.slice(1, -1).join('/')}/${parseMessageFileName(parts[parts.length - 1] as string).uid}`;
}

/** Message records of an import. */
function messageRecords(out: ImportOutcome): string[] {
  return out.records.filter((r) => !r.isXattr && r.fileInfo && !isDir(r.fileInfo.mode)).map((r) => r.pathname);
}

/** Checks that each message record holds the body the server has for its UID, and that every body was read. */
function expectOwnBodies(out: ImportOutcome, expected: Map<string, string>, except: string[] = []): void {
  expect(out.status.code).toBe(0);
  const paths = messageRecords(out).filter((p) => !except.includes(p));
  expect(paths.length).toBe(expected.size - except.length);
  for (const p of paths) expect(out.contents.get(p), p).toBe(expected.get(keyOf(p)));
}

async function importVia(config: Record<string, string>, workers: number): Promise<ImportOutcome> {
  const c = await connector('importer', config);
  try {
    return await c.host.importAll({ maxConcurrency: workers, content: 'sha256' });
  } finally {
    c.close();
  }
}

const viaProxy = (user: string) => accountConfig(d, user, { location: `imap://127.0.0.1:${proxy.port}` });
const BATCH_FETCH = new RegExp(`UID FETCH (\\S+) \\(.*BODY\\.PEEK\\[\\]<0\\.${BATCH_MESSAGE_MAX}>`);

function expand(set: string): number[] {
  return set.split(',').flatMap((part) => {
    const [a, b] = part.split(':').map(Number) as [number, number | undefined];
    return Array.from({ length: (b ?? a) - a + 1 }, (_, k) => a + k);
  });
}

describe('imap importer: body batches against Dovecot', () => {
  for (const workers of [1, 3, 8]) {
    it(`gives every record the body of its own UID, sizes around the batch limit included (${workers} concurrent Opens)`, async () => {
      const out = await importVia(accountConfig(d, 'alice'), workers);
      expect(out.itemErrors).toEqual([]);
      expectOwnBodies(out, server);
    });
  }

  it('resumes a batch cut by a dropped connection with the bodies it had not received', async () => {
    proxy.fetches.length = 0;
    // Cut in the middle of the body of UID 10 of INBOX, which the first batch of the mailbox carries.
    proxy.rules.splice(0, proxy.rules.length, { direction: 'down', trigger: /FETCH \(UID 10 (?:MODSEQ \(\d+\) )?BODY\[\]<0> \{\d+\}\r\n/, afterBytes: 100, times: 1 });
    const drops = proxy.drops;
    try {
      const out = await importVia(viaProxy('alice'), 2);
      expect(proxy.drops - drops).toBe(1);
      expect(out.itemErrors).toEqual([]);
      expectOwnBodies(out, server);
    } finally {
      proxy.rules.splice(0, proxy.rules.length);
    }
    const cutConnection = proxy.cutConnections[proxy.cutConnections.length - 1];
    const batches = proxy.fetches.flatMap((f) => {
      const set = BATCH_FETCH.exec(f.line)?.[1];
      return set ? [{ connection: f.connection, uids: expand(set) }] : [];
    });
    const cut = batches.find((b) => b.connection === cutConnection && b.uids.includes(10));
    expect(cut, 'the batch FETCH that was cut').toBeDefined();
    const { uids } = cut as { uids: number[] };
    expect(uids[0]).toBeLessThan(10);
    // Its retry, on a new connection: the same UIDs from the one being received at the cut, nothing before it.
    const retry = batches.find((b) => b.connection > (cutConnection as number) && b.uids[0] === 10);
    expect(retry?.uids).toEqual(uids.slice(uids.indexOf(10)));
  });

  /** A backup through the proxy while `rule` rewrites the server's answers; checks every body, returns the outcome. */
  async function importRewritten(rule: FaultProxy['rewrites'][number]): Promise<{ out: ImportOutcome; rewritten: number }> {
    proxy.rewrites.splice(0, proxy.rewrites.length, rule);
    const before = proxy.rewritten;
    try {
      const out = await importVia(viaProxy('alice'), 2);
      expect(out.itemErrors).toEqual([]);
      expectOwnBodies(out, server);
      return { out, rewritten: proxy.rewritten - before };
    } finally {
      proxy.rewrites.splice(0, proxy.rewrites.length);
    }
  }

  it('takes no FLAGS-only row for a body (unsolicited updates inside a batch)', async () => {
    const { rewritten } = await importRewritten({
      direction: 'down',
      pattern: /\* (\d+) FETCH \(UID (\d+) (?:MODSEQ \(\d+\) )?BODY\[\]<0> /,
      replacement: '* $1 FETCH (UID $2 FLAGS (\\Seen))\r\n$&',
      times: 40,
    });
    expect(rewritten).toBe(40);
  });

  it('makes one record per message when a flag change arrives as its own row inside the metadata FETCH', async () => {
    // Another session flags messages while the listing runs: the server sends `* n FETCH (UID u FLAGS (…))` beside
    // (here: just before) the message's full row.
    const { out, rewritten } = await importRewritten({
      direction: 'down',
      pattern: /\* (\d+) FETCH \(UID (\d+) (?:MODSEQ \(\d+\) )?FLAGS \([^)]*\) INTERNALDATE /,
      replacement: '* $1 FETCH (UID $2 FLAGS (\\Flagged \\Deleted))\r\n$&',
      times: 40,
    });
    expect(rewritten).toBe(40);
    const uids = messageRecords(out).map(keyOf);
    expect(new Set(uids).size).toBe(uids.length);
  });

  it('reads whole bodies when the server under-reports RFC822.SIZE (a big message enters a batch)', async () => {
    const { out } = await importRewritten({ direction: 'down', pattern: /RFC822\.SIZE \d+/, replacement: 'RFC822.SIZE 1000', times: Infinity });
    expect(out.records.filter((r) => r.fileInfo?.size === 1000).length).toBeGreaterThan(100);
  });

  it('a message deleted between the listing and its Open is an error naming it; the rest of its batch is backed up', async () => {
    const before = await serverBodies('bob');
    const c = await connector('importer', accountConfig(d, 'bob'));
    let deleting: Promise<string[]> | undefined;
    const got = new Map<string, string>();
    try {
      const out = await c.host.importAll({
        maxConcurrency: 1,
        content: (record) => {
          const hash = createHash('sha256');
          // The first body read holds the (single) host worker until messages further down INBOX are expunged by
          // another session: they were listed, and their batch is fetched after they are gone.
          deleting ??= expunge('bob', 'INBOX', [40, 41, 42, 70]);
          const wait = deleting;
          return new Writable({
            write(chunk: Buffer, _enc, done) {
              hash.update(chunk);
              wait.then(() => done(), done);
            },
            final(done) {
              got.set(record.pathname, hash.digest('hex'));
              done();
            },
          });
        },
      });
      const deleted = await (deleting as Promise<string[]>);
      const gone = messageRecords(out).filter((p) => deleted.includes(keyOf(p)));
      expect(gone.length).toBe(4);
      expect(out.itemErrors.map((e) => e.pathname).sort()).toEqual(gone.sort());
      for (const e of out.itemErrors) {
        const uid = keyOf(e.pathname).split('/')[1];
        expect(e.message).toBe(`failed to receive file data: imap importer: cannot read ${e.pathname}: message UID ${uid} was deleted from INBOX during the backup`);
      }
      expect(out.status.code).toBe(0);
      const paths = messageRecords(out).filter((p) => !gone.includes(p));
      expect(paths.length).toBe(before.size - 4);
      for (const p of paths) expect(got.get(p), p).toBe(before.get(keyOf(p)));
    } finally {
      c.close();
    }
  });
});

/** Expunges the messages at `positions` (0-based, in UID order) of `mailbox` from another session; returns their keys. */
async function expunge(user: string, mailbox: string, positions: number[]): Promise<string[]> {
  const c = await client(d, user);
  try {
    await c.mailboxOpen(mailbox);
    const uids = ((await c.search({ all: true }, { uid: true })) || []).sort((a, b) => a - b);
    const doomed = positions.map((p) => uids[p] as number);
    await c.messageDelete(doomed.join(','), { uid: true });
    return doomed.map((u) => `${mailbox}/${u}`);
  } finally {
    await c.logout();
  }
}
