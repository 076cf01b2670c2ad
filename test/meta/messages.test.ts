// The message catalogue stays complete: every message template in the code has a row in docs/MESSAGES.md.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { extractMessages, normaliseTemplate, type Message } from '../../scripts/messages.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/** The message of every table row of the catalogue: the first cell's code span, `\|` unescaped, whitespace collapsed. */
export function catalogueTemplates(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const line of markdown.split('\n')) {
    // A row whose first cell is one code span: `text` or `` text with ` inside ``.
    const m = /^\|\s*(`+)\s?(.*?)\s?\1\s*\|/.exec(line);
    if (m?.[2] !== undefined) out.add(normaliseTemplate(m[2].replace(/\\\|/g, '|')));
  }
  return out;
}

/** The messages of `messages` that have no row in the catalogue text. */
export function missingFrom(markdown: string, messages: readonly Message[]): Message[] {
  const documented = catalogueTemplates(markdown);
  return messages.filter((m) => !documented.has(normaliseTemplate(m.template)));
}

function describeMissing(missing: readonly Message[]): string {
  return missing.map((m) => `${m.integration} ${m.kind}: ${m.template}  (${m.sources.join(', ')})`).join('\n');
}

describe('meta: docs/MESSAGES.md lists every user-facing message', () => {
  const messages = extractMessages(ROOT);
  const markdown = readFileSync(join(ROOT, 'docs/MESSAGES.md'), 'utf8');

  it('the extractor finds the messages of every integration and of the SDK', () => {
    for (const integration of ['all', 's3', 'gdrive', 'onedrive', 'imap', 'caldav']) {
      expect(messages.some((m) => m.integration === integration && m.kind === 'error'), integration).toBe(true);
    }
    // Messages built in several ways: a ConfigProblem, a thrown SDK error, a table of texts, a warning.
    const templates = messages.map((m) => m.template);
    expect(templates).toContain('option location: is required');
    expect(templates).toContain('the session token has expired (hint: refresh session_token or the credential source) (<code>)');
    expect(templates).toContain('special files (devices, sockets, pipes) cannot be restored to <name>; skipped');
  });

  it('every message template in the code has a row', () => {
    const missing = missingFrom(markdown, messages);
    expect(missing, `docs/MESSAGES.md has no row for:\n${describeMissing(missing)}`).toEqual([]);
  });

  it('fails when a row is removed', () => {
    const first = messages[0] as Message;
    const row = markdown.split('\n').find((l) => catalogueTemplates(l).has(first.template));
    expect(row, first.template).toBeDefined();
    const without = markdown.replace(`${row as string}\n`, '');
    expect(missingFrom(without, messages).map((m) => m.template)).toContain(first.template);
  });
});
