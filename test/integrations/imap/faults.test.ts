// imap under faults: connections cut mid-FETCH and mid-APPEND give a complete, identical result; a message that keeps failing is one item error.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDir, type ImportOutcome } from '../../harness/index.ts';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { accountConfig, backup, connector, inspect, makeMessages, restore, seed, snapshotEntries } from './helpers.ts';
import { startProxy, type FaultProxy } from './proxy.ts';

const boxes = ['INBOX', 'Work/Projects', 'Sent'];
const messages = makeMessages(150, boxes, 11, { bigEvery: 50 });
let d: Dovecot;
let proxy: FaultProxy;
let direct: ImportOutcome;

beforeAll(async () => {
  d = await startDovecot({
    users: [
      { user: 'alice', password: 'alicepw' },
      { user: 'bob', password: 'bobpw' },
      { user: 'carol', password: 'carolpw' },
    ],
  });
  await seed(d, 'alice', boxes, messages);
  direct = await backup(accountConfig(d, 'alice'));
  proxy = await startProxy(d.port);
});
afterAll(async () => {
  await proxy?.close();
  await d?.stop();
});

const viaProxy = (user: string, extra: Record<string, string> = {}) => accountConfig(d, user, { location: `imap://127.0.0.1:${proxy.port}`, ...extra });
const summary = (o: ImportOutcome) => o.records.filter((r) => !r.isXattr).map((r) => `${r.pathname} ${JSON.stringify(r.fileInfo)}`);

describe('imap importer: dropped connections', () => {
  it('reconnects and resumes when the connection drops mid-FETCH (bodies and metadata): identical snapshot', async () => {
    proxy.rules.splice(0, proxy.rules.length, { direction: 'down', trigger: /BODY\[\]<\d+> \{\d+\}\r\n/, afterBytes: 1500, times: 5 }, { direction: 'down', trigger: /ENVELOPE/, afterBytes: 4000, times: 2 });
    const before = proxy.drops;
    const cut = await backup(viaProxy('alice'));
    expect(proxy.drops - before).toBe(7);
    expect(cut.errors).toEqual([]);
    expect(cut.itemErrors).toEqual([]);
    expect(summary(cut)).toEqual(summary(direct));
    for (const [key, bytes] of direct.contents) expect((cut.contents.get(key) as Buffer).equals(bytes as Buffer), key).toBe(true);
  });

  it('backs off and retries when the server throttles ([THROTTLED] replies): identical snapshot', async () => {
    proxy.rules.splice(0, proxy.rules.length);
    proxy.rewrites.splice(0, proxy.rewrites.length, {
      direction: 'down',
      pattern: /^(\S+) OK Fetch completed[^\r\n]*/m,
      replacement: '$1 NO [THROTTLED] Too many commands, slow down.',
      times: 3,
    });
    const before = proxy.rewritten;
    try {
      const throttled = await backup(viaProxy('alice'));
      expect(proxy.rewritten - before).toBe(3);
      expect(throttled.itemErrors).toEqual([]);
      expect(summary(throttled)).toEqual(summary(direct));
    } finally {
      proxy.rewrites.splice(0, proxy.rewrites.length);
    }
  });

  it('turns a message that keeps failing into one per-item error and backs up the rest', async () => {
    // Every connection is cut where the server starts sending the body of UID 7, whatever the mailbox, alone or in a
    // batch: the batch resumes, gives up, and its other messages are fetched on their own.
    proxy.rules.splice(0, proxy.rules.length, { direction: 'down', trigger: /FETCH \(UID 7 (?:MODSEQ \(\d+\) )?BODY\[\]<\d+> /, afterBytes: 0, times: Infinity });
    const c = await connector('importer', viaProxy('alice', { max_retries: '2' }));
    try {
      const out = await c.host.importAll({ maxConcurrency: 2 });
      const seven = out.records.filter((r) => /\/7[,.-][^/]*$/.test(r.pathname) && !r.isXattr).map((r) => r.pathname).sort();
      expect(seven.length).toBe(boxes.length);
      expect(out.itemErrors.map((e) => e.pathname).sort()).toEqual(seven);
      for (const e of out.itemErrors) expect(e.message).toMatch(/failed to receive file data: imap importer: cannot read .*gave up after 2 attempts.*connection/);
      const files = out.records.filter((r) => !r.isXattr && r.fileInfo && !isDir(r.fileInfo.mode));
      expect([...out.contents.keys()].filter((k) => !k.startsWith('xattr:')).length).toBe(files.length - seven.length);
    } finally {
      c.close();
      proxy.rules.splice(0, proxy.rules.length);
    }
  });
});

describe('imap exporter: dropped connections', () => {
  it('finishes a restore cut mid-APPEND with every message exactly once', async () => {
    proxy.rules.splice(0, proxy.rules.length, { direction: 'up', trigger: /APPEND /, afterBytes: 700, times: 5 });
    const before = proxy.drops;
    const out = await restore(snapshotEntries(direct), viaProxy('bob', { restore_deleted: 'true' }));
    expect(proxy.drops - before).toBe(5);
    expect(out.itemErrors).toEqual([]);
    const a = await inspect(d, 'alice');
    const b = await inspect(d, 'bob');
    for (const box of boxes) expect(b.get(box)?.messages, box).toEqual(a.get(box)?.messages);
  });

  it('does not duplicate a message whose APPEND was stored just before the connection dropped', async () => {
    // Cut right after the server's tagged OK to an APPEND: the message is stored, the client never hears it.
    proxy.rules.splice(0, proxy.rules.length, { direction: 'down', trigger: /OK \[APPENDUID [^\]]+\]/, afterBytes: 0, times: 3 });
    const before = proxy.drops;
    const out = await restore(snapshotEntries(direct), viaProxy('carol', { restore_deleted: 'true' }));
    expect(proxy.drops - before).toBe(3);
    expect(out.itemErrors).toEqual([]);
    const a = await inspect(d, 'alice');
    const c = await inspect(d, 'carol');
    for (const box of boxes) expect(c.get(box)?.messages, box).toEqual(a.get(box)?.messages);
  });
});
