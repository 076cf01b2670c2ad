// Extracts every message a user can see (errors sent to the host, warnings on stderr) from the sources, with the TS compiler API.
//
// `npx tsx scripts/messages.ts` prints the list as JSON; `--text` prints one line per message. The catalogue a user reads
// is docs/MESSAGES.md, and test/meta/messages.test.ts fails when a template printed here has no entry there.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

/** One message the code can produce. */
export interface Message {
  /** `s3`, `gdrive`, `onedrive`, `imap`, `caldav`, or `all` for the SDK's own messages. */
  integration: string;
  /** Connectors whose code can produce it (`importer`, `exporter`, `storage`, `login`); empty when not known. */
  connectors: string[];
  /** `error`: ends an RPC or an item (the host prints it); `warning`: a WARN or ERROR line on stderr. */
  kind: 'error' | 'warning';
  /**
   * The text with `<name>` for each value filled in at run time, `[text]` for a part that may be absent and
   * `{a|b}` for alternatives. Errors get `<integration> <connector>: ` in front at run time (shared/protocol/status.ts).
   */
  template: string;
  /** `path:line` of every place that builds this text (relative to the repository root). */
  sources: string[];
}

/** Messages left out of the catalogue, each with the reason no user can see it. Keyed by `file: template`. */
export const NOT_USER_FACING: Readonly<Record<string, string>> = {
  'shared/define.ts: integration name <name>: use [a-z0-9-]':
    'checks an integration\'s own definition at module load: a bad name fails the build and every test, never a user\'s run',
  'shared/define.ts: protocol <p>: letters, digits, + - . and at least 2 characters': 'same: definition check at module load',
  'shared/define.ts: protocol <p> is built into Plakar': 'same: definition check at module load',
  'shared/transport/serve.ts: <name> has no importer':
    'the executable is asked for a connector its manifest does not declare; Plakar only spawns declared connectors, and test/meta checks manifests against the code',
  'shared/transport/serve.ts: <name> has no exporter': 'same as "has no importer"',
  'shared/transport/serve.ts: <name> has no storage': 'same as "has no importer"',
  'shared/errors.ts: option <problems>: invalid value': 'ConfigError(key) without a message: no call site omits the message',
  'shared/protocol/codec.ts: unresolved method <service>.<name>': 'the embedded .proto files lack a method the server registers: a build error caught by every test',
  'shared/retry/pacer.ts: aborted': 'abort reason of a wait cancelled by the host or at shutdown; the host does not print the status of a call it cancelled',
  'shared/protocol/streams.ts: cancelled by the host': 'same: the host cancelled the call itself',
  'shared/protocol/runtime.ts: shutting down': 'same: abort reason while the process exits after stdin closes',
  'integrations/onedrive/upload.ts: internal: fragment size <chunkSize> is not a multiple of 320 KiB':
    'assertion: chunk_size is validated as a multiple of 320 KiB when options are parsed',
  'integrations/onedrive/client.ts: internal: no drive selected': 'assertion: Init selects the drive before any connector method runs',
};

/** Functions whose result is shown as the value of their first argument (`JSON.stringify(path)` → `<path>`). */
const TRANSPARENT_CALLS = new Set([
  'stringify',
  'String',
  'Number',
  'quote',
  'formatSize',
  'formatDuration',
  'macHex',
  'round',
  'floor',
  'ceil',
  'sanitize',
  'encodeURIComponent',
  'decodeURIComponent',
  'firstLine',
]);
/** String and array methods shown as their receiver (`names.join(', ')` → `<names>`). */
const RECEIVER_METHODS = new Set(['join', 'slice', 'replace', 'trim', 'toFixed', 'toUpperCase', 'toLowerCase', 'split', 'map', 'filter', 'toString', 'padStart', 'toLocaleString']);
/** Placeholder names for some common expressions. */
const RENAMED = new Map([
  ['describeError', 'cause'],
  ['length', 'count'],
  ['originOf', 'server'],
  ['imapErrorText', 'cause'],
  ['tidyServerText', 'reply'],
]);
const renamed = (name: string): string | undefined => RENAMED.get(name);

const ROOT = resolve(import.meta.dirname, '..');
const MAX_DEPTH = 4;

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'gen') out.push(...sourceFiles(p));
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Relative imports of each file, resolved to absolute paths (for the connector each file serves). */
function importGraph(program: ts.Program, files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const sf = program.getSourceFile(f);
    const deps: string[] = [];
    sf?.forEachChild((n) => {
      if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
        const spec = n.moduleSpecifier.text;
        if (spec.startsWith('.')) deps.push(resolve(dirname(f), spec));
      }
    });
    graph.set(f, deps);
  }
  return graph;
}

function reachable(graph: Map<string, string[]>, start: string): Set<string> {
  const seen = new Set<string>();
  const todo = [start];
  while (todo.length > 0) {
    const f = todo.pop() as string;
    if (seen.has(f)) continue;
    seen.add(f);
    todo.push(...(graph.get(f) ?? []));
  }
  return seen;
}

/** Every user-facing message of the repository at `root`, sorted by integration, then template. */
export function extractMessages(root = ROOT): Message[] {
  const files = [...sourceFiles(join(root, 'shared')), ...sourceFiles(join(root, 'integrations'))];
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2023,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    allowImportingTsExtensions: true,
    noEmit: true,
    strict: true,
    skipLibCheck: true,
    types: ['node'],
  });
  const checker = program.getTypeChecker();
  const graph = importGraph(program, files);

  // Which connector entry files (importer.ts, exporter.ts, storage.ts, login.ts) reach each integration file.
  const connectorsOf = new Map<string, Set<string>>();
  for (const f of files) {
    const rel = relative(root, f);
    const m = /^integrations\/[^/]+\/(importer|exporter|storage|login)\.ts$/.exec(rel);
    if (!m) continue;
    for (const dep of reachable(graph, f)) {
      if (!relative(root, dep).startsWith(rel.slice(0, rel.lastIndexOf('/') + 1))) continue;
      const set = connectorsOf.get(dep) ?? new Set<string>();
      set.add(m[1] as string);
      connectorsOf.set(dep, set);
    }
  }
  const sharedConnectors = (rel: string): string[] => {
    const m = /^shared\/protocol\/(importer|exporter|storage)-server\.ts$/.exec(rel);
    if (m) return [m[1] as string];
    if (rel.startsWith('shared/cache/')) return ['storage'];
    return [];
  };

  const found = new Map<string, Message>();
  const add = (node: ts.Node, kind: Message['kind'], templates: string[]): void => {
    const sf = node.getSourceFile();
    const rel = relative(root, sf.fileName);
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
    const integration = rel.startsWith('integrations/') ? (rel.split('/')[1] as string) : 'all';
    const connectors = integration === 'all' ? sharedConnectors(rel) : [...(connectorsOf.get(sf.fileName) ?? [])].sort();
    for (const raw of templates) {
      const template = normaliseTemplate(raw);
      if (!isMessage(template) || `${rel}: ${template}` in NOT_USER_FACING) continue;
      const id = `${integration}\u0000${kind}\u0000${template}`;
      const prev = found.get(id);
      if (prev) {
        if (!prev.sources.includes(`${rel}:${line}`)) prev.sources.push(`${rel}:${line}`);
        for (const c of connectors) if (!prev.connectors.includes(c)) prev.connectors.push(c);
        prev.connectors.sort();
      } else {
        found.set(id, { integration, connectors, kind, template, sources: [`${rel}:${line}`] });
      }
    }
  };

  // ---- rendering of expressions -------------------------------------------------------------------------------

  /** The declaration an identifier or call target refers to, following imports. */
  const declarationOf = (node: ts.Node): ts.Declaration | undefined => {
    let sym = checker.getSymbolAtLocation(node);
    if (sym && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
    return sym?.valueDeclaration ?? sym?.declarations?.[0];
  };

  /** The value of a compile-time constant expression (literals, `const` names, arithmetic), if it has one. */
  const evaluate = (e: ts.Expression, depth = 0): string | number | undefined => {
    if (depth > 16) return undefined;
    e = skipOuter(e);
    if (ts.isStringLiteralLike(e)) return e.text;
    if (ts.isNumericLiteral(e)) return Number(e.text.replace(/_/g, ''));
    if (ts.isIdentifier(e)) {
      const d = declarationOf(e);
      if (d && ts.isVariableDeclaration(d) && d.initializer && isConst(d)) return evaluate(d.initializer, depth + 1);
      return undefined;
    }
    if (ts.isBinaryExpression(e)) {
      const a = evaluate(e.left, depth + 1);
      const b = evaluate(e.right, depth + 1);
      if (a === undefined || b === undefined) return undefined;
      const op = e.operatorToken.kind;
      if (op === ts.SyntaxKind.PlusToken) return typeof a === 'number' && typeof b === 'number' ? a + b : `${a}${b}`;
      if (op === ts.SyntaxKind.AsteriskToken) return Number(a) * Number(b);
      if (op === ts.SyntaxKind.SlashToken) return Number(a) / Number(b);
      if (op === ts.SyntaxKind.AsteriskAsteriskToken) return Number(a) ** Number(b);
      if (op === ts.SyntaxKind.MinusToken) return Number(a) - Number(b);
      return undefined;
    }
    return undefined;
  };

  /** The `<name>` shown for a value computed at run time. */
  const placeholderName = (e: ts.Expression): string => {
    e = skipOuter(e);
    if (ts.isIdentifier(e)) return renamed(e.text) ?? e.text;
    if (ts.isPropertyAccessExpression(e)) return renamed(e.name.text) ?? e.name.text;
    if (ts.isConditionalExpression(e)) return placeholderName(e.whenTrue);
    if (ts.isElementAccessExpression(e)) return placeholderName(e.expression);
    if (ts.isBinaryExpression(e)) return placeholderName(e.left);
    if (ts.isPrefixUnaryExpression(e)) return placeholderName(e.operand);
    if (ts.isCallExpression(e)) {
      const callee = skipOuter(e.expression);
      const name = ts.isIdentifier(callee) ? callee.text : ts.isPropertyAccessExpression(callee) ? callee.name.text : '';
      const r = renamed(name);
      if (r) return r;
      if (TRANSPARENT_CALLS.has(name) && e.arguments[0]) return placeholderName(e.arguments[0]);
      if (RECEIVER_METHODS.has(name) && ts.isPropertyAccessExpression(callee)) return placeholderName(callee.expression);
      return name || 'value';
    }
    if (ts.isTemplateExpression(e) || ts.isNoSubstitutionTemplateLiteral(e)) return 'text';
    return 'value';
  };

  /** The values of a constant table an expression looks up (`TABLE[code]`, or a `const` holding such a lookup). */
  const tableValues = (e: ts.Expression, depth: number): string[] | undefined => {
    e = skipOuter(e);
    if (ts.isIdentifier(e)) {
      const d = declarationOf(e);
      if (d && ts.isVariableDeclaration(d) && d.initializer && isConst(d) && ts.isElementAccessExpression(skipOuter(d.initializer))) {
        return tableValues(d.initializer, depth);
      }
      return undefined;
    }
    if (!ts.isElementAccessExpression(e) || !ts.isIdentifier(skipOuter(e.expression))) return undefined;
    const d = declarationOf(skipOuter(e.expression));
    const init = d && ts.isVariableDeclaration(d) ? d.initializer && skipOuter(d.initializer) : undefined;
    if (!init || !ts.isObjectLiteralExpression(init)) return undefined;
    return init.properties.flatMap((p) => (ts.isPropertyAssignment(p) ? variants(p.initializer, depth + 1) : []));
  };

  /** One expression inside `${…}` of a template, rendered as text (several texts when it reads a constant table). */
  const renderSpan = (e: ts.Expression, depth: number): string[] => {
    e = skipOuter(e);
    const v = evaluate(e);
    if (v !== undefined) return [String(v)];
    if (ts.isTemplateExpression(e) || ts.isNoSubstitutionTemplateLiteral(e)) return renderTemplate(e, depth);
    const table = depth < MAX_DEPTH ? tableValues(e, depth) : undefined;
    // Words (`source`, `store`) read best as alternatives; sentences (hints) each make a message of their own.
    if (table && table.length > 0) return table.every((t) => /^\S+$/.test(t)) ? [`{${[...new Set(table)].join('|')}}`] : table;
    if (ts.isConditionalExpression(e)) {
      const as = renderSpan(e.whenTrue, depth);
      const bs = renderSpan(e.whenFalse, depth);
      // `hint ? ` (${hint})` : ''` over a table of hints: one message per hint, and one without.
      if (as.length > 1 && bs.length === 1 && bs[0] === '') return [...as, ''];
      return as.flatMap((a) =>
        bs.map((b) => (a === b ? a : b === '' ? `[${a}]` : a === '' ? `[${b}]` : `{${a}|${b}}`)),
      );
    }
    if (ts.isIdentifier(e)) {
      // A local `const hint = cond ? 'text' : 'other'`: its texts, not a bare <hint>.
      const d = declarationOf(e);
      const init = d && ts.isVariableDeclaration(d) && isConst(d) && d.initializer ? skipOuter(d.initializer) : undefined;
      if (init && ts.isConditionalExpression(init) && isTextLiteral(init.whenTrue) && isTextLiteral(init.whenFalse)) return renderSpan(init, depth);
    }
    if (ts.isBinaryExpression(e) && isDefaulting(e)) return renderSpan(e.left, depth);
    if (ts.isCallExpression(e)) {
      const callee = skipOuter(e.expression);
      if (ts.isPropertyAccessExpression(callee) && callee.name.text === 'trim') return renderSpan(callee.expression, depth);
    }
    return [`<${placeholderName(e)}>`];
  };

  const renderTemplate = (e: ts.TemplateExpression | ts.NoSubstitutionTemplateLiteral, depth: number): string[] => {
    if (ts.isNoSubstitutionTemplateLiteral(e)) return [e.text];
    let out = [e.head.text];
    for (const span of e.templateSpans) {
      const parts = renderSpan(span.expression, depth + 1);
      const next = out.flatMap((o) => parts.map((p) => o + p + span.literal.text));
      // A product that grows too large is shown with the value as a placeholder instead.
      out = next.length <= 40 ? next : out.map((o) => `${o}<${placeholderName(span.expression)}>${span.literal.text}`);
    }
    return out;
  };

  /** Every text an expression used as a message can have (several for `a ? b : c`, tables and helper functions). */
  const variants = (e: ts.Expression, depth = 0): string[] => {
    e = skipOuter(e);
    if (depth > MAX_DEPTH) return [`<${placeholderName(e)}>`];
    const v = evaluate(e);
    if (v !== undefined) return [String(v)];
    if (ts.isTemplateExpression(e) || ts.isNoSubstitutionTemplateLiteral(e)) return renderTemplate(e, depth);
    if (e.kind === ts.SyntaxKind.NullKeyword || (ts.isIdentifier(e) && e.text === 'undefined')) return [];
    if (ts.isConditionalExpression(e)) return [...variants(e.whenTrue, depth + 1), ...variants(e.whenFalse, depth + 1)];
    if (ts.isBinaryExpression(e) && isDefaulting(e)) return [...variants(e.left, depth + 1), ...variants(e.right, depth + 1)];
    if (ts.isIdentifier(e)) {
      const d = declarationOf(e);
      if (d && ts.isVariableDeclaration(d) && d.initializer && isConst(d)) return variants(d.initializer, depth + 1);
    }
    // A lookup in a constant table (`AUTH_HINTS[code]`): every value of the table.
    const table = tableValues(e, depth);
    if (table && table.length > 0) return table;
    if (ts.isCallExpression(e)) {
      const callee = skipOuter(e.expression);
      if (ts.isPropertyAccessExpression(callee) && ['trim', 'toString'].includes(callee.name.text)) return variants(callee.expression, depth + 1);
      const name = ts.isIdentifier(callee) ? callee.text : ts.isPropertyAccessExpression(callee) ? callee.name.text : '';
      if (!TRANSPARENT_CALLS.has(name) && name !== 'describeError' && !RECEIVER_METHODS.has(name)) {
        const texts = returnedTexts(declarationOf(ts.isPropertyAccessExpression(callee) ? callee.name : callee), depth);
        if (texts.length > 0) return texts;
      }
    }
    return [`<${placeholderName(e)}>`];
  };

  /** The texts a project function returns, when it returns texts (a helper that builds a message). */
  const returnedTexts = (d: ts.Declaration | undefined, depth: number): string[] => {
    if (!d || !(ts.isFunctionDeclaration(d) || ts.isMethodDeclaration(d) || ts.isArrowFunction(d) || ts.isVariableDeclaration(d))) return [];
    const fn = ts.isVariableDeclaration(d) ? d.initializer && skipOuter(d.initializer) : d;
    if (!fn || !ts.isFunctionLike(fn) || !isProjectFile(fn.getSourceFile().fileName)) return [];
    const body = (fn as ts.FunctionLikeDeclarationBase).body;
    if (!body) return [];
    if (!ts.isBlock(body)) return stringish(body) ? variants(body, depth + 1) : [];
    const out: string[] = [];
    const visit = (n: ts.Node): void => {
      if (ts.isFunctionLike(n)) return;
      if (ts.isReturnStatement(n) && n.expression && stringish(n.expression)) out.push(...variants(n.expression, depth + 1));
      n.forEachChild(visit);
    };
    body.forEachChild(visit);
    return out;
  };

  const isProjectFile = (f: string): boolean => !f.includes('node_modules') && files.includes(f);

  /** True when the expression is typed as a string (or string | undefined). */
  const stringish = (e: ts.Expression): boolean => {
    const t = checker.getTypeAtLocation(e);
    const parts = t.isUnion() ? t.types : [t];
    return parts.some((p) => (p.flags & ts.TypeFlags.StringLike) !== 0);
  };

  /** True for a value whose type is an Error (has `message` and `name`). */
  const isErrorType = (t: ts.Type): boolean => !!t.getProperty('message') && !!t.getProperty('name') && !!t.getProperty('stack');

  /** Text of the option key expression of a config problem. */
  const keyText = (e: ts.Expression | undefined): string[] => (e ? variants(e) : ['<key>']);

  // ---- the sites ----------------------------------------------------------------------------------------------

  const visit = (node: ts.Node): void => {
    // `new SomeError(…)` and `super(…)` in the constructor of an error class.
    if (ts.isNewExpression(node) || (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.SuperKeyword)) {
      const t = checker.getTypeAtLocation(ts.isNewExpression(node) ? node : (node.expression as ts.Expression));
      const className = ts.isNewExpression(node) ? skipOuter(node.expression).getText() : '';
      if (isErrorType(t) || (ts.isCallExpression(node) && isInsideErrorClass(node, checker))) messageOfConstruction(node, className);
    }
    // `{ key, message }` (a ConfigProblem) and `{ problem }` (an option parser's answer).
    if (ts.isObjectLiteralExpression(node)) {
      const props = new Map<string, ts.Expression>();
      for (const p of node.properties) {
        if (ts.isPropertyAssignment(p) && (ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) props.set(p.name.text, p.initializer);
        if (ts.isShorthandPropertyAssignment(p)) props.set(p.name.text, p.name);
      }
      if (props.size === 2 && props.has('key') && props.has('message')) {
        const msgs = variants(props.get('message') as ts.Expression);
        add(node, 'error', keyText(props.get('key')).flatMap((k) => msgs.map((m) => `option ${k}: ${m}`)));
      }
      if (props.size === 1 && props.has('problem')) add(node, 'error', variants(props.get('problem') as ts.Expression).map((m) => `option <key>: ${m}`));
    }
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
      const method = node.expression.name.text;
      const receiver = checker.getTypeAtLocation(node.expression.expression);
      const receiverName = receiver.getSymbol()?.getName();
      // Log lines a user sees at the default level (warn): warn, error, and once(…, 'warn' | 'error', …).
      if (receiverName === 'Logger') {
        const [a, b, c] = node.arguments;
        if ((method === 'warn' || method === 'error') && a) add(node, 'warning', variants(a));
        if (method === 'once' && b && c && ts.isStringLiteralLike(b) && (b.text === 'warn' || b.text === 'error')) add(node, 'warning', variants(c));
      }
      // The imap integration's problem collector: problems.add(key, message).
      if (receiverName === 'Problems' && method === 'add' && node.arguments.length === 2) {
        const msgs = variants(node.arguments[1] as ts.Expression);
        add(node, 'error', keyText(node.arguments[0]).flatMap((k) => msgs.map((m) => `option ${k}: ${m}`)));
      }
      // Option declarations: `expected` texts and `validate` answers become `option <key>: …`.
      if (ts.isIdentifier(node.expression.expression) && node.expression.expression.text === 'opt') optionDeclaration(node);
    }
    node.forEachChild(visit);
  };

  const messageOfConstruction = (node: ts.NewExpression | ts.CallExpression, className: string): void => {
    const args = node.arguments ?? ts.factory.createNodeArray<ts.Expression>();
    if (className === 'ConfigError') {
      const [first, second] = args;
      if (first && second) {
        const msgs = variants(second);
        add(node, 'error', keyText(first).flatMap((k) => msgs.map((m) => `option ${k}: ${m}`)));
      }
      return; // a list of problems: each was recorded where it was built
    }
    const sig = checker.getResolvedSignature(node);
    const params = sig?.getDeclaration()?.parameters ?? [];
    let index = params.findIndex((p) => ts.isIdentifier(p.name) && p.name.text === 'message');
    if (index < 0 && className === 'ItemError') index = 1; // ItemError(path, cause): a text cause is the message
    if (index < 0 && params.length === 0 && args.length > 0 && /^(Error|TypeError|RangeError)$/.test(className)) index = 0;
    if (index < 0 && /^(Error|TypeError|RangeError)$/.test(className)) index = 0;
    const arg = args[index];
    if (!arg) return;
    // Passing the constructor's own `message` parameter on (super(message)) adds no text.
    if (ts.isCallExpression(node) && ts.isIdentifier(skipOuter(arg))) {
      const d = declarationOf(skipOuter(arg));
      if (d && ts.isParameter(d)) return;
    }
    if (className === 'ItemError' && !stringish(arg)) return; // wraps another error, recorded where it was built
    add(node, 'error', variants(arg));
  };

  const optionDeclaration = (call: ts.CallExpression): void => {
    const [keyArg] = call.arguments;
    const decl = call.arguments.find((a): a is ts.ObjectLiteralExpression => ts.isObjectLiteralExpression(a));
    if (!keyArg || !decl || !ts.isStringLiteralLike(keyArg)) return;
    for (const p of decl.properties) {
      if (!ts.isPropertyAssignment(p) || !ts.isIdentifier(p.name)) continue;
      if (p.name.text === 'expected') add(p, 'error', variants(p.initializer).map((m) => `option ${keyArg.text}: expected ${m}`));
      if (p.name.text === 'validate') {
        const init = skipOuter(p.initializer);
        const texts = ts.isIdentifier(init) ? returnedTexts(declarationOf(init), 0) : ts.isArrowFunction(init) || ts.isFunctionExpression(init) ? returnedTexts(init, 0) : [];
        add(p, 'error', texts.map((m) => `option ${keyArg.text}: ${m}`));
      }
    }
  };

  for (const f of files) {
    const sf = program.getSourceFile(f);
    if (sf) visit(sf);
  }
  return [...found.values()].sort(
    (a, b) => order(a.integration) - order(b.integration) || a.kind.localeCompare(b.kind) || a.template.localeCompare(b.template),
  );
}

function order(integration: string): number {
  const i = ['all', 's3', 'gdrive', 'onedrive', 'imap', 'caldav'].indexOf(integration);
  return i < 0 ? 99 : i;
}

function skipOuter(e: ts.Expression): ts.Expression {
  for (;;) {
    if (ts.isParenthesizedExpression(e) || ts.isAsExpression(e) || ts.isNonNullExpression(e) || ts.isSatisfiesExpression(e)) e = e.expression;
    else return e;
  }
}

function isConst(d: ts.VariableDeclaration): boolean {
  return (ts.getCombinedNodeFlags(d) & ts.NodeFlags.Const) !== 0;
}

function isTextLiteral(e: ts.Expression): boolean {
  e = skipOuter(e);
  return ts.isStringLiteralLike(e) || ts.isTemplateExpression(e);
}

function isDefaulting(e: ts.BinaryExpression): boolean {
  return e.operatorToken.kind === ts.SyntaxKind.QuestionQuestionToken || e.operatorToken.kind === ts.SyntaxKind.BarBarToken;
}

function isInsideErrorClass(node: ts.Node, checker: ts.TypeChecker): boolean {
  let n: ts.Node | undefined = node;
  while (n && !ts.isClassLike(n)) n = n.parent;
  if (!n) return false;
  const t = checker.getTypeAtLocation(n);
  return !!t.getProperty('message') && !!t.getProperty('stack');
}

/** Whitespace collapsed, as the catalogue is matched on it. */
export function normaliseTemplate(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/**
 * True when the text says something of its own. Texts made only of placeholders and punctuation (`<what>: <message>`,
 * `<auth> (<code>)`) only join other messages, each of which is listed where it is built.
 */
function isMessage(template: string): boolean {
  return /[A-Za-z]{2,}/.test(template.replace(/^option [^:]+: /, '').replace(/<[^<>]*>/g, ''));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const messages = extractMessages();
  if (process.argv.includes('--text')) {
    for (const m of messages) {
      console.log(`${m.integration}\t${m.connectors.join(',') || '-'}\t${m.kind}\t${m.template}\t${m.sources.join(' ')}`);
    }
  } else {
    console.log(JSON.stringify(messages, null, 2));
  }
}
