// Runs an integration from its TypeScript sources (no build), exactly as the bundled executable would: `tsx scripts/dev-entry.ts <dir> <args…>`.
import '../shared/transport/stdout-guard.ts';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Integration } from '../shared/define.ts';
import { runIntegration } from '../shared/entry.ts';

const [dir, ...args] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: tsx scripts/dev-entry.ts <integration dir> importer|exporter|storage|--help\n');
  process.exit(2);
}
const mod = (await import(pathToFileURL(resolve(dir, 'index.ts')).href)) as { integration: Integration };
runIntegration(mod.integration, args);
