// The read-ahead cache through real plugin processes (the fixture executable, spawned like Plakar does): two processes
// on one repository, and a cache directory on a full filesystem.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchPlugin, RESOURCE, type LaunchedPlugin } from '../harness/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BUILT = join(ROOT, 'dist', 'fixture', 'fixture');
const MiB = 1024 * 1024;
let dir: string;
let executable: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kts-ra-spawn-'));
  if (process.env.KLOSET_TS_SPAWN === '1' && existsSync(BUILT)) {
    executable = BUILT;
  } else {
    executable = join(dir, 'fixture-dev');
    const loader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    await writeFile(executable, `#!/bin/sh\nexec node --import ${loader} ${join(ROOT, 'scripts/dev-entry.ts')} ${join(ROOT, 'test/fixture')} "$@"\n`);
    await chmod(executable, 0o755);
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function storage(config: Record<string, string>): Promise<LaunchedPlugin> {
  const p = await launchPlugin({ executable, args: ['storage'] }, { cwd: dir });
  await p.host.init('storage', 'fixture', config);
  return p;
}

function cacheDirsOf(parent: string, pid: number): string[] {
  return readdirSync(parent).filter((d) => d.startsWith(`kloset-ts-cache-${pid}-`));
}

/** Sequential ranged Gets like the host's (small, some at the edges and past the end), each checked against the source. */
async function readRandomly(p: LaunchedPlugin, packs: Array<{ mac: Buffer; data: Buffer }>, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const { mac, data } = packs[i % packs.length] as { mac: Buffer; data: Buffer };
    const offset = i % 10 === 0 ? data.length - 100 : Math.floor(Math.random() * data.length);
    const length = i % 7 === 0 ? 300_000 : 1 + Math.floor(Math.random() * 5000);
    const got = await p.host.get(RESOURCE.PACKFILE, mac, { offset, length: Math.min(length, data.length - offset) });
    expect(got.equals(data.subarray(offset, offset + length))).toBe(true);
  }
}

describe('sdk read-ahead cache through spawned executables', () => {
  it('keeps two processes reading one repository at once apart, each with its own cache removed on EOF', async () => {
    const repo = `fixture://${join(dir, 'shared-repo')}`;
    const cacheParent = join(dir, 'shared-cache');
    const a = await storage({ location: repo, cache_dir: cacheParent });
    const b = await storage({ location: repo, cache_dir: cacheParent });
    try {
      await a.host.create(Buffer.from('_KLOSET_readahead'));
      await b.host.open();
      const packs = Array.from({ length: 3 }, (_, i) => ({ mac: randomBytes(32), data: randomBytes(2 * MiB + 1000 * i) }));
      for (const p of packs) await a.host.put(RESOURCE.PACKFILE, p.mac, p.data);
      // Both processes read the same packfiles at the same time.
      await Promise.all([readRandomly(a, packs, 120), readRandomly(b, packs, 120)]);
      const dirsA = cacheDirsOf(cacheParent, a.process.pid);
      const dirsB = cacheDirsOf(cacheParent, b.process.pid);
      expect(dirsA).toHaveLength(1);
      expect(dirsB).toHaveLength(1);
      for (const d of [...dirsA, ...dirsB]) {
        expect(readdirSync(join(cacheParent, d)).sort()).toEqual(packs.map((p) => `packfile-${p.mac.toString('hex')}`).sort());
      }
      // One process ending (EOF) removes its cache and leaves the other's alone.
      expect(await a.dispose(10_000)).toMatchObject({ code: 0, timedOut: false });
      expect(cacheDirsOf(cacheParent, a.process.pid)).toEqual([]);
      await readRandomly(b, packs, 30);
      expect(b.process.stderr()).toBe('');
      expect(await b.dispose(10_000)).toMatchObject({ code: 0, timedOut: false });
      expect(readdirSync(cacheParent)).toEqual([]);
    } finally {
      await a.dispose();
      await b.dispose();
    }
  }, 120_000);

  it.runIf(process.getuid?.() === 0)('serves every Get when the cache directory is on a full filesystem, with one warning', async () => {
    const mount = join(dir, 'tiny-tmpfs');
    await mkdir(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount]);
    let p: LaunchedPlugin | undefined;
    try {
      p = await storage({ location: `fixture://${join(dir, 'full-repo')}`, cache_dir: mount });
      await p.host.create(Buffer.from('_KLOSET_readahead'));
      const packs = [
        { mac: randomBytes(32), data: randomBytes(3 * MiB) },
        { mac: randomBytes(32), data: randomBytes(2 * MiB) },
      ];
      for (const pack of packs) await p.host.put(RESOURCE.PACKFILE, pack.mac, pack.data);
      await readRandomly(p, packs, 80);
      const stderr = p.process.stderr();
      expect(stderr.match(/out of disk space; reading directly from the store/g)).toHaveLength(1);
      expect(await p.dispose(10_000)).toMatchObject({ code: 0, timedOut: false });
      expect(readdirSync(mount)).toEqual([]);
    } finally {
      await p?.dispose();
      execFileSync('umount', [mount]);
    }
  }, 120_000);
});
