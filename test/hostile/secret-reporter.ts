// Suite-wide secret check (a vitest reporter): collects the test output (console and stderr of the tests, the errors of
// failed tests) and, from the workers through test/harness/secret-scan.ts, every declared-secret value sent in an Init
// and every spawned executable's stderr; at the end of the run, fails it if a secret appears anywhere, raw or
// URL-encoded or base64. The report names the key and the place, never the value.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Reporter, TestCase, TestModule } from 'vitest/node';
import { SCAN_DIR_ENV } from '../harness/secret-scan.ts';
import { secretForms } from './secret-forms.ts';

const ROOT = join(import.meta.dirname, '..', '..');

interface Text {
  where: string;
  text: string;
}

/** Finds every (secret, place) pair where a form of the secret occurs; exported for its own test. */
export function findLeaks(secrets: ReadonlyArray<{ key: string; value: string }>, texts: readonly Text[], ignored: ReadonlySet<string>): string[] {
  const leaks: string[] = [];
  const seen = new Set<string>();
  for (const s of secrets) {
    if (ignored.has(s.value) || seen.has(s.value)) continue;
    seen.add(s.value);
    const forms = secretForms(s.value);
    for (const t of texts) {
      const form = forms.find((f) => t.text.includes(f));
      if (form !== undefined) {
        const how = form === s.value ? 'as is' : form === encodeURIComponent(s.value) ? 'URL-encoded' : 'base64-encoded';
        leaks.push(`the value of ${s.key} (${s.value.length} characters) appears ${how} in ${t.where}`);
      }
    }
  }
  return leaks;
}

export default class SecretReporter implements Reporter {
  private dir = '';
  private readonly texts: Text[] = [];

  onInit(): void {
    this.dir = join(ROOT, '.cache', 'secret-scan', `run-${process.pid}-${Date.now()}`);
    mkdirSync(this.dir, { recursive: true });
    // Forked workers inherit the environment: the harness records into this run's directory.
    process.env[SCAN_DIR_ENV] = this.dir;
  }

  onUserConsoleLog(log: { content: string; type: string; taskId?: string }): void {
    this.texts.push({ where: `test output (${log.type}${log.taskId ? `, task ${log.taskId}` : ''})`, text: log.content });
  }

  onTestCaseResult(testCase: TestCase): void {
    const errors = testCase.result().errors ?? [];
    for (const e of errors) {
      this.texts.push({ where: `the failure of "${testCase.fullName}"`, text: [e.message, e.stack, e.diff].filter(Boolean).join('\n') });
    }
  }

  onTestRunEnd(_modules: ReadonlyArray<TestModule>, unhandled: ReadonlyArray<{ message?: string; stack?: string }>): void {
    for (const e of unhandled) this.texts.push({ where: 'an unhandled error', text: `${e.message ?? ''}\n${e.stack ?? ''}` });
    const secrets: Array<{ key: string; value: string }> = [];
    const ignored = new Set<string>();
    let files: string[] = [];
    try {
      files = readdirSync(this.dir);
    } catch {
      return;
    }
    for (const f of files) {
      const body = readFileSync(join(this.dir, f), 'utf8');
      if (f.startsWith('secrets-')) {
        for (const line of body.split('\n')) if (line) secrets.push(JSON.parse(line) as { key: string; value: string });
      } else if (f.startsWith('ignore-')) {
        for (const line of body.split('\n')) if (line) ignored.add(JSON.parse(line) as string);
      } else if (f.startsWith('output-')) {
        const nl = body.indexOf('\n');
        this.texts.push({ where: body.slice(0, nl), text: body.slice(nl + 1) });
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    const leaks = findLeaks(secrets, this.texts, ignored);
    if (leaks.length > 0) {
      process.stderr.write(`\nsecret check: FAILED, ${leaks.length} leak(s) of declared secrets:\n${leaks.map((l) => `  - ${l}`).join('\n')}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`\nsecret check: ${new Set(secrets.map((s) => s.value)).size} secret value(s) searched in ${this.texts.length} outputs, none found\n`);
    }
  }
}
