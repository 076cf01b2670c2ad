// onedrive storage against the Graph emulator: layout, create/open, put (memory and spilled), ranged get, list, delete.
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESOURCE } from '../../harness/index.ts';
import type { GraphEmulator } from '../../servers/graph-emulator.ts';
import { emulator, filesUnder, itemAt, MANY_OBJECTS, pseudoRandom, served, tempDir } from './helpers.ts';

let emu: GraphEmulator;
beforeAll(async () => {
  emu = await emulator({ pageSize: 100 });
});
afterAll(async () => {
  await emu?.close();
});

const hex = (mac: Buffer): string => mac.toString('hex');

describe('onedrive storage: repository layout', () => {
  it('creates CONFIG and the resource folders, opens it, refuses a second create', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/first'));
    try {
      expect(s.host.initResult).toMatchObject({ origin: emu.me.id, type: 'onedrive', root: '/Repos/first' });
      await expect(s.host.open()).rejects.toThrow(`onedrive storage: no repository at onedrive:///Repos/first (drive ${emu.me.id}) (no CONFIG file)`);
      await s.host.create(Buffer.from('_KLOSET_blob'));
      expect((await s.host.open()).toString()).toBe('_KLOSET_blob');
      await expect(s.host.create(Buffer.from('_KLOSET_other'))).rejects.toThrow(
        `onedrive storage: a repository already exists at onedrive:///Repos/first (drive ${emu.me.id})`,
      );
      expect([...filesUnder(emu, emu.me, '/Repos/first').keys()].sort()).toEqual(['/CONFIG', '/locks', '/packfiles', '/states']);
      expect(await s.host.mode()).toBe(6);
    } finally {
      s.close();
    }
  });

  it('stores every resource type under the fan-out layout and lists, reads and deletes them', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/layout'));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      const objects = [
        { type: RESOURCE.PACKFILE, mac: randomBytes(32), data: pseudoRandom(70_000, 3) },
        { type: RESOURCE.STATE, mac: randomBytes(32), data: pseudoRandom(1_000, 4) },
        { type: RESOURCE.LOCK, mac: randomBytes(32), data: Buffer.from('lock') },
      ];
      for (const o of objects) expect(await s.host.put(o.type, o.mac, o.data)).toBe(o.data.length);
      const tree = [...filesUnder(emu, emu.me, '/Repos/layout').keys()];
      const [p, st, l] = objects.map((o) => hex(o.mac));
      expect(tree).toContain(`/packfiles/${p?.slice(0, 2)}/${p}`);
      expect(tree).toContain(`/states/${st?.slice(0, 2)}/${st}`);
      expect(tree).toContain(`/locks/${l}`);
      for (const o of objects) {
        expect((await s.host.list(o.type)).map(hex)).toEqual([hex(o.mac)]);
        expect((await s.host.get(o.type, o.mac)).equals(o.data)).toBe(true);
      }
      // Ranged reads, as kloset issues them for packfiles.
      const pack = objects[0] as { mac: Buffer; data: Buffer };
      for (const [offset, length] of [[0, 1], [16, 4096], [69_000, 1000], [12_345, 40_000]] as const) {
        expect((await s.host.get(RESOURCE.PACKFILE, pack.mac, { offset, length })).equals(pack.data.subarray(offset, offset + length))).toBe(true);
      }
      for (const o of objects) await s.host.delete(o.type, o.mac);
      for (const o of objects) expect(await s.host.list(o.type)).toEqual([]);
      await expect(s.host.delete(RESOURCE.LOCK, (objects[2] as { mac: Buffer }).mac)).rejects.toThrow(/onedrive storage: lock [0-9a-f]{64} not found in onedrive:\/\/\/Repos\/layout/);
      await expect(s.host.get(RESOURCE.STATE, (objects[1] as { mac: Buffer }).mac)).rejects.toThrow(/state [0-9a-f]{64} not found/);
    } finally {
      s.close();
    }
  });

  it('replaces an existing object on Put and ignores foreign names in List', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/foreign'));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      const mac = randomBytes(32);
      await s.host.put(RESOURCE.LOCK, mac, Buffer.from('first'));
      await s.host.put(RESOURCE.LOCK, mac, Buffer.from('second, longer'));
      expect((await s.host.get(RESOURCE.LOCK, mac)).toString()).toBe('second, longer');
      const pmac = randomBytes(32);
      await s.host.put(RESOURCE.PACKFILE, pmac, Buffer.from('pack'));
      // Leftovers and strangers a sync client or a person may put there.
      const h = hex(pmac);
      await emu.store.writeFile(emu.me, `/Repos/foreign/packfiles/${h.slice(0, 2)}/${h}.partial`, 'x');
      await emu.store.writeFile(emu.me, `/Repos/foreign/packfiles/${h.slice(0, 2)}/${h.toUpperCase()}`, 'x');
      await emu.store.writeFile(emu.me, `/Repos/foreign/packfiles/zz/${h}`, 'x');
      await emu.store.writeFile(emu.me, `/Repos/foreign/packfiles/${h}`, 'x');
      await emu.store.writeFile(emu.me, '/Repos/foreign/packfiles/desktop.ini', 'x');
      await emu.store.writeFile(emu.me, '/Repos/foreign/locks/notes.txt', 'x');
      emu.store.mkdirp(emu.me, `/Repos/foreign/locks/${hex(randomBytes(32))}`);
      expect((await s.host.list(RESOURCE.PACKFILE)).map(hex)).toEqual([h]);
      expect((await s.host.list(RESOURCE.LOCK)).map(hex)).toEqual([hex(mac)]);
      expect(await s.host.list(RESOURCE.STATE)).toEqual([]);
    } finally {
      s.close();
    }
  });

  it('spills a Put beyond memory_buffer to a private temp file, uploads it in fragments, and removes the file', async () => {
    const tmp = await tempDir();
    const s = await served('storage', emu.config('onedrive:///Repos/spill', { memory_buffer: '1MiB', chunk_size: '640KiB', upload_cutoff: '256KiB', temp_dir: tmp.dir }));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      const mac = randomBytes(32);
      const data = pseudoRandom(3 * 1024 * 1024 + 7, 9);
      const before = emu.count((r) => r.kind === 'upload' && r.method === 'PUT');
      expect(await s.host.put(RESOURCE.PACKFILE, mac, data)).toBe(data.length);
      // 3 MiB + 7 in 640 KiB fragments: 5 fragments.
      expect(emu.count((r) => r.kind === 'upload' && r.method === 'PUT') - before).toBe(5);
      expect((await s.host.get(RESOURCE.PACKFILE, mac)).equals(data)).toBe(true);
      const spill = await readdir(tmp.dir);
      expect(spill).toHaveLength(1);
      expect(await readdir(`${tmp.dir}/${spill[0]}`)).toEqual([]);
      await s.host.close();
      expect(await readdir(tmp.dir)).toEqual([]);
    } finally {
      s.close();
      await tmp.cleanup();
    }
  });

  it('runs concurrent Puts and Gets and reports the repository size', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/busy', { chunk_size: '320KiB', upload_cutoff: '100KiB' }));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      const objects = Array.from({ length: 12 }, (_, i) => ({ mac: randomBytes(32), data: pseudoRandom(50_000 + i * 40_000, i + 1) }));
      await Promise.all(objects.map((o) => s.host.put(RESOURCE.PACKFILE, o.mac, o.data)));
      const listed = (await s.host.list(RESOURCE.PACKFILE)).map(hex).sort();
      expect(listed).toEqual(objects.map((o) => hex(o.mac)).sort());
      const back = await Promise.all(objects.map((o) => s.host.get(RESOURCE.PACKFILE, o.mac)));
      back.forEach((b, i) => expect(b.equals((objects[i] as { data: Buffer }).data)).toBe(true));
      const total = objects.reduce((n, o) => n + o.data.length, 0) + '_KLOSET_x'.length;
      expect(await s.host.size()).toBe(total);
    } finally {
      s.close();
    }
  });

  it(`lists and reads a repository of ${MANY_OBJECTS} objects across the 256 buckets, a page of 100 names per request`, async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/many'));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      // Seed most objects straight into the emulator (the Put path is covered above), a few through Put.
      const macs: string[] = [];
      for (let i = 0; i < MANY_OBJECTS; i++) {
        const mac = randomBytes(32);
        macs.push(hex(mac));
        if (i % 100 === 0) await s.host.put(RESOURCE.PACKFILE, mac, Buffer.from(`object ${i}`));
        else await emu.store.writeFile(emu.me, `/Repos/many/packfiles/${hex(mac).slice(0, 2)}/${hex(mac)}`, `object ${i}`);
      }
      const mark = emu.faults.log.length;
      const listed = (await s.host.list(RESOURCE.PACKFILE)).map(hex).sort();
      expect(listed).toEqual([...macs].sort());
      // One paged listing of the bucket folders, then each bucket's pages: nothing per object.
      const perBucket = new Map<string, number>();
      for (const m of macs) perBucket.set(m.slice(0, 2), (perBucket.get(m.slice(0, 2)) ?? 0) + 1);
      const pages = Math.ceil(perBucket.size / 100) + [...perBucket.values()].reduce((n, c) => n + Math.ceil(c / 100), 0);
      expect(emu.faults.log.slice(mark).filter((r) => r.path.endsWith('/children')).length).toBe(pages);
      expect(emu.faults.log.slice(mark).length).toBe(pages + 1);
      // A sample read back, ranged and whole.
      for (const i of [0, 1, Math.floor(MANY_OBJECTS / 2), MANY_OBJECTS - 1]) {
        const mac = Buffer.from(macs[i] as string, 'hex');
        expect((await s.host.get(RESOURCE.PACKFILE, mac)).toString()).toBe(`object ${i}`);
        expect((await s.host.get(RESOURCE.PACKFILE, mac, { offset: 2, length: 4 })).toString()).toBe(`object ${i}`.slice(2, 6));
      }
    } finally {
      s.close();
    }
  }, 900_000);

  it('fails a Put whose stored copy does not match the data sent, and leaves no damaged object behind', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/damaged', { upload_cutoff: '100KiB', chunk_size: '320KiB' }));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      for (const [size, match] of [
        [50_000, (r: { kind: string; method: string; path: string }) => r.kind === 'graph' && r.method === 'PUT' && r.path.endsWith(':/content')],
        [700_000, (r: { kind: string; method: string }) => r.kind === 'upload' && r.method === 'PUT'],
      ] as const) {
        const mac = randomBytes(32);
        emu.corrupt(1, match);
        await expect(s.host.put(RESOURCE.PACKFILE, mac, pseudoRandom(size, 2))).rejects.toThrow(
          `onedrive storage: cannot store packfile ${hex(mac)} in onedrive:///Repos/damaged (drive ${emu.me.id}): OneDrive stored a quickXorHash that differs from the content sent (damaged on the way); the damaged copy was removed`,
        );
        expect(await s.host.list(RESOURCE.PACKFILE)).toEqual([]);
      }
      expect(emu.faults.pending).toBe(0);
    } finally {
      s.close();
    }
  });

  it('fails a Put on a full drive with a clear quota message', async () => {
    const small = emu.createDrive({ quotaTotal: 64 * 1024 });
    const s = await served('storage', emu.config('onedrive:///Repo', { drive_id: small.id }));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      const mac = randomBytes(32);
      await expect(s.host.put(RESOURCE.PACKFILE, mac, pseudoRandom(100_000, 1))).rejects.toThrow(
        `onedrive storage: cannot store packfile ${hex(mac)} in onedrive:///Repo (drive ${small.id}): the drive is full (quotaLimitReached); free some space or raise the quota`,
      );
    } finally {
      s.close();
    }
  });

  it('works before Open for Ping and Close, and Put creates missing bucket folders', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/ping'));
    try {
      await s.host.ping();
      await s.host.create(Buffer.from('_KLOSET_x'));
      const mac = randomBytes(32);
      await s.host.put(RESOURCE.STATE, mac, Buffer.alloc(0));
      expect(itemAt(emu, emu.me, `/Repos/ping/states/${hex(mac).slice(0, 2)}/${hex(mac)}`)?.size).toBe(0);
      expect((await s.host.get(RESOURCE.STATE, mac)).length).toBe(0);
      await s.host.close();
    } finally {
      s.close();
    }
  });
});
