// imap importer + exporter against Dovecot: a hostile folder tree and many messages, restored to a second account and compared.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMessageFileName } from '../../../integrations/imap/map.ts';
import { isDir, type ImportOutcome } from '../../harness/index.ts';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { accountConfig, backup, expectedMessages, inspect, makeMessages, restore, seed, snapshotEntries, type SeedMessage } from './helpers.ts';

/** Messages seeded (IMAP_TEST_MESSAGES overrides for a quicker run while developing). */
const COUNT = Number(process.env.IMAP_TEST_MESSAGES ?? (process.env.KLOSET_TS_FULL_SCALE ? 5000 : 1000));

/** Nested, unicode, delimiter-containing (`.` is the other server's delimiter) and punctuation-heavy names. */
const MAILBOXES = [
  'INBOX',
  'INBOX/Child',
  'Sent',
  'Trash',
  'Archive/2023',
  'Archive/2024/Q1',
  'Ünïcödé/Sub',
  'Reports v1.2',
  'Spaces & (parens) + [brackets] ~tilde',
  'Emoji 📦 box',
  '日本語',
  'Deep/a/b/c/d',
];

let d: Dovecot;
let messages: SeedMessage[];
let snapshot: ImportOutcome;

beforeAll(async () => {
  d = await startDovecot({
    users: [
      { user: 'alice', password: 'alicepw' },
      { user: 'bob', password: 'bobpw' },
      { user: 'carol', password: 'carolpw' },
    ],
  });
  messages = makeMessages(COUNT, MAILBOXES, 42, { bigEvery: 500 });
  await seed(d, 'alice', [...MAILBOXES, 'Empty'], messages);
  snapshot = await backup(accountConfig(d, 'alice'));
}, 1_800_000);
afterAll(async () => {
  await d?.stop();
});

describe('imap importer: the snapshot of an account', { timeout: 900_000 }, () => {
  it('has one record per message, named as the official integration names them, with INTERNALDATE and RFC822.SIZE', () => {
    const files = snapshot.records.filter((r) => !r.isXattr && r.fileInfo && !isDir(r.fileInfo.mode));
    expect(files.length).toBe(COUNT);
    expect(snapshot.errors).toEqual([]);
    expect(snapshot.itemErrors).toEqual([]);
    const byKey = new Map(messages.map((m) => [`${m.date.getTime()}|${m.raw.length}`, m]));
    for (const f of files) {
      const name = f.pathname.slice(f.pathname.lastIndexOf('/') + 1);
      expect(name).toMatch(/^\d+(,[SADFT]*(\{[^}]*\})*)?(-[A-Za-z0-9_.]{1,80})?\.eml$/);
      expect(name.slice(name.indexOf('{') + 1)).not.toMatch(/^[^-]*-[^}]*\}/); // no raw '-' inside a keyword block
      const seen = byKey.get(`${(f.fileInfo?.modTime?.seconds ?? 0) * 1000}|${f.fileInfo?.size}`);
      expect(seen, f.pathname).toBeDefined();
      expect(parseMessageFileName(name).flags.sort()).toEqual([...(seen as SeedMessage).flags].sort());
      expect(f.fileInfo?.mode).toBe(0o600);
      expect((snapshot.contents.get(f.pathname) as Buffer | undefined)?.equals((seen as SeedMessage).raw)).toBe(true);
    }
  });

  it('has a directory per mailbox with UIDVALIDITY and special-use, including \\Noselect parents and empty mailboxes', () => {
    const dirs = new Map(snapshot.records.filter((r) => !r.isXattr && r.fileInfo && isDir(r.fileInfo.mode)).map((r) => [r.pathname, r]));
    for (const p of ['/INBOX', '/INBOX/Child', '/Archive', '/Archive/2024', '/Archive/2024/Q1', '/Ünïcödé/Sub', '/Reports v1.2', '/Emoji 📦 box', '/Empty', '/Deep/a/b/c/d']) {
      expect(dirs.has(p), p).toBe(true);
    }
    expect(dirs.get('/Sent')?.extendedAttributes).toContain('imap.special-use=\\Sent');
    expect(dirs.get('/Trash')?.extendedAttributes).toContain('imap.special-use=\\Trash');
    expect(dirs.get('/Empty')?.extendedAttributes.some((n) => n.startsWith('imap.uidvalidity='))).toBe(true);
    expect(dirs.get('/Archive')?.extendedAttributes).toEqual([]);
  });

  it('never sets \\Seen on the source (BODY.PEEK) and yields identical metadata on a second run', async () => {
    const before = await inspect(d, 'alice');
    const again = await backup(accountConfig(d, 'alice'));
    const after = await inspect(d, 'alice');
    expect(after).toEqual(before);
    const info = (o: ImportOutcome) => o.records.filter((r) => !r.isXattr).map((r) => JSON.stringify([r.pathname, r.fileInfo, r.extendedAttributes]));
    expect(info(again)).toEqual(info(snapshot));
  });

  it('backs up only the subtree the location names, and honours include/exclude', async () => {
    const sub = await backup(accountConfig(d, 'alice', { location: `imap://${d.host}:${d.port}/Archive` }));
    const paths = sub.records.filter((r) => !r.isXattr).map((r) => r.pathname);
    expect(paths.every((p) => p.startsWith('/Archive'))).toBe(true);
    expect(paths.length).toBe(3 + messages.filter((m) => m.mailbox.startsWith('Archive/')).length + 1);
    const filtered = await backup(accountConfig(d, 'alice', { include: 'Deep,INBOX', exclude: 'INBOX/Child' }));
    const boxes = new Set(filtered.records.filter((r) => r.fileInfo && isDir(r.fileInfo.mode)).map((r) => r.pathname));
    expect([...boxes].sort()).toEqual(['/Deep', '/Deep/a', '/Deep/a/b', '/Deep/a/b/c', '/Deep/a/b/c/d', '/INBOX']);
  });
});

describe('imap exporter: restore to a second account', { timeout: 900_000 }, () => {
  it('recreates every mailbox with the same messages, bytes, flags, keywords and INTERNALDATEs; a second run adds nothing', async () => {
    const first = await restore(snapshotEntries(snapshot), accountConfig(d, 'bob', { restore_deleted: 'true' }));
    expect(first.itemErrors).toEqual([]);
    const source = await inspect(d, 'alice');
    const check = async (): Promise<void> => {
      const target = await inspect(d, 'bob');
      for (const [name, box] of source) {
        expect(target.has(name), `mailbox ${name}`).toBe(true);
        expect(target.get(name)?.messages.length, `count in ${name}`).toBe(box.messages.length);
        expect(target.get(name)?.messages, `messages in ${name}`).toEqual(box.messages);
      }
    };
    await check();
    for (const box of new Set(messages.map((m) => m.mailbox))) {
      expect(source.get(box)?.messages).toEqual(expectedMessages(messages.filter((m) => m.mailbox === box), true));
    }
    const second = await restore(snapshotEntries(snapshot), accountConfig(d, 'bob', { restore_deleted: 'true' }));
    expect(second.itemErrors).toEqual([]);
    await check();
  });

  it('does not restore \\Deleted as a live flag by default, and maps special-use folders whatever their names', async () => {
    const entries = snapshotEntries(snapshot).filter((e) => e.path === '/' || e.path.startsWith('/Sent') || e.path.startsWith('/INBOX'));
    // Pretend carol's server names its \Sent folder differently: the snapshot's "/Sent" keeps its special use.
    const renamed = entries.map((e) => (e.path.startsWith('/Sent') ? { ...e, path: e.path.replace(/^\/Sent/, '/Sent Folder') } : e));
    const out = await restore(renamed, accountConfig(d, 'carol'));
    expect(out.itemErrors).toEqual([]);
    const target = await inspect(d, 'carol');
    expect(target.has('Sent Folder')).toBe(false);
    const sent = messages.filter((m) => m.mailbox === 'Sent');
    expect(target.get('Sent')?.messages).toEqual(expectedMessages(sent, false));
    expect(target.get('INBOX')?.messages).toEqual(expectedMessages(messages.filter((m) => m.mailbox === 'INBOX'), false));
    expect(target.get('INBOX')?.messages.some((m) => m.flags.includes('\\Deleted'))).toBe(false);
  });
});
