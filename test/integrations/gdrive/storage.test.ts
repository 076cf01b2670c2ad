// gdrive storage specifics beyond the conformance suite: the folder layout, replacing without duplicates across
// processes, concurrent creation of fan-out folders, request counts of small Puts, and indexing for restores.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESOURCE } from '../../harness/index.ts';
import { MIME } from '../../servers/drive-emulator.ts';
import { connect, startDrive, type TestDrive } from './helpers.ts';

let drive: TestDrive;
beforeAll(async () => {
  drive = await startDrive();
});
afterAll(async () => {
  await drive.close();
});

/** Objects in the big repository (issue #7: 5,000); GDRIVE_TEST_OBJECTS changes it. */
const OBJECTS = Number(process.env.GDRIVE_TEST_OBJECTS ?? 5000);

const mac = (byte: number, second = byte): Buffer => Buffer.concat([Buffer.from([byte, second]), Buffer.alloc(30, byte)]);

describe('gdrive storage: layout and writes', () => {
  it('keeps CONFIG, packfiles/<2hex>/<64hex>, states/<2hex>/<64hex> and locks/<64hex> in the repository folder', async () => {
    const s = await connect('storage', drive.config('gdrive:///layout/repo', { cache: 'false' }));
    await s.host.create(Buffer.from('_KLOSET_layout'));
    await s.host.put(RESOURCE.PACKFILE, mac(0xab), Buffer.from('p'));
    await s.host.put(RESOURCE.STATE, mac(0x01), Buffer.from('s'));
    await s.host.put(RESOURCE.LOCK, mac(0xff), Buffer.from('l'));
    s.close();
    const e = drive.emu;
    expect(e.lookup('layout/repo/CONFIG')?.size).toBe(14);
    expect(e.lookup(`layout/repo/packfiles/ab/${mac(0xab).toString('hex')}`)?.size).toBe(1);
    expect(e.lookup(`layout/repo/states/01/${mac(0x01).toString('hex')}`)?.size).toBe(1);
    expect(e.lookup(`layout/repo/locks/${mac(0xff).toString('hex')}`)?.size).toBe(1);
    expect(e.children(e.lookup('layout/repo')?.id as string).map((c) => [c.name, c.mimeType === MIME.folder]).sort()).toEqual([
      ['CONFIG', false],
      ['locks', true],
      ['packfiles', true],
      ['states', true],
    ]);
  });

  it('a small Put is one request once the folders exist; a large one streams a resumable upload in chunks', async () => {
    const e = drive.emu;
    const s = await connect('storage', drive.config('gdrive:///counts', { chunk_size: '256KiB', cache: 'false' }));
    await s.host.create(Buffer.from('_KLOSET_counts'));
    await s.host.put(RESOURCE.PACKFILE, mac(0x10, 1), Buffer.from('warm up the folders'));
    e.resetStats();
    await s.host.put(RESOURCE.PACKFILE, mac(0x10, 2), Buffer.alloc(1000));
    expect(e.stats.requests).toBe(1);
    e.resetStats();
    await s.host.put(RESOURCE.PACKFILE, mac(0x10, 3), Buffer.alloc(1024 * 1024 + 1));
    expect(e.stats.byRoute).toEqual({ upload: 1, chunk: 5 });
    s.close();
  });

  it('a Put of an existing name replaces its content in place, also from another process', async () => {
    const e = drive.emu;
    const a = await connect('storage', drive.config('gdrive:///replace', { cache: 'false' }));
    await a.host.create(Buffer.from('_KLOSET_replace'));
    await a.host.put(RESOURCE.LOCK, mac(0x22), Buffer.from('from a'));
    const b = await connect('storage', drive.config('gdrive:///replace', { cache: 'false' }));
    await b.host.put(RESOURCE.LOCK, mac(0x22), Buffer.alloc(3 * 1024 * 1024, 7));
    await a.host.put(RESOURCE.LOCK, mac(0x22), Buffer.from('from a again'));
    const locks = e.children(e.lookup('replace/locks')?.id as string);
    expect(locks.map((l) => l.name)).toEqual([mac(0x22).toString('hex')]);
    expect((await b.host.get(RESOURCE.LOCK, mac(0x22))).toString()).toBe('from a again');
    a.close();
    b.close();
  });

  it('an object stored twice by racing processes is listed once, and the next Put leaves one copy', async () => {
    const e = drive.emu;
    const s = await connect('storage', drive.config('gdrive:///racing', { cache: 'false' }));
    await s.host.create(Buffer.from('_KLOSET_racing'));
    await s.host.put(RESOURCE.STATE, mac(0x5a), Buffer.from('first'));
    // Another process stored the same name at the same time, before either saw the other's file.
    const folder = e.lookup('racing/states/5a')?.id as string;
    await e.createFile(folder, mac(0x5a).toString('hex'), 'second', { modifiedTime: new Date(Date.now() + 1000).toISOString() });
    s.close();
    const other = await connect('storage', drive.config('gdrive:///racing', { cache: 'false' }));
    expect((await other.host.list(RESOURCE.STATE)).map((m) => m.toString('hex'))).toEqual([mac(0x5a).toString('hex')]);
    expect((await other.host.get(RESOURCE.STATE, mac(0x5a))).toString()).toBe('second');
    await other.host.put(RESOURCE.STATE, mac(0x5a), Buffer.from('third'));
    expect(e.children(folder).map((c) => c.name)).toEqual([mac(0x5a).toString('hex')]);
    expect((await other.host.get(RESOURCE.STATE, mac(0x5a))).toString()).toBe('third');
    other.close();
  });

  it('fan-out folders created twice by concurrent processes are both used', async () => {
    const e = drive.emu;
    const s = await connect('storage', drive.config('gdrive:///twins', { cache: 'false' }));
    await s.host.create(Buffer.from('_KLOSET_twins'));
    await s.host.put(RESOURCE.PACKFILE, mac(0xcd, 1), Buffer.from('one'));
    // Another process raced this one and made its own packfiles/cd, with an object in it.
    const packfiles = e.lookup('twins/packfiles')?.id as string;
    const twin = e.createFolder(packfiles, 'cd');
    await e.createFile(twin, mac(0xcd, 2).toString('hex'), 'two');
    const other = await connect('storage', drive.config('gdrive:///twins', { cache: 'false' }));
    const listed = (await other.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex')).sort();
    expect(listed).toEqual([mac(0xcd, 1).toString('hex'), mac(0xcd, 2).toString('hex')].sort());
    expect((await other.host.get(RESOURCE.PACKFILE, mac(0xcd, 2))).toString()).toBe('two');
    expect((await other.host.get(RESOURCE.PACKFILE, mac(0xcd, 1))).toString()).toBe('one');
    await other.host.delete(RESOURCE.PACKFILE, mac(0xcd, 2));
    expect((await other.host.list(RESOURCE.PACKFILE)).length).toBe(1);
    s.close();
    other.close();
  });

  it('two processes on one repository (the command and its cache daemon) see what the other stored: Gets, Lists, folders it made', async () => {
    const e = drive.emu;
    const a = await connect('storage', drive.config('gdrive:///pair', { cache: 'false' }));
    await a.host.create(Buffer.from('_KLOSET_pair'));
    const b = await connect('storage', drive.config('gdrive:///pair', { cache: 'false' }));
    const hex = (m: Buffer): string => m.toString('hex');
    // First Puts at the same time: both may create packfiles/ and packfiles/31/; each must still find the other's.
    await Promise.all([a.host.put(RESOURCE.PACKFILE, mac(0x31, 1), Buffer.from('a1')), b.host.put(RESOURCE.PACKFILE, mac(0x31, 2), Buffer.from('b2'))]);
    expect((await a.host.get(RESOURCE.PACKFILE, mac(0x31, 2))).toString()).toBe('b2');
    expect((await b.host.get(RESOURCE.PACKFILE, mac(0x31, 1))).toString()).toBe('a1');
    // b stores into a fan-out folder a has not seen, after a listed and remembered the folders.
    expect((await a.host.list(RESOURCE.PACKFILE)).map(hex).sort()).toEqual([hex(mac(0x31, 1)), hex(mac(0x31, 2))].sort());
    await b.host.put(RESOURCE.PACKFILE, mac(0x32), Buffer.from('b3'));
    expect((await a.host.get(RESOURCE.PACKFILE, mac(0x32))).toString()).toBe('b3');
    // A third process made its own copy of packfiles/31 after a remembered the folder: a Get and a List still find it.
    const packfiles = e.children(e.lookup('pair')?.id as string).filter((c) => c.name === 'packfiles');
    const twin = e.createFolder(packfiles[0]?.id as string, '31');
    await e.createFile(twin, hex(mac(0x31, 3)), 'c3');
    expect((await a.host.get(RESOURCE.PACKFILE, mac(0x31, 3))).toString()).toBe('c3');
    const all = [mac(0x31, 1), mac(0x31, 2), mac(0x31, 3), mac(0x32)].map(hex).sort();
    expect((await b.host.list(RESOURCE.PACKFILE)).map(hex).sort()).toEqual(all);
    expect((await a.host.list(RESOURCE.PACKFILE)).map(hex).sort()).toEqual(all);
    // Whichever of the copies each process created, both now write to the same (oldest) folders.
    await a.host.put(RESOURCE.PACKFILE, mac(0x31, 4), Buffer.from('a4'));
    await b.host.put(RESOURCE.PACKFILE, mac(0x31, 5), Buffer.from('b5'));
    const folders31 = e
      .children(e.lookup('pair')?.id as string)
      .filter((c) => c.name === 'packfiles')
      .flatMap((p) => e.children(p.id).filter((c) => c.name === '31'));
    const holder = (m: Buffer): string | undefined => folders31.find((f) => e.children(f.id).some((c) => c.name === hex(m)))?.id;
    expect(holder(mac(0x31, 4))).toBeDefined();
    expect(holder(mac(0x31, 4))).toBe(holder(mac(0x31, 5)));
    expect((await b.host.get(RESOURCE.PACKFILE, mac(0x31, 4))).toString()).toBe('a4');
    expect((await a.host.get(RESOURCE.PACKFILE, mac(0x31, 5))).toString()).toBe('b5');
    a.close();
    b.close();
  });

  it('ranged Gets read each answer to its end, so connections go back to the pool instead of piling up', async () => {
    const e = drive.emu;
    const s = await connect('storage', drive.config('gdrive:///pooled', { cache: 'false' }));
    await s.host.create(Buffer.from('_KLOSET_pooled'));
    const body = Buffer.from(Array.from({ length: 200_000 }, (_, i) => i % 251));
    await s.host.put(RESOURCE.PACKFILE, mac(0x33), body);
    expect((await s.host.get(RESOURCE.PACKFILE, mac(0x33), { offset: 0, length: 1 })).equals(body.subarray(0, 1))).toBe(true);
    e.resetStats();
    for (let i = 0; i < 100; i++) {
      // Small ranges as a restore reads, and ranges of several socket reads.
      const length = i % 2 === 0 ? 720 : 64 * 1024 + i;
      const offset = (i * 1999) % (body.length - length);
      expect((await s.host.get(RESOURCE.PACKFILE, mac(0x33), { offset, length })).equals(body.subarray(offset, offset + length))).toBe(true);
    }
    s.close();
    expect(e.stats.byRoute.media).toBe(100);
    // One Get at a time: a client that reads to the end of each answer reuses one or two sockets.
    expect(e.stats.connections, `${e.stats.connections} connections`).toBeLessThan(10);
  });

  it('a restore that reads many objects indexes the repository with one listing instead of a lookup each', async () => {
    const e = drive.emu;
    const w = await connect('storage', drive.config('gdrive:///indexed', { cache: 'false' }));
    await w.host.create(Buffer.from('_KLOSET_indexed'));
    const macs = Array.from({ length: 60 }, (_, i) => mac(i, i + 1));
    for (const m of macs) await w.host.put(RESOURCE.PACKFILE, m, m);
    w.close();
    const r = await connect('storage', drive.config('gdrive:///indexed', { cache: 'false' }));
    e.resetStats();
    for (const m of macs) expect((await r.host.get(RESOURCE.PACKFILE, m, { offset: 2, length: 8 })).equals(m.subarray(2, 10))).toBe(true);
    r.close();
    expect(e.stats.byRoute.media).toBe(60);
    // 15 lookups, then the listing: the fan-out folders (1 page) and their files (2 queries of 50 folders): far fewer than 60.
    expect(e.stats.byRoute.list ?? 0).toBeLessThan(30);
  });

  it('a repository in a shared drive, and below root_folder_id', async () => {
    const e = drive.emu;
    const team = e.createSharedDrive('Repos');
    const holder = e.createFolder(undefined, 'repo-holder');
    for (const extra of [{ drive: 'Repos' }, { root_folder_id: holder }] as Array<Record<string, string>>) {
      const s = await connect('storage', drive.config('gdrive:///kloset', { cache: 'false', chunk_size: '256KiB', ...extra }));
      await s.host.create(Buffer.from('_KLOSET_shared'));
      await s.host.put(RESOURCE.PACKFILE, mac(0x44), Buffer.alloc(600_000, 4));
      await s.host.put(RESOURCE.STATE, mac(0x45), Buffer.from('state'));
      s.close();
      const r = await connect('storage', drive.config('gdrive:///kloset', { cache: 'false', ...extra }));
      expect((await r.host.open()).toString()).toBe('_KLOSET_shared');
      expect((await r.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex'))).toEqual([mac(0x44).toString('hex')]);
      expect((await r.host.get(RESOURCE.PACKFILE, mac(0x44), { offset: 599_990, length: 10 })).equals(Buffer.alloc(10, 4))).toBe(true);
      r.close();
    }
    expect(e.lookup(`kloset/packfiles/44/${mac(0x44).toString('hex')}`, team)?.driveId).toBe(team);
    expect(e.lookup(`repo-holder/kloset/states/45/${mac(0x45).toString('hex')}`)?.size).toBe(5);
  });

  it(`a repository of ${OBJECTS} objects: List pages through every fan-out folder, Gets, Puts and Deletes find the right ones`, { timeout: 600_000 }, async () => {
    const e = drive.emu;
    const s = await connect('storage', drive.config('gdrive:///many', { cache: 'false' }));
    await s.host.create(Buffer.from('_KLOSET_many'));
    s.close();
    // Seeded straight into the emulator in the repository layout (the bench times Puts through the connector).
    const packfiles = e.lookup('many/packfiles')?.id ?? e.createFolder(e.lookup('many')?.id as string, 'packfiles');
    const fanout = new Map<string, string>();
    const macs: Buffer[] = [];
    for (let i = 0; i < OBJECTS; i++) {
      const m = createHash('sha256').update(`object ${i}`).digest();
      const hex = m.toString('hex');
      let folder = fanout.get(hex.slice(0, 2));
      if (!folder) {
        folder = e.createFolder(packfiles, hex.slice(0, 2));
        fanout.set(hex.slice(0, 2), folder);
      }
      await e.createFile(folder, hex, `content of ${hex}`);
      macs.push(m);
    }
    expect(fanout.size).toBe(OBJECTS >= 2000 ? 256 : fanout.size);

    const r = await connect('storage', drive.config('gdrive:///many', { cache: 'false' }));
    e.resetStats();
    const listed = (await r.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex')).sort();
    expect(listed).toEqual(macs.map((m) => m.toString('hex')).sort());
    // Pages of 1000 over 50 folders per query: a handful of requests, not one per folder or per object.
    expect(e.stats.byRoute.list ?? 0).toBeLessThanOrEqual(2 + Math.ceil(fanout.size / 50) * 2 + Math.ceil(OBJECTS / 1000));

    for (let i = 0; i < OBJECTS; i += Math.ceil(OBJECTS / 40)) {
      const hex = (macs[i] as Buffer).toString('hex');
      expect((await r.host.get(RESOURCE.PACKFILE, macs[i] as Buffer)).toString()).toBe(`content of ${hex}`);
      expect((await r.host.get(RESOURCE.PACKFILE, macs[i] as Buffer, { offset: 11, length: 6 })).toString()).toBe(hex.slice(0, 6));
    }
    const added = Array.from({ length: 10 }, (_, i) => createHash('sha256').update(`added ${i}`).digest());
    for (const m of added) await r.host.put(RESOURCE.PACKFILE, m, m);
    await r.host.put(RESOURCE.PACKFILE, macs[0] as Buffer, Buffer.from('replaced'));
    for (const m of macs.slice(1, 6)) await r.host.delete(RESOURCE.PACKFILE, m);
    r.close();

    const again = await connect('storage', drive.config('gdrive:///many', { cache: 'false' }));
    const after = new Set((await again.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex')));
    expect(after.size).toBe(OBJECTS + 10 - 5);
    for (const m of added) expect(after.has(m.toString('hex'))).toBe(true);
    for (const m of macs.slice(1, 6)) expect(after.has(m.toString('hex'))).toBe(false);
    expect((await again.host.get(RESOURCE.PACKFILE, macs[0] as Buffer)).toString()).toBe('replaced');
    const hex0 = (macs[0] as Buffer).toString('hex');
    expect(e.children(fanout.get(hex0.slice(0, 2)) as string).filter((c) => c.name === hex0)).toHaveLength(1);
    again.close();
  });
});
