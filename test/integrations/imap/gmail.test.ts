// Gmail handling: which mailboxes a labels-mode backup reads, and how a labelled snapshot restores to a server without labels.
import type { ListResponse } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planMailboxes } from '../../../integrations/imap/importer.ts';
import { messageFileName } from '../../../integrations/imap/map.ts';
import { MODE, type ExportEntry } from '../../harness/index.ts';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { accountConfig, inspect, restore } from './helpers.ts';

/** A LIST answer shaped like Gmail's. */
function gmailList(): ListResponse[] {
  const box = (path: string, flags: string[], specialUse?: string): ListResponse =>
    ({ path, delimiter: '/', flags: new Set(flags), specialUse, specialUseSource: specialUse ? 'extension' : undefined, listed: true, subscribed: true }) as unknown as ListResponse;
  return [
    box('INBOX', ['\\HasNoChildren'], '\\Inbox'),
    box('Work', ['\\HasChildren']),
    box('Work/Clients', ['\\HasNoChildren']),
    box('[Gmail]', ['\\Noselect', '\\HasChildren']),
    box('[Gmail]/All Mail', ['\\All'], '\\All'),
    box('[Gmail]/Drafts', ['\\Drafts'], '\\Drafts'),
    box('[Gmail]/Sent Mail', ['\\Sent'], '\\Sent'),
    box('[Gmail]/Spam', ['\\Junk'], '\\Junk'),
    box('[Gmail]/Starred', ['\\Flagged'], '\\Flagged'),
    box('[Gmail]/Trash', ['\\Trash'], '\\Trash'),
  ];
}

describe('imap importer: Gmail', () => {
  it('in labels mode reads All Mail, Spam and Trash once each, and no label folder', () => {
    expect(planMailboxes(gmailList(), [], [], [], true).map((p) => p.name)).toEqual(['[Gmail]/All Mail', '[Gmail]/Spam', '[Gmail]/Trash']);
  });
  it('in folders mode reads every selectable folder like any server', () => {
    const plans = planMailboxes(gmailList(), [], [], [], false);
    expect(plans.filter((p) => p.selectable).length).toBe(9);
    expect(plans.find((p) => p.name === '[Gmail]/All Mail')?.specialUse).toBe('\\All');
  });
});

let d: Dovecot;
beforeAll(async () => {
  d = await startDovecot();
});
afterAll(async () => {
  await d?.stop();
});

describe('imap exporter: a Gmail snapshot restored to another server', () => {
  it('puts each labelled message in the folder of each label, keeps unlabelled ones in All Mail, and maps \\Starred to \\Flagged', async () => {
    const msg = (n: number) => Buffer.from(`Message-ID: <g${n}@gmail>\r\nSubject: g${n}\r\n\r\nbody ${n}\r\n`);
    const file = (n: number, flags: string[], labels: string[]): ExportEntry => ({
      path: `/[Gmail]/All Mail/${messageFileName(n, flags, `g${n}`)}`,
      info: { mode: 0o600, size: msg(n).length, modTime: { seconds: 1_600_000_000 + n, nanos: 0 } },
      xattrs: labels.map((l) => `imap.gmail-label=${l}`),
      content: msg(n),
    });
    const entries: ExportEntry[] = [
      { path: '/', info: { name: '/', mode: (MODE.DIR | 0o700) >>> 0 } },
      { path: '/[Gmail]', info: { mode: (MODE.DIR | 0o700) >>> 0 } },
      { path: '/[Gmail]/All Mail', info: { mode: (MODE.DIR | 0o700) >>> 0 }, xattrs: ['imap.special-use=\\All', 'imap.uidvalidity=5'] },
      file(1, ['\\Seen'], ['\\Inbox', '\\Important']),
      file(2, [], ['\\Inbox', 'Work/Clients', '\\Starred']),
      file(3, ['\\Seen'], ['\\Sent']),
      file(4, [], []),
      file(5, ['\\Seen'], ['\\Important']),
    ];
    for (let run = 0; run < 2; run++) {
      const out = await restore(entries, accountConfig(d, 'alice'));
      expect(out.itemErrors).toEqual([]);
    }
    const got = await inspect(d, 'alice');
    const count = (box: string) => got.get(box)?.messages.length ?? -1;
    expect(count('INBOX')).toBe(2);
    expect(count('Work/Clients')).toBe(1);
    expect(got.get('Work/Clients')?.messages[0]?.flags).toEqual(['\\Flagged']);
    expect(count('Sent')).toBe(1);
    expect(count('[Gmail]/All Mail')).toBe(2);
  });
});
