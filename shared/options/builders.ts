// Option declarations: one builder per value kind; each declaration drives parsing, validation, schema and docs.
import { parseDuration, parseSize, formatSize, formatDuration } from './units.ts';

/** The kinds of option value the SDK knows how to parse. */
export type OptionKind = 'string' | 'bool' | 'int' | 'size' | 'duration' | 'enum' | 'list' | 'url';

/** Fields every option declaration may carry. */
export interface OptionDeclaration<V> {
  /** User documentation; the first line is a sentence that stands alone. */
  help: string;
  /** The key must be present. */
  required?: boolean;
  /** Default value, used when the key is absent or empty. */
  default?: V;
  /** The value is a credential: redacted from every log line and error, `writeOnly` in the schema. */
  secret?: boolean;
  /** Hidden from the short option listing; still documented. */
  advanced?: boolean;
  /** Example values for the docs. */
  examples?: readonly string[];
  /** Older key names still accepted for this option. */
  deprecatedAlias?: readonly string[];
  /** Extra check on the parsed value: return a problem text (what was expected) or undefined. */
  validate?: (value: V) => string | undefined;
  /** Which connector kinds read this option (default: all of the integration's kinds that list it). */
  kinds?: readonly ('importer' | 'exporter' | 'storage')[];
}

/** A declared option: the single source of parsing, validation, schema and docs. */
export interface OptionSpec<K extends string = string, V = unknown> {
  readonly key: K;
  readonly kind: OptionKind;
  readonly help: string;
  readonly required: boolean;
  readonly secret: boolean;
  readonly advanced: boolean;
  readonly examples: readonly string[];
  readonly deprecatedAlias: readonly string[];
  readonly kinds: readonly ('importer' | 'exporter' | 'storage')[] | undefined;
  /** Allowed values (enum options). */
  readonly choices: readonly string[] | undefined;
  /** The default as the user would write it, for docs and schema. */
  readonly defaultText: string | undefined;
  /** The parsed default. */
  readonly defaultValue: V | undefined;
  /** Numeric bounds (int, size, duration in ms) for docs and schema. */
  readonly min: number | undefined;
  readonly max: number | undefined;
  /** A regular expression the raw text must match (string options). */
  readonly pattern: string | undefined;
  /** Parses the raw string; returns the value or a `{ problem }` saying what was expected. */
  parse(raw: string): { value: V } | { problem: string };
  /** Phantom: the parsed value type. */
  readonly __value?: V;
}

type Resolved<V, O> = O extends { required: true } ? V : O extends { default: unknown } ? V : V | undefined;

function quote(raw: string): string {
  return JSON.stringify(raw.length > 80 ? `${raw.slice(0, 77)}...` : raw);
}

function make<K extends string, V>(
  key: K,
  kind: OptionKind,
  decl: OptionDeclaration<V>,
  parseRaw: (raw: string) => { value: V } | { problem: string },
  extra: { choices?: readonly string[]; min?: number; max?: number; pattern?: string; format?: (v: V) => string } = {},
): OptionSpec<K, V> {
  const parse = (raw: string): { value: V } | { problem: string } => {
    const r = parseRaw(raw);
    if ('problem' in r) return r;
    const extraProblem = decl.validate?.(r.value);
    return extraProblem ? { problem: extraProblem } : r;
  };
  const format = extra.format ?? ((v: V) => String(v));
  return {
    key,
    kind,
    help: decl.help,
    required: decl.required === true,
    secret: decl.secret === true,
    advanced: decl.advanced === true,
    examples: decl.examples ?? [],
    deprecatedAlias: decl.deprecatedAlias ?? [],
    kinds: decl.kinds,
    choices: extra.choices,
    defaultValue: decl.default,
    defaultText: decl.default === undefined ? undefined : format(decl.default),
    min: extra.min,
    max: extra.max,
    pattern: extra.pattern,
    parse,
  };
}

interface Bounds {
  min?: number;
  max?: number;
}

function boundsProblem(value: number, b: Bounds, fmt: (n: number) => string): string | undefined {
  if (b.min !== undefined && value < b.min) return `at least ${fmt(b.min)}`;
  if (b.max !== undefined && value > b.max) return `at most ${fmt(b.max)}`;
  return undefined;
}

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on', 'y']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off', 'n']);

/** Option builders. Every builder takes the snake_case key and its declaration. */
export const opt = {
  /** Free text, optionally constrained by a regular expression (`pattern`, described by `expected`). */
  string<const K extends string, const O extends OptionDeclaration<string> & { pattern?: RegExp; expected?: string }>(
    key: K,
    decl: O,
  ): OptionSpec<K, Resolved<string, O>> {
    const pattern = decl.pattern;
    return make(
      key,
      'string',
      decl,
      (raw) =>
        pattern && !pattern.test(raw)
          ? { problem: `expected ${decl.expected ?? `text matching ${pattern.source}`}` }
          : { value: raw },
      { pattern: pattern?.source },
    ) as OptionSpec<K, Resolved<string, O>>;
  },

  /** A boolean: true/false, yes/no, on/off, 1/0 (any case). */
  bool<const K extends string, const O extends OptionDeclaration<boolean>>(key: K, decl: O): OptionSpec<K, Resolved<boolean, O>> {
    return make<K, boolean>(key, 'bool', decl, (raw) => {
      const word = raw.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) return { value: true };
      if (FALSE_WORDS.has(word)) return { value: false };
      return { problem: `expected true or false, got ${quote(raw)}` };
    }) as OptionSpec<K, Resolved<boolean, O>>;
  },

  /** A whole number within optional bounds. */
  int<const K extends string, const O extends OptionDeclaration<number> & Bounds>(key: K, decl: O): OptionSpec<K, Resolved<number, O>> {
    return make(
      key,
      'int',
      decl,
      (raw) => {
        const t = raw.trim();
        if (!/^[+-]?\d+$/.test(t) || !Number.isSafeInteger(Number(t))) {
          return { problem: `expected a whole number, got ${quote(raw)}` };
        }
        const value = Number(t);
        const p = boundsProblem(value, decl, String);
        return p ? { problem: `expected a whole number ${p}, got ${quote(raw)}` } : { value };
      },
      { min: decl.min, max: decl.max },
    ) as OptionSpec<K, Resolved<number, O>>;
  },

  /** A byte size such as `16MiB`, `512K` or `1048576`; the value is a number of bytes. */
  size<const K extends string, const O extends OptionDeclaration<number> & Bounds & { multipleOf?: number }>(
    key: K,
    decl: O,
  ): OptionSpec<K, Resolved<number, O>> {
    return make(
      key,
      'size',
      decl,
      (raw) => {
        const value = parseSize(raw);
        if (value === undefined) return { problem: `expected a size such as 16MiB or 1048576, got ${quote(raw)}` };
        const p = boundsProblem(value, decl, formatSize);
        if (p) return { problem: `expected a size ${p}, got ${quote(raw)}` };
        if (decl.multipleOf && value % decl.multipleOf !== 0) {
          return { problem: `expected a multiple of ${formatSize(decl.multipleOf)}, got ${quote(raw)}` };
        }
        return { value };
      },
      { min: decl.min, max: decl.max, format: formatSize },
    ) as OptionSpec<K, Resolved<number, O>>;
  },

  /** A duration such as `30s`, `5m`, `1h30m`, `500ms` (a bare number is seconds); the value is milliseconds. */
  duration<const K extends string, const O extends OptionDeclaration<number> & Bounds>(
    key: K,
    decl: O,
  ): OptionSpec<K, Resolved<number, O>> {
    return make(
      key,
      'duration',
      decl,
      (raw) => {
        const value = parseDuration(raw);
        if (value === undefined) return { problem: `expected a duration such as 30s, 5m or 1h30m, got ${quote(raw)}` };
        const p = boundsProblem(value, decl, formatDuration);
        return p ? { problem: `expected a duration ${p}, got ${quote(raw)}` } : { value };
      },
      { min: decl.min, max: decl.max, format: formatDuration },
    ) as OptionSpec<K, Resolved<number, O>>;
  },

  /** One of a fixed set of words (matched without regard to case, returned as declared). */
  enum<const K extends string, const C extends readonly string[], const O extends OptionDeclaration<C[number]>>(
    key: K,
    choices: C,
    decl: O,
  ): OptionSpec<K, Resolved<C[number], O>> {
    return make<K, C[number]>(
      key,
      'enum',
      decl,
      (raw) => {
        const found = choices.find((c) => c.toLowerCase() === raw.trim().toLowerCase());
        return found === undefined
          ? { problem: `expected one of ${choices.join(', ')}, got ${quote(raw)}` }
          : { value: found as C[number] };
      },
      { choices },
    ) as OptionSpec<K, Resolved<C[number], O>>;
  },

  /** A comma-separated list; items are trimmed and empty items dropped. */
  list<const K extends string, const O extends OptionDeclaration<string[]>>(key: K, decl: O): OptionSpec<K, Resolved<string[], O>> {
    return make(
      key,
      'list',
      decl,
      (raw) => ({
        value: raw
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s.length > 0),
      }),
      { format: (v) => v.join(',') },
    ) as OptionSpec<K, Resolved<string[], O>>;
  },

  /** An absolute URL, optionally restricted to some schemes (`schemes: ['https', 'http']`). */
  url<const K extends string, const O extends OptionDeclaration<string> & { schemes?: readonly string[] }>(
    key: K,
    decl: O,
  ): OptionSpec<K, Resolved<string, O>> {
    return make(key, 'url', decl, (raw) => {
      let u: URL;
      try {
        u = new URL(raw.trim());
      } catch {
        return { problem: `expected an absolute URL such as https://host/path, got ${quote(raw)}` };
      }
      const scheme = u.protocol.replace(/:$/, '');
      if (decl.schemes && !decl.schemes.includes(scheme)) {
        return { problem: `expected a ${decl.schemes.join(' or ')} URL, got ${quote(raw)}` };
      }
      return { value: raw.trim() };
    }) as OptionSpec<K, Resolved<string, O>>;
  },
};

/** Any option declaration list. */
export type OptionList = readonly OptionSpec<string, unknown>[];

/** snake_case → camelCase at the type level. */
export type CamelCase<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;

/** The typed values object parsed from an option list (camelCase keys). `location` is always present. */
export type OptionValues<L extends OptionList> = {
  [S in L[number] as CamelCase<S['key']>]: S extends OptionSpec<string, infer V> ? V : never;
} & { location: string };

/** snake_case → camelCase at run time, matching `CamelCase`. */
export function camelCase(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}
