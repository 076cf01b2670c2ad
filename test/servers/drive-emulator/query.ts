// The Drive v3 `q` search language, the subset the gdrive integration uses, parsed strictly (unknown terms are errors).
// Grammar from https://developers.google.com/workspace/drive/api/guides/ref-search-terms:
//   expr := or ; or := and ('or' and)* ; and := unary ('and' unary)* ; unary := 'not' unary | '(' expr ')' | term
//   term := STRING 'in' 'parents' | FIELD OP VALUE
// Fields supported: name (=, !=, contains), mimeType (=, !=, contains), trashed (=, !=), sharedWithMe (=),
// modifiedTime and createdTime (=, !=, <, <=, >, >=).

/** What a term needs to know about one file. */
export interface QueryFile {
  name: string;
  mimeType: string;
  parents: readonly string[];
  trashed: boolean;
  sharedWithMe: boolean;
  modifiedTime: string;
  createdTime: string;
}

/** A compiled query. */
export type Predicate = (f: QueryFile) => boolean;

/** Thrown for a query the emulator (and Drive) would reject with 400 invalid. */
export class QueryError extends Error {}

type Token = { t: 'str'; v: string } | { t: 'word'; v: string } | { t: 'op'; v: string } | { t: 'paren'; v: '(' | ')' };

function tokenize(q: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < q.length) {
    const c = q[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "'") {
      let v = '';
      i++;
      for (;;) {
        if (i >= q.length) throw new QueryError('unterminated string');
        const d = q[i] as string;
        if (d === '\\') {
          const next = q[i + 1];
          if (next !== "'" && next !== '\\') throw new QueryError(`invalid escape \\${next ?? ''}`);
          v += next;
          i += 2;
        } else if (d === "'") {
          i++;
          break;
        } else {
          v += d;
          i++;
        }
      }
      out.push({ t: 'str', v });
    } else if (c === '(' || c === ')') {
      out.push({ t: 'paren', v: c });
      i++;
    } else if ('=!<>'.includes(c)) {
      const two = q.slice(i, i + 2);
      if (two === '!=' || two === '<=' || two === '>=') {
        out.push({ t: 'op', v: two });
        i += 2;
      } else if (c === '!') {
        throw new QueryError('unexpected !');
      } else {
        out.push({ t: 'op', v: c });
        i++;
      }
    } else {
      const m = /^[A-Za-z0-9_.:-]+/.exec(q.slice(i));
      if (!m) throw new QueryError(`unexpected character ${c}`);
      out.push({ t: 'word', v: m[0] });
      i += m[0].length;
    }
  }
  return out;
}

/** Compiles a `q` string; throws QueryError for anything outside the supported subset. */
export function compileQuery(q: string | undefined): Predicate {
  if (q === undefined || q.trim() === '') return () => true;
  const tokens = tokenize(q);
  let pos = 0;
  const peek = (): Token | undefined => tokens[pos];
  const word = (w: string): boolean => {
    const t = peek();
    return t?.t === 'word' && t.v.toLowerCase() === w;
  };

  const parseOr = (): Predicate => {
    let left = parseAnd();
    while (word('or')) {
      pos++;
      const l = left;
      const r = parseAnd();
      left = (f) => l(f) || r(f);
    }
    return left;
  };
  const parseAnd = (): Predicate => {
    let left = parseUnary();
    while (word('and')) {
      pos++;
      const l = left;
      const r = parseUnary();
      left = (f) => l(f) && r(f);
    }
    return left;
  };
  const parseUnary = (): Predicate => {
    if (word('not')) {
      pos++;
      const inner = parseUnary();
      return (f) => !inner(f);
    }
    const t = peek();
    if (t?.t === 'paren' && t.v === '(') {
      pos++;
      const inner = parseOr();
      const close = peek();
      if (close?.t !== 'paren' || close.v !== ')') throw new QueryError('missing )');
      pos++;
      return inner;
    }
    return parseTerm();
  };
  const parseTerm = (): Predicate => {
    const t = tokens[pos++];
    if (!t) throw new QueryError('unexpected end of query');
    if (t.t === 'str') {
      if (!word('in')) throw new QueryError(`expected "in" after '${t.v}'`);
      pos++;
      const field = tokens[pos++];
      if (field?.t !== 'word' || field.v !== 'parents') throw new QueryError('only "in parents" is supported');
      const id = t.v;
      return (f) => f.parents.includes(id);
    }
    if (t.t !== 'word') throw new QueryError('expected a field name');
    const field = t.v;
    const op = tokens[pos++];
    if (op?.t === 'word' && op.v === 'contains') {
      const value = tokens[pos++];
      if (value?.t !== 'str') throw new QueryError('contains needs a string');
      if (field === 'name') return (f) => f.name.toLowerCase().includes(value.v.toLowerCase());
      if (field === 'mimeType') return (f) => f.mimeType.includes(value.v);
      throw new QueryError(`contains is not supported on ${field}`);
    }
    if (op?.t !== 'op') throw new QueryError(`expected an operator after ${field}`);
    const value = tokens[pos++];
    if (!value) throw new QueryError('missing value');
    switch (field) {
      case 'name':
      case 'mimeType': {
        if (value.t !== 'str') throw new QueryError(`${field} needs a quoted string`);
        if (op.v !== '=' && op.v !== '!=') throw new QueryError(`operator ${op.v} is not supported on ${field}`);
        const get = (f: QueryFile): string => (field === 'name' ? f.name : f.mimeType);
        return op.v === '=' ? (f) => get(f) === value.v : (f) => get(f) !== value.v;
      }
      case 'trashed':
      case 'sharedWithMe': {
        if (value.t !== 'word' || (value.v !== 'true' && value.v !== 'false')) throw new QueryError(`${field} needs true or false`);
        const want = value.v === 'true';
        if (field === 'sharedWithMe' && op.v !== '=') throw new QueryError('sharedWithMe only supports =');
        if (op.v !== '=' && op.v !== '!=') throw new QueryError(`operator ${op.v} is not supported on ${field}`);
        const get = (f: QueryFile): boolean => (field === 'trashed' ? f.trashed : f.sharedWithMe);
        return op.v === '=' ? (f) => get(f) === want : (f) => get(f) !== want;
      }
      case 'modifiedTime':
      case 'createdTime': {
        if (value.t !== 'str' || Number.isNaN(Date.parse(value.v))) throw new QueryError(`${field} needs an RFC 3339 date`);
        const when = Date.parse(value.v);
        const get = (f: QueryFile): number => Date.parse(field === 'modifiedTime' ? f.modifiedTime : f.createdTime);
        const cmp: Record<string, (a: number) => boolean> = {
          '=': (a) => a === when,
          '!=': (a) => a !== when,
          '<': (a) => a < when,
          '<=': (a) => a <= when,
          '>': (a) => a > when,
          '>=': (a) => a >= when,
        };
        const fn = cmp[op.v];
        if (!fn) throw new QueryError(`operator ${op.v} is not supported on ${field}`);
        return (f) => fn(get(f));
      }
      default:
        throw new QueryError(`unsupported query field ${field}`);
    }
  };

  const pred = parseOr();
  if (pos !== tokens.length) throw new QueryError('unexpected text after the query');
  return pred;
}
