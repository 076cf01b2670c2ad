// Every built package, for every platform found under dist/ (`npm run build -- --all-targets`): the executable has the
// target's format and architecture (ELF / Mach-O / PE header), the flipped SEA fuse, the NODE_SEA_BLOB note, section or
// resource, and the integration's own bundle inside; the manifest names it. Targets not built here are skipped; `npm
// test` always builds the test fixture for every platform, so each format is checked on every run.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ALL_TARGET_IDS, exeFileName, hostTarget, parseTarget, stageDir } from '../../scripts/build-lib.ts';
import { inspectExecutable } from '../../scripts/build-sea.ts';
import { loadIntegrations } from '../../scripts/gen-integrations.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const DIST = join(ROOT, 'dist');
const integrations = await loadIntegrations(ROOT);
const host = hostTarget();

/** Targets the npm registry has no Node 24 runtime for (scripts/build-runtime.ts): never built. */
const NO_RUNTIME = ['darwin-arm64', 'win-arm64'];

describe('packages: executables for every platform', () => {
  for (const id of ALL_TARGET_IDS) {
    const target = parseTarget(id);
    for (const { integration } of integrations) {
      const dir = stageDir(DIST, integration.name, target, host);
      const exe = join(dir, exeFileName(integration.name, target));
      const built = existsSync(exe);
      it.skipIf(!built)(`${integration.name} ${id}: ${target.os === 'linux' ? 'ELF' : target.os === 'darwin' ? 'Mach-O' : 'PE'} ${target.arch} executable with the SEA blob and its manifest`, () => {
        const data = readFileSync(exe);
        const facts = inspectExecutable(data);
        expect(facts).toEqual({
          format: target.os === 'linux' ? 'ELF' : target.os === 'darwin' ? 'Mach-O' : 'PE',
          arch: target.arch,
          fuseFlipped: true,
          blobMarker: true,
        });
        // The blob carries this integration's bundle (its description is a string in the bundled code).
        expect(data.includes(Buffer.from(integration.description))).toBe(true);
        const manifest = parseYaml(readFileSync(join(dir, 'manifest.yaml'), 'utf8')) as { name: string; connectors: Array<{ executable: string }> };
        expect(manifest.name).toBe(integration.name);
        // The manifest names `./<name>`; `plakar pkg create` appends `.exe` for Windows, as the build stages it.
        for (const c of manifest.connectors) {
          expect(c.executable).toBe(`./${integration.name}`);
          expect(existsSync(join(dir, exeFileName(c.executable, target)))).toBe(true);
        }
      }, 60_000);
    }
  }

  it('no package exists for the targets without a Node 24 runtime', () => {
    for (const id of NO_RUNTIME) expect(existsSync(join(DIST, id))).toBe(false);
  });
});
