// The gdrive importer against the Drive emulator: duplicate names, Google documents, shortcuts, unicode, empty files,
// shared drives, root_folder_id, "Shared with me", streaming, and Init errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XATTR_ID, XATTR_MIME } from '../../../integrations/gdrive/api.ts';
import type { ImportOutcome, WireRecord } from '../../harness/index.ts';
import { MIME } from '../../servers/drive-emulator.ts';
import { connect, connectRaw, startDrive, type TestDrive } from './helpers.ts';

let drive: TestDrive;
beforeAll(async () => {
  drive = await startDrive({ exportSizeLimit: 64 * 1024 });
});
afterAll(async () => {
  await drive.close();
});

async function importAll(location: string, extra: Record<string, string> = {}): Promise<ImportOutcome & { byPath: Map<string, WireRecord> }> {
  const c = await connect('importer', drive.config(location, extra));
  try {
    const out = await c.host.importAll({ content: 'bytes' });
    expect(out.status.code, out.status.details).toBe(0);
    const byPath = new Map(out.records.filter((r) => !r.isXattr).map((r) => [r.pathname, r]));
    return Object.assign(out, { byPath });
  } finally {
    c.close();
  }
}

const text = (out: ImportOutcome, path: string): string | undefined => (out.contents.get(path) as Buffer | undefined)?.toString('utf8');
const t = (s: number): string => new Date(Date.UTC(2024, 0, 1, 0, 0, s)).toISOString();

describe('gdrive importer: duplicate names', () => {
  it('keeps the oldest name, gives the others their id, and stays stable when another duplicate appears', async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'dups', { createdTime: t(0) });
    const a1 = await e.createFile(top, 'a.txt', 'first', { createdTime: t(1) });
    const a2 = await e.createFile(top, 'a.txt', 'second', { createdTime: t(2) });
    const p1 = e.createFolder(top, 'Photos', { createdTime: t(3) });
    const p2 = e.createFolder(top, 'Photos', { createdTime: t(4) });
    await e.createFile(p1, 'x.jpg', 'one', { createdTime: t(5) });
    await e.createFile(p2, 'x.jpg', 'two', { createdTime: t(5) });
    e.createGoogleDoc(top, 'Budget', 'spreadsheet', 'cells', { createdTime: t(6) });
    const realXlsx = await e.createFile(top, 'Budget.xlsx', 'a real file', { createdTime: t(7) });
    // Same creation instant: the smaller id keeps the name, whatever order Drive lists them in.
    const s1 = await e.createFile(top, 'same.txt', 'tie one', { createdTime: t(8) });
    const s2 = await e.createFile(top, 'same.txt', 'tie two', { createdTime: t(8) });
    const [tieWinner, tieLoser] = s1 < s2 ? [s1, s2] : [s2, s1];

    const first = await importAll('gdrive:///dups');
    expect(text(first, '/dups/a.txt')).toBe('first');
    expect(text(first, `/dups/a (${a2}).txt`)).toBe('second');
    expect(text(first, '/dups/Photos/x.jpg')).toBe('one');
    expect(text(first, `/dups/Photos (${p2})/x.jpg`)).toBe('two');
    expect(first.byPath.get('/dups/Budget.xlsx')?.fileInfo?.size).toBe(-1);
    expect(text(first, `/dups/Budget (${realXlsx}).xlsx`)).toBe('a real file');
    expect(text(first, '/dups/same.txt')).toBe(e.file(tieWinner)?.name === 'same.txt' ? (tieWinner === s1 ? 'tie one' : 'tie two') : undefined);
    expect(first.byPath.has(`/dups/same (${tieLoser}).txt`)).toBe(true);
    expect(a1).toBeTruthy();

    await e.createFile(top, 'a.txt', 'third', { createdTime: t(9) });
    const second = await importAll('gdrive:///dups');
    for (const [path, r] of first.byPath) {
      expect(second.byPath.get(path)?.fileInfo, path).toEqual(r.fileInfo);
      if (first.contents.has(path)) expect(second.contents.get(path), path).toEqual(first.contents.get(path));
    }
    expect(second.byPath.size).toBe(first.byPath.size + 1);
  });
});

describe('gdrive importer: Google documents', () => {
  it('exports them in the configured formats with size -1, keeping id and native type as xattrs', async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'gdocs');
    const doc = e.createGoogleDoc(top, 'Notes', 'document', 'hello doc', { modifiedTime: '2023-05-06T07:08:09.123Z' });
    e.createGoogleDoc(top, 'Sheet', 'spreadsheet', 'a,b');
    e.createGoogleDoc(top, 'Deck', 'presentation', 'slides');
    e.createGoogleDoc(top, 'Drawing', 'drawing', '<svg/>');
    e.createGoogleDoc(top, 'Survey', 'form', 'questions');

    const out = await importAll('gdrive:///gdocs');
    const notes = out.byPath.get('/gdocs/Notes.docx');
    expect(notes?.fileInfo?.size).toBe(-1);
    expect(notes?.fileInfo?.modTime).toEqual({ seconds: Date.parse('2023-05-06T07:08:09Z') / 1000, nanos: 123_000_000 });
    expect(notes?.extendedAttributes).toEqual([XATTR_ID, XATTR_MIME]);
    expect(text(out, `xattr:/gdocs/Notes.docx:${XATTR_ID}`)).toBe(doc);
    expect(text(out, `xattr:/gdocs/Notes.docx:${XATTR_MIME}`)).toBe(MIME.document);
    expect(text(out, '/gdocs/Notes.docx')).toBe(`KLOSET-EMU-EXPORT ${MIME.docx}\nhello doc`);
    expect([...out.byPath.keys()].sort()).toEqual(['/gdocs', '/gdocs/Deck.pptx', '/gdocs/Drawing.svg', '/gdocs/Notes.docx', '/gdocs/Sheet.xlsx']);

    const odf = await importAll('gdrive:///gdocs', { export_formats: 'odt,ods,pdf' });
    expect([...odf.byPath.keys()].sort()).toEqual(['/gdocs', '/gdocs/Deck.pdf', '/gdocs/Drawing.pdf', '/gdocs/Notes.odt', '/gdocs/Sheet.ods']);
    expect(text(odf, '/gdocs/Sheet.ods')).toBe(`KLOSET-EMU-EXPORT ${MIME.ods}\na,b`);

    const skipped = await importAll('gdrive:///gdocs', { skip_gdocs: 'true' });
    expect([...skipped.byPath.keys()]).toEqual(['/gdocs']);
  });

  it('an export over Google\'s size limit is an error for that document only, naming it', async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'bigdoc');
    const big = e.createGoogleDoc(top, 'Huge report', 'document', 'x'.repeat(100 * 1024));
    await e.createFile(top, 'fine.txt', 'fine');
    const c = await connect('importer', drive.config('gdrive:///bigdoc'));
    const out = await c.host.importAll({ content: 'bytes' });
    c.close();
    expect(out.status.code).toBe(0);
    expect(out.itemErrors.map((x) => x.pathname)).toEqual(['/bigdoc/Huge report.docx']);
    const msg = out.itemErrors[0]?.message ?? '';
    expect(msg).toContain(`Google document "Huge report" (${big}) is too large to be exported as docx`);
    expect(msg).toMatch(/^failed to receive file data: gdrive importer: cannot read \/bigdoc\/Huge report\.docx: /);
    expect(text(out, '/bigdoc/fine.txt')).toBe('fine');
  });
});

describe('gdrive importer: shortcuts', () => {
  let ids: Record<string, string>;
  beforeAll(async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'sc');
    const a = e.createFolder(top, 'A');
    const f = await e.createFile(a, 'f.txt', 'target file', { modifiedTime: '2022-02-02T02:02:02.000Z' });
    const d = e.createGoogleDoc(a, 'D', 'document', 'doc body');
    const b = e.createFolder(top, 'B');
    const gone = await e.createFile(top, 'gone.txt', 'bye');
    e.createShortcut(b, 'to-f', f);
    e.createShortcut(b, 'to-D', d);
    e.createShortcut(b, 'to-A', a);
    e.createShortcut(b, 'to-B', b);
    e.createShortcut(b, 'dangling', gone);
    e.trash(gone);
    ids = { f, d, a, b, gone };
  });

  it('follow: targets are backed up in place, folders in full, never into a cycle; dangling ones are skipped', async () => {
    const out = await importAll('gdrive:///sc', { shortcuts: 'follow' });
    expect(out.errors).toEqual([]);
    expect(text(out, '/sc/B/to-f')).toBe('target file');
    expect(out.byPath.get('/sc/B/to-f')?.fileInfo?.modTime?.seconds).toBe(Date.parse('2022-02-02T02:02:02Z') / 1000);
    expect(text(out, '/sc/B/to-D.docx')).toBe(`KLOSET-EMU-EXPORT ${MIME.docx}\ndoc body`);
    expect(text(out, '/sc/B/to-A/f.txt')).toBe('target file');
    expect(out.byPath.has('/sc/B/to-A/D.docx')).toBe(true);
    expect([...out.byPath.keys()].filter((p) => p.startsWith('/sc/B/to-B') || p.includes('dangling'))).toEqual([]);
  });

  it('skip: shortcuts are left out', async () => {
    const out = await importAll('gdrive:///sc', { shortcuts: 'skip' });
    expect([...out.byPath.keys()].filter((p) => p.startsWith('/sc/B/'))).toEqual([]);
  });

  it('link: symbolic links to the relative path of targets in the backup, gdrive:<id> otherwise', async () => {
    const out = await importAll('gdrive:///sc', { shortcuts: 'link' });
    const target = (p: string): string | undefined => out.byPath.get(p)?.target;
    expect(target('/sc/B/to-f')).toBe('../A/f.txt');
    expect(target('/sc/B/to-D')).toBe('../A/D.docx');
    expect(target('/sc/B/to-A')).toBe('../A');
    expect(target('/sc/B/to-B')).toBe('.');
    expect(target('/sc/B/dangling')).toBe(`gdrive:${ids.gone}`);
  });
});

describe('gdrive importer: names and sizes', () => {
  it('keeps unicode names, encodes slashes and dot names, and reads empty files', async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'names');
    const names = ['日本語のファイル.txt', 'Ωmega ≠ alpha.txt', 'emoji 🎉.txt', 'a/b.txt', '..', 'percent%2Fliteral', 'tab\there'];
    for (const n of names) await e.createFile(top, n, `content of ${n}`);
    await e.createFile(top, 'empty.bin', '');
    const out = await importAll('gdrive:///names');
    const want = {
      '/names/日本語のファイル.txt': '日本語のファイル.txt',
      '/names/Ωmega ≠ alpha.txt': 'Ωmega ≠ alpha.txt',
      '/names/emoji 🎉.txt': 'emoji 🎉.txt',
      '/names/a%2Fb.txt': 'a/b.txt',
      '/names/%2E%2E': '..',
      '/names/percent%252Fliteral': 'percent%2Fliteral',
      '/names/tab%09here': 'tab\there',
    };
    for (const [path, name] of Object.entries(want)) expect(text(out, path), path).toBe(`content of ${name}`);
    const jp = '/names/日本語のファイル.txt';
    expect(out.byPath.get(jp)?.extendedAttributes).toEqual(['user.gdrive.md5']);
    expect(text(out, `xattr:${jp}:user.gdrive.md5`)).toBe(drive.emu.lookup('names/日本語のファイル.txt')?.md5);
    const empty = out.byPath.get('/names/empty.bin');
    expect(empty?.fileInfo?.size).toBe(0);
    expect(out.contents.get('/names/empty.bin')?.length).toBe(0);
  });

  it('excludes trashed items and files in trashed folders', async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'trash');
    const gone = await e.createFile(top, 'gone.txt', 'x');
    e.trash(gone);
    await e.createFile(top, 'kept.txt', 'y');
    const out = await importAll('gdrive:///trash');
    expect([...out.byPath.keys()].sort()).toEqual(['/trash', '/trash/kept.txt']);
  });
});

describe('gdrive importer: where the tree starts', () => {
  it('the whole of My Drive, with a stable origin naming the account', async () => {
    const c = await connect('importer', drive.config('gdrive://'));
    expect(c.host.initResult).toMatchObject({ origin: 'drive.google.com/alice@example.com', root: '/', type: 'gdrive' });
    const out = await c.host.importAll({ openContent: false });
    c.close();
    expect(out.records.some((r) => r.pathname === '/names/emoji 🎉.txt')).toBe(true);
  });

  it('a shared drive by name or id, and root_folder_id', async () => {
    const e = drive.emu;
    const team = e.createSharedDrive('Team');
    const f = e.createFolder(team, 'Reports');
    await e.createFile(f, 'q1.csv', 'q1');
    for (const driveOpt of ['Team', team]) {
      const c = await connect('importer', drive.config('gdrive:///Reports', { drive: driveOpt }));
      expect(c.host.initResult?.origin).toBe(`drive.google.com/alice@example.com/drives/${team}`);
      const out = await c.host.importAll({ content: 'bytes' });
      c.close();
      expect(text(out, '/Reports/q1.csv')).toBe('q1');
    }
    const whole = await importAll('gdrive://', { drive: 'Team' });
    expect(text(whole, '/Reports/q1.csv')).toBe('q1');

    const byId = await connect('importer', drive.config('gdrive://', { root_folder_id: f }));
    expect(byId.host.initResult?.origin).toBe(`drive.google.com/alice@example.com/folders/${f}`);
    const out = await byId.host.importAll({ content: 'bytes' });
    byId.close();
    expect(text(out, '/q1.csv')).toBe('q1');

    e.createSharedDrive('Twin');
    e.createSharedDrive('Twin');
    const twin = connectRaw('importer');
    await expect(twin.host.init('importer', 'gdrive', drive.config('gdrive://', { drive: 'Twin' }))).rejects.toThrow(
      /^gdrive importer: option drive: 2 shared drives are named "Twin"; give the id of one: /,
    );
    twin.close();
  });

  it('the "Shared with me" view', async () => {
    const e = drive.emu;
    const bobRoot = e.addUser('bob@example.com');
    const shared = e.createFolder(bobRoot, 'Bob shares this');
    await e.createFile(shared, 'inside.txt', 'from bob');
    const single = await e.createFile(bobRoot, 'single.txt', 'one file');
    await e.createFile(bobRoot, 'private.txt', 'not shared');
    e.shareWith(shared, 'alice@example.com');
    e.shareWith(single, 'alice@example.com');
    const c = await connect('importer', drive.config('gdrive://', { shared_with_me: 'true' }));
    expect(c.host.initResult?.origin).toBe('drive.google.com/alice@example.com/shared-with-me');
    const out = await c.host.importAll({ content: 'bytes' });
    c.close();
    expect(text(out, '/Bob shares this/inside.txt')).toBe('from bob');
    expect(text(out, '/single.txt')).toBe('one file');
    expect(out.records.some((r) => r.pathname.includes('private'))).toBe(false);
  });

  it('a missing folder or a bad combination fails Init with a clear message', async () => {
    const cases: Array<[Record<string, string>, string | RegExp]> = [
      [drive.config('gdrive:///no/such/folder'), 'gdrive importer: folder "/no/such/folder" not found in My Drive of alice@example.com'],
      [drive.config('gdrive:///x', { shared_with_me: 'true' }), 'gdrive importer: option location: shared_with_me backs up the whole "Shared with me" view: use gdrive:// as the location'],
      [drive.config('gdrive://', { drive: 'Team', root_folder_id: '1abcdefghijk' }), 'gdrive importer: option root_folder_id: cannot be combined with drive: give one starting point'],
      [drive.config('gdrive://', { root_folder_id: '1doesnotexist000' }), 'gdrive importer: option root_folder_id: no folder with id 1doesnotexist000 is visible to alice@example.com'],
      [drive.config('gdrive://', { drive: 'Nope' }), 'gdrive importer: option drive: no shared drive named "Nope" is visible to alice@example.com'],
      [drive.config('s3://bucket'), 'gdrive importer: option location: expected gdrive://[/path] (e.g. gdrive:///Backups), got "s3://bucket"'],
    ];
    for (const [config, message] of cases) {
      const c = connectRaw('importer');
      await expect(c.host.init('importer', 'gdrive', config)).rejects.toThrow(message);
      c.close();
    }
  });
});

describe('gdrive importer: streaming', () => {
  it('lists in pages of 1000 and sends records before the listing is over', async () => {
    const e = drive.emu;
    const top = e.createFolder(undefined, 'many');
    for (let i = 0; i < 2500; i++) await e.createFile(top, `f${i}.txt`, '', { createdTime: t(i % 60) });
    e.resetStats();
    e.latencyMs = 20;
    const c = await connect('importer', drive.config('gdrive:///many'));
    let listsAtFirstFile = -1;
    const out = await c.host.importAll({
      openContent: false,
      onRecord: (r) => {
        if (listsAtFirstFile < 0 && r.pathname.startsWith('/many/f')) listsAtFirstFile = e.stats.byRoute.list ?? 0;
      },
    });
    c.close();
    e.latencyMs = 0;
    expect(out.records.filter((r) => !r.isXattr && r.pathname.startsWith('/many/f'))).toHaveLength(2500);
    // resolve "many" (1) + first page (1): records flow while pages 2 and 3 are still to come.
    expect(listsAtFirstFile).toBeLessThanOrEqual(3);
    expect(e.stats.byRoute.list).toBe(1 + 3);
  });
});
