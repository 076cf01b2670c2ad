// Repository-wide invariants: option declarations, manifests vs code, generated files, stdout hygiene, import boundaries.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { generatedFiles } from '../../scripts/gen.ts';
import { loadIntegrations } from '../../scripts/gen-integrations.ts';

const ROOT = join(import.meta.dirname, '..', '..');
/** Key suffixes Plakar masks when it prints a config (INTEGRATIONS.md §1). */
const MASKED = ['access_key', 'secret_access_key', 'passphrase', 'password', 'pass', 'private_key', 'token', 'client_id', 'client_secret', 'auth_token'];
/** Secret keys whose names compatibility fixes; each is documented as printed by `plakar … show`. */
const UNMASKED_SECRET_KEYS: Record<string, string> = {
  sse_customer_key: 'kept for compatibility with the official s3 integration (docs/s3.md says plakar prints it)',
  service_account_key: 'Google’s own name for the JSON key (docs/gdrive.md says plakar prints it)',
  secret_token: 'test fixture only',
};

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

const integrations = await loadIntegrations(ROOT);

describe('meta: option declarations', () => {
  for (const { integration } of integrations) {
    for (const kind of ['importer', 'exporter', 'storage'] as const) {
      const def = integration[kind];
      if (!def) continue;
      it(`${integration.name} ${kind}: every option has help, snake_case keys, secrets masked by name`, () => {
        expect(def.location.help.length).toBeGreaterThan(0);
        for (const spec of def.options) {
          expect(spec.key, spec.key).toMatch(/^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/);
          expect(spec.help.trim().length, `${spec.key} has no help`).toBeGreaterThan(10);
          if (spec.secret && !UNMASKED_SECRET_KEYS[spec.key]) {
            expect(
              MASKED.some((m) => spec.key === m || spec.key.endsWith(`_${m}`)),
              `secret option ${spec.key} does not end in a suffix Plakar masks`,
            ).toBe(true);
          }
          expect(spec.secret && spec.defaultValue !== undefined, `secret ${spec.key} has a default`).toBe(false);
        }
      });
    }
  }
});

describe('meta: manifests match the code', () => {
  for (const { integration, manifestDir } of integrations) {
    it(`${integration.name}: manifest name, protocols, kinds, args and validators`, () => {
      const manifestPath = join(ROOT, manifestDir, 'manifest.yaml');
      expect(existsSync(manifestPath), `${manifestDir}/manifest.yaml missing`).toBe(true);
      const manifest = parseYaml(readFileSync(manifestPath, 'utf8')) as {
        name: string;
        connectors: Array<{ type: string; protocols: string[]; executable: string; args?: string[]; validator?: string; location_flags?: string[] }>;
      };
      expect(manifest.name).toBe(integration.name);
      const kinds = manifest.connectors.map((c) => c.type).sort();
      expect(kinds).toEqual((['importer', 'exporter', 'storage'] as const).filter((k) => integration[k]).sort());
      for (const c of manifest.connectors) {
        expect(c.protocols.sort()).toEqual([...integration.protocols].sort());
        expect(c.args).toEqual([c.type]);
        expect(c.executable.replace(/^\.\//, '')).toBe(integration.name);
        expect(c.validator).toBe(`./${c.type}.schema.json`);
        expect(existsSync(join(ROOT, manifestDir, `${c.type}.schema.json`))).toBe(true);
        for (const f of c.location_flags ?? []) expect(['localfs', 'file', 'stream', 'needack', 'nomerge']).toContain(f);
      }
    });
  }
});

describe('meta: generated files are fresh', () => {
  it('embedded protos, schemas and docs option blocks match their sources (npm run gen)', async () => {
    const stale: string[] = [];
    for (const f of await generatedFiles()) {
      const p = join(ROOT, f.path);
      if (!existsSync(p) || readFileSync(p, 'utf8') !== f.text) stale.push(f.path);
    }
    expect(stale).toEqual([]);
  });
});

describe('meta: integration code stays in its lane', () => {
  const files = sourceFiles(join(ROOT, 'integrations'));
  it('never touches process.stdout or console (stdout carries gRPC only)', () => {
    const offenders = files.filter((f) => /\bprocess\.stdout\b|\bconsole\.\w+\s*\(/.test(readFileSync(f, 'utf8').replace(/\/\/.*$/gm, '')));
    expect(offenders.map((f) => relative(ROOT, f))).toEqual([]);
  });
  it('imports only the SDK entry, its own files and npm packages', () => {
    const bad: string[] = [];
    for (const f of files) {
      const own = relative(join(ROOT, 'integrations'), f).split('/')[0];
      for (const m of readFileSync(f, 'utf8').matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
        const spec = m[1] as string;
        if (!spec.startsWith('.')) continue;
        const target = relative(ROOT, join(f, '..', spec));
        const ok = target === 'shared/index.ts' || target.startsWith(`integrations/${own}/`);
        if (!ok) bad.push(`${relative(ROOT, f)} imports ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
