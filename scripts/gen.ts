// Writes every generated file (embedded protos, option schemas, docs blocks); --check fails when one is stale.
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderProtosModule } from './gen-protos.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** One generated file: where it goes and its full text. */
export interface GeneratedFile {
  path: string;
  text: string;
}

/** Computes every generated file from the sources. */
export async function generatedFiles(): Promise<GeneratedFile[]> {
  const files: GeneratedFile[] = [
    { path: 'shared/protocol/gen/protos.ts', text: renderProtosModule(ROOT) },
  ];
  const { integrationFiles } = await import('./gen-integrations.ts');
  files.push(...(await integrationFiles(ROOT)));
  return files;
}

async function main(): Promise<void> {
  const check = process.argv.includes('--check');
  const stale: string[] = [];
  for (const file of await generatedFiles()) {
    const target = join(ROOT, file.path);
    const current = existsSync(target) ? readFileSync(target, 'utf8') : undefined;
    if (current === file.text) continue;
    if (check) {
      stale.push(file.path);
    } else {
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, file.text);
      process.stderr.write(`gen: wrote ${file.path}\n`);
    }
  }
  if (stale.length > 0) {
    process.stderr.write(`gen: stale generated files (run npm run gen): ${stale.join(', ')}\n`);
    process.exit(1);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
