// Parses the host's all-strings config map against an option list: typed values, or one error listing every problem.
import { ConfigError, type ConfigProblem } from '../errors.ts';
import { redactor } from '../redact.ts';
import { camelCase, type OptionList, type OptionSpec, type OptionValues } from './builders.ts';

/** Keys the host injects or may leave in a config, accepted without declaration. */
export const HOST_KEYS: readonly string[] = ['location', 'passphrase', 'passphrase_cmd'];

/** How to treat keys that this connector does not declare. */
export interface ParseConfigOptions {
  /** Keys declared by the integration's other connector kinds: accepted and ignored (a store entry reused as a source). */
  siblingKeys?: readonly string[];
}

/** Parses and validates `config`; throws a ConfigError naming every bad key at once. Secrets are registered for redaction first. */
export function parseConfig<L extends OptionList>(
  specs: L,
  config: Readonly<Record<string, string>>,
  options: ParseConfigOptions = {},
): OptionValues<L> {
  const byKey = new Map<string, OptionSpec>();
  for (const spec of specs) {
    byKey.set(spec.key, spec);
    for (const alias of spec.deprecatedAlias) byKey.set(alias, spec);
  }
  for (const [key, raw] of Object.entries(config)) {
    const spec = byKey.get(key);
    if (spec?.secret || /(?:password|secret|token|private_key|passphrase)$/i.test(key)) redactor.add(raw);
  }

  const problems: ConfigProblem[] = [];
  const values: Record<string, unknown> = {};
  const seen = new Set<OptionSpec>();

  const location = config.location;
  if (location === undefined || location.trim() === '') {
    problems.push({ key: 'location', message: 'is required' });
  } else {
    values.location = location;
  }

  for (const [key, raw] of Object.entries(config)) {
    if (HOST_KEYS.includes(key)) continue;
    const spec = byKey.get(key);
    if (!spec) {
      if (options.siblingKeys?.includes(key)) continue;
      const guess = didYouMean(key, [...byKey.keys()]);
      problems.push({
        key,
        message: `unknown option${guess ? ` (did you mean ${guess}?)` : ''}; known options: ${specs.map((s) => s.key).join(', ') || 'none'}`,
      });
      continue;
    }
    if (seen.has(spec)) {
      problems.push({ key, message: `given twice (also as ${spec.key} or one of its aliases)` });
      continue;
    }
    seen.add(spec);
    if (raw.trim() === '') continue; // empty means unset, as the official integrations treat it
    const r = spec.parse(raw);
    if ('problem' in r) {
      problems.push({ key, message: spec.secret ? r.problem.replace(/, got .*$/, '') : r.problem });
    } else {
      values[camelCase(spec.key)] = r.value;
    }
  }

  for (const spec of specs) {
    const prop = camelCase(spec.key);
    if (prop in values) continue;
    if (spec.defaultValue !== undefined) {
      values[prop] = Array.isArray(spec.defaultValue) ? [...(spec.defaultValue as unknown[])] : spec.defaultValue;
    } else if (spec.required && !problems.some((p) => p.key === spec.key)) {
      problems.push({ key: spec.key, message: `is required (${firstLine(spec.help)})` });
    }
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return values as OptionValues<L>;
}

/** First line of a help text. */
export function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').trim().replace(/\.$/, '');
}

/** The closest known key within a small edit distance, or undefined. */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] as number;
      row[j] = Math.min(cur + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length] as number;
}
