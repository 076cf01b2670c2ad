// Pure mapping rules of the imap integration: file names (both implementations), keywords, paths, patterns, blob layout.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  buildBlobMessage,
  decodeWindow,
  encodedWindow,
  parseBlobRow,
  partCapacity,
  resolveBlob,
} from '../../../integrations/imap/blob.ts';
import {
  compilePattern,
  decodePercent,
  encodeFlags,
  encodeKeyword,
  guessSpecialUse,
  mailboxSelected,
  mailboxToPath,
  messageFileName,
  parseMessageFileName,
  pathSegments,
  readMetadata,
  safeSubject,
  segmentsToMailbox,
  uidSet,
} from '../../../integrations/imap/map.ts';
import { parseLocation } from '../../../integrations/imap/options.ts';

describe('imap map: message file names', () => {
  it('writes <UID>[,<flags>][-<subject>].eml with sorted letters and keywords, \\Recent dropped', () => {
    expect(messageFileName(12, ['\\Seen', '\\Flagged', '\\Recent', 'Work', '$Junk'], 'Hello, world!')).toBe('12,FS{$Junk}{Work}-Hello__world_.eml');
    expect(messageFileName(7, [], undefined)).toBe('7.eml');
    expect(messageFileName(7, [], '   ')).toBe('7-message.eml');
    expect(messageFileName(3, ['\\Deleted', '\\Draft', '\\Answered'], 'x')).toBe('3,ADT-x.eml');
  });

  it('percent-encodes "-" inside keywords, so the official restore (which cuts at the first "-") keeps them', () => {
    expect(encodeKeyword('todo-2024')).toBe('todo%2D2024');
    expect(encodeFlags(['todo-2024', '\\Seen'])).toBe('S{todo%2D2024}');
    const name = messageFileName(5, ['todo-2024'], 'Re: plan');
    expect(name).toBe('5,{todo%2D2024}-Re__plan.eml');
    // The official parser: cut at the first '-', then decode; our name survives it.
    expect(name.slice(0, name.indexOf('-'))).toBe('5,{todo%2D2024}');
  });

  it('encodes keywords like Go url.PathEscape otherwise', () => {
    expect(encodeKeyword('$Label1')).toBe('$Label1');
    expect(encodeKeyword('a b{c}/d,e;f?g')).toBe('a%20b%7Bc%7D%2Fd%2Ce%3Bf%3Fg');
    expect(encodeKeyword('näive')).toBe('n%C3%A4ive');
    expect(encodeKeyword('a&b+c:d=e@f~g_h.i')).toBe('a&b+c:d=e@f~g_h.i');
  });

  it('parses names written by the official integration, including raw hyphens inside keywords', () => {
    expect(parseMessageFileName('12,S{todo-2024}-Meeting_notes.eml')).toEqual({ uid: 12, flags: ['\\Seen', 'todo-2024'] });
    expect(parseMessageFileName('9,AFT{%24Junk}{x-y-z}.eml')).toEqual({ uid: 9, flags: ['\\Answered', '\\Flagged', '\\Deleted', '$Junk', 'x-y-z'] });
    expect(parseMessageFileName('1-subject-with-dashes.eml')).toEqual({ uid: 1, flags: [] });
    expect(parseMessageFileName('4,D-a.eml')).toEqual({ uid: 4, flags: ['\\Draft'] });
    expect(parseMessageFileName('nonsense.eml')).toEqual({ uid: undefined, flags: [] });
  });

  it('round-trips every flag set through a name', () => {
    const flags = ['\\Seen', '\\Answered', '\\Flagged', '\\Draft', '\\Deleted', 'todo-2024', '$Label1', 'a%b', 'ünï-cödé', 'x}y'];
    expect(parseMessageFileName(messageFileName(99, flags, 'subj-ect')).flags.sort()).toEqual([...flags].sort());
  });

  it('makes subjects ASCII-safe like the official SafeName (one "_" per character, 80 characters)', () => {
    expect(safeSubject('Ünïcödé – café')).toBe('_n_c_d____caf_');
    expect(safeSubject('a'.repeat(100))).toHaveLength(80);
    expect(safeSubject('file.name_ok-1')).toBe('file.name_ok_1');
  });
});

describe('imap map: mailboxes and paths', () => {
  it('percent-encodes each segment split on the server delimiter', () => {
    expect(mailboxToPath('Archive.2024/Q1', '.')).toBe('/Archive/2024%2FQ1');
    expect(mailboxToPath('Archive/2024', '/')).toBe('/Archive/2024');
    expect(mailboxToPath('100% done', '/')).toBe('/100%25 done');
    expect(pathSegments('/Archive/2024%2FQ1')).toEqual(['Archive', '2024/Q1']);
  });

  it('decodes the official encoding (url.PathEscape, UTF-8 escapes) as well as ours', () => {
    expect(pathSegments('/Entw%C3%BCrfe/Sent%20Items')).toEqual(['Entwürfe', 'Sent Items']);
    expect(decodePercent('%_')).toBe('');
    expect(decodePercent('50%zz')).toBe('50%zz');
  });

  it('replaces the destination delimiter inside a segment', () => {
    expect(segmentsToMailbox(['Reports v1.2', 'x'], '.')).toBe('Reports v1_2.x');
    expect(segmentsToMailbox(['a/b', 'c'], '/')).toBe('a_b/c');
    expect(segmentsToMailbox(['a.b', 'c'], '/')).toBe('a.b/c');
  });

  it('selects mailboxes by include/exclude patterns, descendants included', () => {
    const inc = ['Archive', 'Projects/%'].map(compilePattern);
    const exc = ['Archive/2019', 'Junk'].map(compilePattern);
    expect(mailboxSelected(['Archive', '2024'], inc, exc)).toBe(true);
    expect(mailboxSelected(['Archive', '2019', 'x'], inc, exc)).toBe(false);
    expect(mailboxSelected(['Archived'], inc, exc)).toBe(false);
    expect(mailboxSelected(['Projects', 'A', 'deep'], inc, exc)).toBe(true);
    expect(mailboxSelected(['INBOX'], [compilePattern('inbox')], [])).toBe(true);
    expect(mailboxSelected(['Junk'], [], exc)).toBe(false);
  });

  it('carries metadata in extended-attribute names and guesses special use only for well-known names', () => {
    expect(readMetadata(['imap.special-use=\\Sent', 'imap.gmail-label=Work', 'imap.gmail-label=a=b', 'other'])).toEqual(
      new Map([
        ['special-use', ['\\Sent']],
        ['gmail-label', ['Work', 'a=b']],
      ]),
    );
    expect(guessSpecialUse(['Sent Items'])).toBe('\\Sent');
    expect(guessSpecialUse(['[Gmail]', 'All Mail'])).toBe('\\All');
    expect(guessSpecialUse(['Projects', 'Sent'])).toBeUndefined();
  });

  it('compresses UID sets', () => {
    expect(uidSet([1, 2, 3, 5, 7, 8])).toBe('1:3,5,7:8');
    expect(uidSet([])).toBe('');
  });
});

describe('imap options: the location', () => {
  it('parses user, password, host, port and mailbox segments (a %2F stays inside its segment)', () => {
    expect(parseLocation('imap://al%40ice:p%3Ass@Mail.Example.com:1143/Archive/2024%2FQ1', 'imap')).toEqual({
      host: 'mail.example.com',
      port: 1143,
      user: 'al@ice',
      password: 'p:ss',
      segments: ['Archive', '2024/Q1'],
    });
    expect(parseLocation('imaps://[::1]', 'imaps')).toMatchObject({ host: '::1', port: undefined, segments: [] });
    expect(() => parseLocation('imap://', 'imap')).toThrow(/option location: expected imap:\/\//);
    expect(() => parseLocation('http://x', 'imap')).toThrow(/option location/);
  });
});

describe('imap blob format', () => {
  it('lays base64 out in 76-column CRLF lines and decodes any window of it', () => {
    const data = randomBytes(10_000);
    const msg = buildBlobMessage({ resource: 'packfile', name: 'ab'.repeat(32), size: data.length }, data);
    const text = msg.subarray(msg.indexOf('\r\n\r\n') + 4);
    for (const [from, to] of [[0, 1], [1, 2], [56, 58], [57, 114], [100, 9000], [9999, 10_000], [0, 10_000]] as const) {
      const w = encodedWindow(from, to);
      const decoded = decodeWindow(text.subarray(w.start, w.end), w.start);
      expect(decoded?.subarray(w.skip, w.skip + (to - from)).equals(data.subarray(from, to)), `${from}-${to}`).toBe(true);
    }
    expect(decodeWindow(Buffer.from('QUJD\r\nREVG'), 0)).toBeUndefined(); // CRLF in the wrong column: not our layout
  });

  it('sizes parts to fit max_message_size, headers included', () => {
    const cap = partCapacity(64 * 1024);
    const msg = buildBlobMessage({ resource: 'packfile', name: 'cd'.repeat(32), size: cap, split: { put: 'p', index: 0, offset: 0, last: { parts: 1, total: cap } } }, randomBytes(cap));
    expect(msg.length).toBeLessThanOrEqual(64 * 1024);
    expect(parseBlobRow(3, msg.subarray(0, msg.indexOf('\r\n\r\n')))).toMatchObject({ uid: 3, partOf: 'cd'.repeat(32), part: 0, offset: 0, size: cap, parts: 1, total: cap });
  });

  it('picks the newest committed version and lists the rest as garbage, sparing a Put in flight', () => {
    const mac = 'ef'.repeat(32);
    const rows = [
      { uid: 1, mac, size: 3 },
      { uid: 2, partOf: mac, put: 'a', part: 0, offset: 0, size: 5 },
      { uid: 3, partOf: mac, put: 'a', part: 1, offset: 5, size: 2, parts: 2, total: 7 },
      { uid: 4, partOf: mac, put: 'b', part: 0, offset: 0, size: 5 }, // newer Put, not committed yet
    ];
    const r = resolveBlob(rows);
    expect(r.current).toEqual({ commit: 3, size: 7, parts: [{ uid: 2, offset: 0, size: 5 }, { uid: 3, offset: 5, size: 2 }] });
    expect(r.garbage).toEqual([1]);
    expect(resolveBlob([{ uid: 9, partOf: mac, put: 'c', part: 1, offset: 5, size: 2, parts: 2, total: 7 }]).current).toBeUndefined();
  });
});
