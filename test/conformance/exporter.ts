// The exporter conformance suite: every exporter runs it against its real server or emulator.
import { afterAll, describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage, makeFileInfo, makeRecord, MODE, type ExportEntry, type PluginHost } from '../harness/index.ts';
import { assertNoSecrets, openConnector, protoOf, type ConformanceTarget, type OpenConnector } from './connect.ts';
import { standardTree, type TreeFile } from './data.ts';

/** What an exporter's conformance run needs. */
export interface ExporterConformanceOptions {
  target: ConformanceTarget;
  /** Config of a fresh, empty destination. */
  freshConfig(): Promise<Record<string, string>>;
  /** Reads back what a destination holds: path relative to the restore target (`/a/b`) → bytes. */
  inspect(config: Record<string, string>): Promise<Map<string, Buffer>>;
  /** The tree to restore (default: the standard hostile tree). Services that only take some items give their own. */
  tree?: TreeFile[];
  /** Compares one restored item with what was sent (default: exact bytes). */
  same?(sent: Buffer, restored: Buffer, path: string): void;
  secrets?: readonly string[];
  badConfig?: { config: Record<string, string>; key: string };
  knownFailures?: Readonly<Record<string, string>>;
}

/** Export entries for a tree of files: the target `/`, every intermediate directory, then the files (pre-order is the harness's job). */
export function entriesFor(files: TreeFile[]): ExportEntry[] {
  const seconds = (d: Date): { seconds: number; nanos: number } => ({ seconds: Math.floor(d.getTime() / 1000), nanos: 0 });
  const entries: ExportEntry[] = [{ path: '/', info: { name: 'source-dir', mode: (MODE.DIR | 0o755) >>> 0, modTime: { seconds: 1_700_000_000, nanos: 0 } } }];
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = `/${parts.slice(0, i).join('/')}`;
      if (dirs.has(d)) continue;
      dirs.add(d);
      entries.push({ path: d, info: { name: parts[i - 1] as string, mode: (MODE.DIR | 0o755) >>> 0, modTime: seconds(f.mtime) } });
    }
    entries.push({
      path: `/${f.path}`,
      info: { name: parts[parts.length - 1] as string, mode: 0o644, size: f.content.length, modTime: seconds(f.mtime) },
      content: f.content,
    });
  }
  return entries;
}

/**
 * Sends records with raw, possibly hostile paths on the Export stream (the harness, like the real host, only sends
 * clean paths) and returns the results by path. Each file gets `content` then the empty terminator.
 */
export async function rawExport(host: PluginHost, paths: string[], content: Buffer): Promise<Map<string, string>> {
  const call = await host.connection.stream('/plakar.exporter.Exporter/Export');
  const modTime = { seconds: 1_700_000_000, nanos: 0 };
  const send = (req: object): Promise<void> => call.write(encodeMessage('plakar.exporter.ExportRequest', req));
  await send({ record: makeRecord({ pathname: '/', fileInfo: makeFileInfo({ name: 'root', mode: (MODE.DIR | 0o755) >>> 0, modTime }) }) });
  for (const p of paths) {
    await send({ record: makeRecord({ pathname: p, hasReader: true, fileInfo: makeFileInfo({ name: p.split('/').pop() ?? 'x', mode: 0o644, size: content.length, modTime }) }) });
    if (content.length > 0) await send({ chunk: content });
    await send({ chunk: Buffer.alloc(0) });
  }
  call.halfClose();
  const results = new Map<string, string>();
  for (;;) {
    const msg = await call.read();
    if (msg === undefined) break;
    const res = decodeMessage('plakar.exporter.ExportResponse', msg).result as { header?: { pathname?: string }; error?: string } | undefined;
    if (!res?.header) throw new Error('an export result without header (the Go host would panic)');
    results.set(res.header.pathname ?? '', res.error ?? '');
  }
  return results;
}

/** Registers the exporter conformance cases for one connector. */
export function runExporterConformance(options: ExporterConformanceOptions): void {
  const { target } = options;
  const proto = protoOf(target);
  const secrets = options.secrets ?? [];
  const opened: OpenConnector[] = [];
  const messages: string[] = [];
  const same = options.same ?? ((a: Buffer, b: Buffer, p: string) => expect(b.equals(a), `bytes of ${p}`).toBe(true));
  const caseIt = (title: string, fn: () => Promise<void>, timeout?: number): void => {
    const reason = options.knownFailures?.[title];
    if (reason) it.fails(`${title} (known failure: ${reason})`, fn, timeout);
    else it(title, fn, timeout);
  };

  async function open(config: Record<string, string>): Promise<OpenConnector> {
    const c = await openConnector(target, 'exporter');
    opened.push(c);
    await c.host.init('exporter', proto, config, { maxConcurrency: 4 });
    return c;
  }

  describe(`${target.integration.name} exporter: conformance`, () => {
    afterAll(async () => {
      for (const c of opened) {
        try {
          assertNoSecrets(c.stderr(), secrets, `${target.integration.name} stderr`);
        } finally {
          await c.dispose();
        }
      }
      for (const m of messages) assertNoSecrets(m, secrets, 'a status message');
    });

    caseIt(
      'a tree with directories, empty files, a large file and awkward names round-trips',
      async () => {
        const config = await options.freshConfig();
        const tree = options.tree ?? standardTree();
        const c = await open(config);
        const out = await c.host.exportTree(entriesFor(tree));
        expect(out.status.code, out.status.details).toBe(0);
        expect(out.itemErrors).toEqual([]);
        expect(out.results.length).toBe(out.sent.length);
        const got = await options.inspect(config);
        for (const f of tree) {
          const restored = got.get(`/${f.path}`);
          expect(restored, `missing /${f.path}`).toBeDefined();
          same(f.content, restored as Buffer, f.path);
        }
      },
      600_000,
    );

    caseIt(
      'paths that escape the target are rejected and nothing is written outside it',
      async () => {
        const config = await options.freshConfig();
        const good = (options.tree ?? standardTree())[0] as TreeFile;
        const hostile = ['/../escape-up', '/a/../../escape-nested', '/nul\0byte', 'relative-escape', '/ctrl\u0001char'];
        const c = await open(config);
        const results = await rawExport(c.host, [...hostile, `/${good.path}`], good.content);
        for (const p of hostile) {
          expect(results.get(p), `result for ${JSON.stringify(p)}`).toMatch(/refusing/);
          messages.push(results.get(p) ?? '');
        }
        expect(results.get(`/${good.path}`)).toBe('');
        const got = await options.inspect(config);
        for (const p of got.keys()) expect(p.includes('escape') || p.includes('\0'), p).toBe(false);
        same(good.content, got.get(`/${good.path}`) as Buffer, good.path);
      },
      600_000,
    );

    caseIt(
      'a single file restores under the synthetic root',
      async () => {
        const config = await options.freshConfig();
        const f = (options.tree ?? standardTree())[0] as TreeFile;
        const name = f.path.split('/').pop() as string;
        const c = await open(config);
        const out = await c.host.exportTree(
          [{ path: `/${name}`, info: { name, mode: 0o644, size: f.content.length, modTime: { seconds: 1_700_000_000, nanos: 0 } }, content: f.content }],
          { singleFile: true },
        );
        expect(out.status.code, out.status.details).toBe(0);
        expect(out.itemErrors).toEqual([]);
        const got = await options.inspect(config);
        same(f.content, got.get(`/${name}`) as Buffer, name);
      },
      600_000,
    );

    caseIt(
      'a file cut off by the host is not restored half-written, and the others are',
      async () => {
        const config = await options.freshConfig();
        const tree = (options.tree ?? standardTree()).filter((f) => f.content.length > 0);
        const victim = tree.reduce((a, b) => (b.content.length > a.content.length ? b : a));
        const c = await open(config);
        const out = await c.host.exportTree(entriesFor(tree), {
          failAt: { path: `/${victim.path}`, afterBytes: Math.floor(victim.content.length / 2) },
        });
        expect(out.aborted).toBe(true);
        const got = await options.inspect(config);
        const partial = got.get(`/${victim.path}`);
        if (partial) same(victim.content, partial, victim.path);
      },
      600_000,
    );

    if (options.badConfig) {
      const bad = options.badConfig;
      caseIt(`a bad ${bad.key} fails Init with a message naming the key`, async () => {
        const c = await openConnector(target, 'exporter');
        opened.push(c);
        let text = '';
        try {
          await c.host.init('exporter', proto, bad.config);
        } catch (err) {
          text = (err as Error).message;
        }
        messages.push(text);
        expect(text).toContain(bad.key);
        expect(text).toMatch(new RegExp(`^${target.integration.name} exporter: `));
      });
    }
  });
}
