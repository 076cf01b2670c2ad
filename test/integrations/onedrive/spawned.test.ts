// The onedrive executable spawned like Plakar spawns it (two pipes, argv from the manifest), for the three connectors.
// With KLOSET_TS_SPAWN=1 and a build in dist/, the built executable runs; otherwise the sources run through tsx.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entriesFromTree, launchPlugin, RESOURCE, type LaunchedPlugin } from '../../harness/index.ts';
import type { GraphEmulator } from '../../servers/graph-emulator.ts';
import { emulator, filesUnder, pseudoRandom } from './helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const MANIFEST = join(ROOT, 'dist', 'onedrive', 'manifest.yaml');
const BUILT = process.env.KLOSET_TS_SPAWN === '1' && existsSync(MANIFEST);

async function launch(kind: 'importer' | 'exporter' | 'storage'): Promise<LaunchedPlugin> {
  if (BUILT) return launchPlugin({ manifest: MANIFEST, kind });
  return launchPlugin({ executable: process.execPath, args: ['--import', 'tsx', join(ROOT, 'scripts/dev-entry.ts'), join(ROOT, 'integrations/onedrive'), kind] });
}

let emu: GraphEmulator;
beforeAll(async () => {
  emu = await emulator();
});
afterAll(async () => {
  await emu?.close();
});

describe(`onedrive spawned (${BUILT ? 'built executable' : 'sources'}): two pipes, host call order`, () => {
  it('storage: create, put, list, ranged get, delete; exits 0 on EOF without a word on stderr', async () => {
    const p = await launch('storage');
    const config = emu.config('onedrive:///Spawned/repo', { upload_cutoff: '256KiB', chunk_size: '320KiB' });
    try {
      await p.host.init('storage', 'onedrive', config);
      await p.host.create(Buffer.from('_KLOSET_spawned'));
      const mac = randomBytes(32);
      const data = pseudoRandom(1_000_000, 12);
      expect(await p.host.put(RESOURCE.PACKFILE, mac, data)).toBe(data.length);
      expect((await p.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex'))).toEqual([mac.toString('hex')]);
      expect((await p.host.get(RESOURCE.PACKFILE, mac, { offset: 999_000, length: 1000 })).equals(data.subarray(999_000))).toBe(true);
      await p.host.delete(RESOURCE.PACKFILE, mac);
      await p.host.close();
    } finally {
      const exit = await p.dispose();
      expect(exit.code).toBe(0);
    }
    const stderr = p.process.stderr();
    // The one expected line: the rotated-token advice (no token in it).
    expect(stderr.trim().split('\n').filter((l) => l && !l.includes('issued a new refresh token'))).toEqual([]);
    expect(stderr).not.toContain(config.refresh_token as string);
  });

  it('importer and exporter: a tree backed up and restored through two processes', async () => {
    const big = pseudoRandom(800_000, 13);
    await emu.store.writeFile(emu.me, '/Spawned/src/a.txt', 'a', { mtime: new Date('2020-01-01T00:00:00Z') });
    await emu.store.writeFile(emu.me, '/Spawned/src/sub/big.bin', big);
    const imp = await launch('importer');
    let contents: Map<string, Buffer | string>;
    try {
      await imp.host.init('importer', 'onedrive', emu.config('onedrive:///Spawned/src'));
      const out = await imp.host.importAll();
      expect(out.itemErrors).toEqual([]);
      contents = out.contents;
      expect(createHash('sha256').update(contents.get('/Spawned/src/sub/big.bin') as Buffer).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
    } finally {
      expect((await imp.dispose()).code).toBe(0);
    }
    const exp = await launch('exporter');
    try {
      await exp.host.init('exporter', 'onedrive', emu.config('onedrive:///Spawned/dst', { upload_cutoff: '256KiB', chunk_size: '320KiB' }), { maxConcurrency: 2 });
      const out = await exp.host.exportTree(entriesFromTree({ 'a.txt': contents.get('/Spawned/src/a.txt') as Buffer, sub: { 'big.bin': contents.get('/Spawned/src/sub/big.bin') as Buffer } }));
      expect(out.itemErrors).toEqual([]);
    } finally {
      expect((await exp.dispose()).code).toBe(0);
    }
    const dst = filesUnder(emu, emu.me, '/Spawned/dst');
    const src = filesUnder(emu, emu.me, '/Spawned/src');
    expect(dst.get('/sub/big.bin')?.hashes).toEqual(src.get('/sub/big.bin')?.hashes);
    expect(dst.get('/a.txt')?.hashes).toEqual(src.get('/a.txt')?.hashes);
  });
});
