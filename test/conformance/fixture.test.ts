// Runs the three conformance suites against the fixture integration (a local directory), in-process or as the built executable.
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll } from 'vitest';
import { integration } from '../fixture/index.ts';
import { runExporterConformance, runImporterConformance, runStorageConformance, standardTree } from './index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const target = { integration, packageDir: join(ROOT, 'dist', 'fixture') };
const SECRET = 'fixture-secret-Zq8v!ru';
const dirs: string[] = [];

async function freshDir(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `kts-conf-${prefix}-`));
  dirs.push(d);
  return d;
}

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function readTree(dir: string, rel = ''): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const p = `${rel}/${e.name}`;
    if (e.isDirectory()) for (const [k, v] of await readTree(dir, p)) out.set(k, v);
    else if (e.isFile()) out.set(p, await readFile(join(dir, p)));
  }
  return out;
}

async function seedTree(dir: string): Promise<Array<{ path: string; content: Buffer }>> {
  const expected: Array<{ path: string; content: Buffer }> = [];
  for (const f of standardTree()) {
    const p = join(dir, f.path);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, f.content);
    await utimes(p, f.mtime, f.mtime);
    expected.push({ path: `${dir}/${f.path}`, content: f.content });
  }
  return expected;
}

runStorageConformance({
  target,
  freshConfig: async () => ({ location: `fixture://${join(await freshDir('repo'), 'repo')}`, secret_token: SECRET }),
  secrets: [SECRET],
  plantForeign: async (config) => {
    const root = (config.location as string).slice('fixture://'.length);
    await mkdir(join(root, 'packfiles', 'zz'), { recursive: true });
    await writeFile(join(root, 'packfiles', 'zz', 'not-a-mac'), 'junk');
    await writeFile(join(root, 'packfiles', `${'ab'.repeat(32)}.partial-1-0`), 'junk');
    await mkdir(join(root, 'locks', 'nested'), { recursive: true });
    await writeFile(join(root, 'locks', 'nested', 'x'), 'junk');
    await writeFile(join(root, 'README.txt'), 'junk');
  },
  badConfig: { config: { location: 'fixture:///tmp/x', cache_size: 'lots' }, key: 'cache_size' },
  manyObjects: 2000,
});

runImporterConformance({
  target,
  seed: async () => {
    const dir = await freshDir('src');
    return { config: { location: `fixture://${dir}`, secret_token: SECRET }, expected: await seedTree(dir) };
  },
  seedBroken: async () => {
    const dir = await freshDir('broken');
    const expected = (await seedTree(dir)).filter((f) => !f.path.endsWith('/plain.txt'));
    return { config: { location: `fixture://${dir}`, fail_open: 'plain.txt' }, expected, brokenPath: `${dir}/plain.txt` };
  },
  secrets: [SECRET],
  badConfig: { config: { location: 'fixture:///tmp', max_retries: 'many' }, key: 'max_retries' },
});

runExporterConformance({
  target,
  freshConfig: async () => ({ location: `fixture://${join(await freshDir('dst'), 'restore')}`, secret_token: SECRET }),
  inspect: async (config) => readTree((config.location as string).slice('fixture://'.length)),
  secrets: [SECRET],
  badConfig: { config: { location: 'relative/path' }, key: 'location' },
});
