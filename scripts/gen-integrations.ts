// Generated per-integration files: JSON Schema validators next to each manifest and the options block of each docs page.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ConnectorKind, Integration } from '../shared/define.ts';
import type { OptionSpec } from '../shared/options/builders.ts';
import { renderOptionsTable, replaceOptionsBlock } from '../shared/options/docs.ts';
import { renderSchema } from '../shared/options/schema.ts';
import type { GeneratedFile } from './gen.ts';

const KINDS: readonly ConnectorKind[] = ['importer', 'exporter', 'storage'];

/** Every integration with the folder holding its manifest: `integrations/*` plus the test fixture. */
export async function loadIntegrations(root: string): Promise<Array<{ integration: Integration; manifestDir: string; docs?: string }>> {
  const out: Array<{ integration: Integration; manifestDir: string; docs?: string }> = [];
  const dir = join(root, 'integrations');
  const names = existsSync(dir) ? readdirSync(dir).filter((n) => existsSync(join(dir, n, 'index.ts'))).sort() : [];
  for (const name of names) {
    const mod = (await import(pathToFileURL(join(dir, name, 'index.ts')).href)) as { integration: Integration };
    out.push({ integration: mod.integration, manifestDir: `manifests/${name}`, docs: `docs/${name}.md` });
  }
  const fixture = (await import(pathToFileURL(join(root, 'test/fixture/index.ts')).href)) as { integration: Integration };
  out.push({ integration: fixture.integration, manifestDir: 'test/fixture' });
  return out;
}

/** Returns the schema and docs files derived from every integration's option declarations. */
export async function integrationFiles(root: string): Promise<GeneratedFile[]> {
  const files: GeneratedFile[] = [];
  for (const { integration, manifestDir, docs } of await loadIntegrations(root)) {
    const rows = new Map<string, { spec: OptionSpec; kinds: string[] }>();
    for (const kind of KINDS) {
      const def = integration[kind];
      if (!def) continue;
      const schema = renderSchema(`${integration.name} ${kind}`, def.options, def.location.help, def.location.pattern);
      files.push({ path: `${manifestDir}/${kind}.schema.json`, text: `${JSON.stringify(schema, null, 2)}\n` });
      for (const spec of def.options as readonly OptionSpec[]) {
        const row = rows.get(spec.key) ?? { spec, kinds: [] };
        row.kinds.push(kind);
        rows.set(spec.key, row);
      }
    }
    if (docs && existsSync(join(root, docs))) {
      const current = readFileSync(join(root, docs), 'utf8');
      files.push({ path: docs, text: replaceOptionsBlock(current, renderOptionsTable([...rows.values()])) });
    }
  }
  return files;
}
