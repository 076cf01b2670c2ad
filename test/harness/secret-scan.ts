// Records, for the suite-wide secret check, every declared-secret value the harness sends in Init and everything the
// spawned executables wrote on stderr. The vitest reporter test/hostile/secret-reporter.ts scans them (and the test
// output) at the end of the run and fails it on any leak. Nothing is recorded outside a vitest run with that reporter.
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The environment variable naming the run's scan directory (set by the reporter in the main vitest process). */
export const SCAN_DIR_ENV = 'KLOSET_TS_SECRET_SCAN_DIR';

/** Values shorter than this are too common to search for (they would match ordinary words). */
export const MIN_SCANNED_SECRET = 6;

const ROOT = join(import.meta.dirname, '..', '..');

/** Key names the SDK treats as secrets whatever the declaration says (shared/options/parse.ts). */
const SECRET_NAME = /(?:password|secret|token|private_key|passphrase)$/i;

let declared: Set<string> | undefined;

/** Keys declared `secret: true` by any connector: the `writeOnly` properties of the generated validators. */
function declaredSecretKeys(): Set<string> {
  if (declared) return declared;
  declared = new Set<string>();
  const dirs = [join(ROOT, 'test', 'fixture')];
  const manifests = join(ROOT, 'manifests');
  if (existsSync(manifests)) for (const name of readdirSync(manifests)) dirs.push(join(manifests, name));
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.schema.json'))) {
      try {
        const schema = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { properties?: Record<string, { writeOnly?: boolean }> };
        for (const [key, prop] of Object.entries(schema.properties ?? {})) if (prop.writeOnly) declared.add(key);
      } catch {
        // A broken schema is reported by the meta tests; the scan just knows fewer keys.
      }
    }
  }
  return declared;
}

function dir(): string | undefined {
  const d = process.env[SCAN_DIR_ENV];
  return d && existsSync(d) ? d : undefined;
}

/** True when `key` holds a secret: declared secret by a connector, or named like one. */
export function isSecretKey(key: string): boolean {
  return declaredSecretKeys().has(key) || SECRET_NAME.test(key);
}

/** Records the secret values of an Init config (called by PluginHost.init). */
export function recordSecrets(config: Readonly<Record<string, string>>): void {
  const d = dir();
  if (!d) return;
  const lines: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (typeof value === 'string' && value.length >= MIN_SCANNED_SECRET && isSecretKey(key)) lines.push(JSON.stringify({ key, value }));
  }
  if (lines.length > 0) appendFileSync(join(d, `secrets-${process.pid}.jsonl`), `${lines.join('\n')}\n`);
}

/** Excludes values from the scan: hostile-input tests send junk (`Infinity`, `constructor`) in secret keys on purpose. */
export function ignoreSecretValues(values: readonly string[]): void {
  const d = dir();
  if (!d || values.length === 0) return;
  appendFileSync(join(d, `ignore-${process.pid}.jsonl`), `${values.map((v) => JSON.stringify(v)).join('\n')}\n`);
}

let outputs = 0;

/** Records output to scan (a spawned executable's stderr), labelled for the report. */
export function recordOutput(label: string, text: string): void {
  const d = dir();
  if (!d || text.length === 0) return;
  appendFileSync(join(d, `output-${process.pid}-${outputs++}.txt`), `${label}\n${text}`);
}
