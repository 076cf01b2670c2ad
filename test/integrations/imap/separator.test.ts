// imap across hierarchy delimiters: a snapshot of a "/" server restored to a "." server, and backed up again from it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImportOutcome } from '../../harness/index.ts';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { accountConfig, backup, expectedMessages, inspect, makeMessages, restore, seed, snapshotEntries } from './helpers.ts';

const boxes = ['INBOX', 'Archive/2024/Q1', 'Ünïcödé/Sub', 'Reports v1.2', 'Sent'];
const messages = makeMessages(80, boxes, 23);
let slash: Dovecot;
let dot: Dovecot;
let snapshot: ImportOutcome;

beforeAll(async () => {
  [slash, dot] = await Promise.all([startDovecot({ separator: '/' }), startDovecot({ separator: '.' })]);
  await seed(slash, 'alice', boxes, messages);
  snapshot = await backup(accountConfig(slash, 'alice'));
});
afterAll(async () => {
  await Promise.all([slash?.stop(), dot?.stop()]);
});

describe('imap exporter: a server with another delimiter', () => {
  it('restores the "/" hierarchy with "." and renames segments that contain "."', async () => {
    const out = await restore(snapshotEntries(snapshot), accountConfig(dot, 'alice', { restore_deleted: 'true' }));
    expect(out.itemErrors).toEqual([]);
    const target = await inspect(dot, 'alice');
    expect(target.get('Archive.2024.Q1')?.delimiter).toBe('.');
    const mapped: Record<string, string> = { 'Archive/2024/Q1': 'Archive.2024.Q1', 'Ünïcödé/Sub': 'Ünïcödé.Sub', 'Reports v1.2': 'Reports v1_2' };
    for (const box of boxes) {
      const name = mapped[box] ?? box;
      expect(target.get(name)?.messages, name).toEqual(expectedMessages(messages.filter((m) => m.mailbox === box), true));
    }
    expect(target.has('Reports v1.2')).toBe(false);
  });

  it('backs the "." server up into the same snapshot paths (delimiter-independent)', async () => {
    const again = await backup(accountConfig(dot, 'alice'));
    const dirs = (o: ImportOutcome) =>
      o.records
        .filter((r) => !r.isXattr && r.pathname.split('/').length <= 4 && !r.pathname.endsWith('.eml'))
        .map((r) => r.pathname)
        .filter((p) => !p.startsWith('/Reports'))
        .sort();
    expect(dirs(again)).toEqual(dirs(snapshot));
    expect(again.records.some((r) => r.pathname === '/Reports v1_2')).toBe(true);
  });
});
