// The test command (`npm test`): installs missing test servers, checks generated files and types, builds the executables, runs vitest.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Real servers each vitest project needs (started once per run by test/global-setup.ts). */
export const SERVERS_BY_PROJECT: Readonly<Record<string, readonly string[]>> = {
  unit: [],
  conformance: [],
  servers: [],
  hostile: [],
  s3: ['radosgw', 'swift'],
  imap: ['dovecot', 'dovecot-dot'],
  caldav: ['radicale', 'xandikos'],
  gdrive: [],
  onedrive: [],
  faults: ['radosgw', 'dovecot', 'radicale'],
};

/** The `--project` names given on the command line (none means every project). */
export function projectsOf(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--project' && args[i + 1]) out.push(args[++i] as string);
    else if (a.startsWith('--project=')) out.push(a.slice('--project='.length));
  }
  return out;
}

function step(title: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): void {
  process.stderr.write(`\n== ${title}\n`);
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit', env });
  if (r.status !== 0) {
    process.stderr.write(`\n${title} failed (exit ${r.status ?? r.signal})\n`);
    process.exit(r.status ?? 1);
  }
}

function main(): void {
  const args = process.argv.slice(2);
  const projects = projectsOf(args);
  const wanted = projects.length > 0 ? projects : Object.keys(SERVERS_BY_PROJECT);
  const servers = [...new Set(wanted.flatMap((p) => SERVERS_BY_PROJECT[p] ?? []))];

  if (servers.length > 0 && existsSync(join(ROOT, 'scripts/install-test-servers.sh'))) {
    step('install test servers (only what is missing)', 'bash', ['scripts/install-test-servers.sh']);
  }
  step('generated files are fresh', 'npx', ['tsx', 'scripts/gen.ts', '--check']);
  step('typecheck', 'npx', ['tsc', '-p', 'tsconfig.json']);
  if (!process.env.KLOSET_TS_SKIP_BUILD) {
    step('build executables (integrations and the test fixture)', 'npx', ['tsx', 'scripts/build.ts', '--fixture']);
    // The other platforms' packages cannot run here; the fixture's are built so that their format is checked on every
    // run (test/meta/packages.test.ts), the integrations' too when `npm run build -- --all-targets` made them.
    step('the test fixture for every platform (format checks)', 'npx', ['tsx', 'scripts/build.ts', '--only', 'fixture', '--all-targets']);
  }
  const env = {
    ...process.env,
    KLOSET_TS_SPAWN: process.env.KLOSET_TS_SPAWN ?? '1',
    KLOSET_TS_SERVERS: process.env.KLOSET_TS_SERVERS ?? servers.join(','),
  };
  step('tests', 'npx', ['vitest', 'run', ...args], env);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
