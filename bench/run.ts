// `npm run bench`: runs every benchmark script in bench/ one after the other and prints their figures.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = import.meta.dirname;
const only = process.argv.slice(2);
const scripts = ['sdk.ts', ...readdirSync(dir).filter((f) => f.endsWith('.ts') && f !== 'run.ts' && f !== 'sdk.ts').sort()].filter(
  (f) => only.length === 0 || only.includes(f.replace(/\.ts$/, '')),
);
let failed = 0;
for (const script of scripts) {
  process.stderr.write(`\n== bench/${script}\n`);
  const r = spawnSync('npx', ['tsx', join(dir, script)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed > 0 ? 1 : 0);
