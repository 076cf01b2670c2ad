// The `fields` partial-response selector of Google APIs: `a,b(c,d/e),f/g` applied to a JSON response.
// Syntax from https://developers.google.com/workspace/drive/api/guides/fields-parameter.

/** A parsed selection: each key maps to a sub-selection, or `true` for the whole value. */
export type Selection = Map<string, Selection | true>;

/** Thrown for a malformed `fields` value (Drive answers 400 invalidParameter). */
export class FieldsError extends Error {}

/** Parses a `fields` value; `*` selects everything. */
export function parseFields(text: string): Selection | '*' {
  const trimmed = text.trim();
  if (trimmed === '*') return '*';
  let pos = 0;
  const parseList = (): Selection => {
    const sel: Selection = new Map();
    for (;;) {
      parsePath(sel);
      while (text[pos] === ' ') pos++;
      if (text[pos] === ',') {
        pos++;
        continue;
      }
      return sel;
    }
  };
  const parsePath = (into: Selection): void => {
    while (text[pos] === ' ') pos++;
    const m = /^[A-Za-z_*][A-Za-z0-9_]*/.exec(text.slice(pos));
    if (!m) throw new FieldsError(`invalid field selection at ${pos}`);
    const name = m[0];
    pos += name.length;
    if (text[pos] === '/') {
      pos++;
      const existing = into.get(name);
      const sub: Selection = existing instanceof Map ? existing : new Map();
      if (existing !== true) into.set(name, sub);
      parsePath(sub);
      return;
    }
    if (text[pos] === '(') {
      pos++;
      const sub = parseList();
      if (text[pos] !== ')') throw new FieldsError('missing ) in fields');
      pos++;
      const existing = into.get(name);
      if (existing instanceof Map) for (const [k, v] of sub) existing.set(k, v);
      else if (existing !== true) into.set(name, sub);
      return;
    }
    into.set(name, true);
  };
  const sel = parseList();
  if (pos !== text.length) throw new FieldsError(`unexpected text in fields at ${pos}`);
  return sel;
}

/** Applies a selection to a value (arrays are projected element-wise). */
export function project(value: unknown, sel: Selection | '*'): unknown {
  if (sel === '*') return value;
  if (Array.isArray(value)) return value.map((v) => project(v, sel));
  if (value === null || typeof value !== 'object') return value;
  if (sel.has('*')) return value;
  const out: Record<string, unknown> = {};
  for (const [key, sub] of sel) {
    const v = (value as Record<string, unknown>)[key];
    if (v === undefined) continue;
    out[key] = sub === true ? v : project(v, sub);
  }
  return out;
}
