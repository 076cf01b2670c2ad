// The SDK's stdio transport under the three shapes a host can give it: two pipes (Plakar), two sockets (Node), one socket.
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchPlugin, RESOURCE, type StdioMode } from '../harness/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BUILT = join(ROOT, 'dist', 'fixture', 'fixture');
let dir: string;
let executable: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kts-transport-'));
  if (process.env.KLOSET_TS_SPAWN === '1' && existsSync(BUILT)) {
    executable = BUILT;
  } else {
    // From sources: a tiny launcher, as a shell script would be shipped during development.
    executable = join(dir, 'fixture-dev');
    const loader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    await writeFile(executable, `#!/bin/sh\nexec node --import ${loader} ${join(ROOT, 'scripts/dev-entry.ts')} ${join(ROOT, 'test/fixture')} "$@"\n`);
    await chmod(executable, 0o755);
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sdk transport: stdio shapes', () => {
  for (const mode of ['pipes', 'socketpair', 'one-socket'] as StdioMode[]) {
    it(`serves storage over ${mode}, streams 3 MiB both ways, and exits 0 on EOF`, async () => {
      const p = await launchPlugin({ executable, args: ['storage'] }, { mode, cwd: dir });
      await p.host.init('storage', 'fixture', { location: `fixture://${join(dir, mode)}` });
      await p.host.create(Buffer.from('_KLOSET_transport'));
      const mac = randomBytes(32);
      const data = randomBytes(3 * 1024 * 1024 + 5);
      await p.host.put(RESOURCE.PACKFILE, mac, data);
      expect((await p.host.get(RESOURCE.PACKFILE, mac)).equals(data)).toBe(true);
      expect((await p.host.get(RESOURCE.PACKFILE, mac, { offset: 5, length: 720 })).equals(data.subarray(5, 725))).toBe(true);
      await p.host.close();
      // Calls after Close still work (the real host sends Delete(LOCK) after Close).
      expect((await p.host.open()).toString()).toBe('_KLOSET_transport');
      const exit = await p.dispose(10_000);
      expect(exit).toMatchObject({ code: 0, timedOut: false });
      expect(p.process.stderr()).toBe('');
    }, 60_000);
  }

  it('prints help and version to a person, never serving on a terminal-less stdout by mistake', async () => {
    const { execFileSync } = await import('node:child_process');
    const help = execFileSync(executable, ['--help'], { encoding: 'utf8' });
    expect(help).toMatch(/fixture 0\.1\.0: Local directory \(test fixture\) integration for Plakar/);
    expect(help).toMatch(/fixture storage\s+serve the storage on stdin\/stdout/);
    expect(execFileSync(executable, ['--version'], { encoding: 'utf8' })).toMatch(/^fixture 0\.1\.0 \(kloset-ts, node \d+\./);
    const options = execFileSync(executable, ['options', 'storage'], { encoding: 'utf8' });
    expect(options).toMatch(/cache_size\s+size .*default 1GiB/);
    const schema = JSON.parse(execFileSync(executable, ['schema', 'storage'], { encoding: 'utf8' })) as { required: string[] };
    expect(schema.required).toEqual(['location']);
  }, 60_000);
});
