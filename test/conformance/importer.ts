// The importer conformance suite: every importer runs it against its real server or emulator.
import { afterAll, describe, expect, it } from 'vitest';
import type { WireRecord } from '../harness/index.ts';
import { assertNoSecrets, openConnector, protoOf, type ConformanceTarget, type OpenConnector } from './connect.ts';
import { sha256 } from './data.ts';

/** What a seeded source holds and how the importer must present it. */
export interface SeededSource {
  config: Record<string, string>;
  /** Every regular file the import must yield: its snapshot pathname and exact bytes. */
  expected: Array<{ path: string; content: Buffer }>;
}

/** What an importer's conformance run needs. */
export interface ImporterConformanceOptions {
  target: ConformanceTarget;
  /** Fills a fresh place of the service with the integration's fixture items (hostile names included). */
  seed(): Promise<SeededSource>;
  /** A source where one item cannot be read or parsed: the run must go on and report only that item. */
  seedBroken?(): Promise<SeededSource & { brokenPath: string }>;
  secrets?: readonly string[];
  /** A config with one bad value, and the key the Init error must name. */
  badConfig?: { config: Record<string, string>; key: string };
  knownFailures?: Readonly<Record<string, string>>;
}

function infoKey(r: WireRecord): string {
  const fi = r.fileInfo;
  if (!fi) return `${r.pathname} (no fileinfo) ${r.error}`;
  return JSON.stringify([r.pathname, r.isXattr, r.xattrName, fi.name, fi.size, fi.mode, fi.modTime?.seconds, fi.modTime?.nanos, fi.dev, fi.ino, fi.uid, fi.gid, fi.nlink, fi.username, fi.groupname]);
}

/** Registers the importer conformance cases for one connector. */
export function runImporterConformance(options: ImporterConformanceOptions): void {
  const { target } = options;
  const proto = protoOf(target);
  const secrets = options.secrets ?? [];
  const opened: OpenConnector[] = [];
  const messages: string[] = [];
  const caseIt = (title: string, fn: () => Promise<void>, timeout?: number): void => {
    const reason = options.knownFailures?.[title];
    if (reason) it.fails(`${title} (known failure: ${reason})`, fn, timeout);
    else it(title, fn, timeout);
  };

  async function open(config: Record<string, string>): Promise<OpenConnector> {
    const c = await openConnector(target, 'importer');
    opened.push(c);
    await c.host.init('importer', proto, config, { maxConcurrency: 4 });
    return c;
  }

  describe(`${target.integration.name} importer: conformance`, () => {
    let seeded: SeededSource | undefined;
    const seededOnce = async (): Promise<SeededSource> => (seeded ??= await options.seed());

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
      'every record is valid and every file is byte-identical',
      async () => {
        const src = await seededOnce();
        const c = await open(src.config);
        const root = c.host.initResult?.root ?? '/';
        const out = await c.host.importAll({ maxConcurrency: 2, content: 'sha256' });
        expect(out.status.code).toBe(0);
        expect(out.errors).toEqual([]);
        expect(out.itemErrors).toEqual([]);
        expect(out.violations).toEqual([]);
        const byPath = new Map(out.records.filter((r) => !r.isXattr).map((r) => [r.pathname, r]));
        for (const f of src.expected) {
          const r = byPath.get(f.path);
          expect(r, `missing ${f.path}`).toBeDefined();
          expect(r?.hasReader).toBe(true);
          expect(out.contents.get(f.path), `content of ${f.path}`).toBe(sha256(f.content));
          const size = r?.fileInfo?.size ?? -2;
          expect(size === -1 || size === f.content.length, `size of ${f.path}`).toBe(true);
        }
        for (const r of out.records) {
          if (r.isXattr || r.error) continue;
          expect(r.pathname === root || r.pathname.startsWith(root === '/' ? '/' : `${root}/`), `${r.pathname} outside root ${root}`).toBe(true);
          expect(r.fileInfo?.nlink ?? 0).toBeLessThanOrEqual(1);
        }
      },
      600_000,
    );

    caseIt(
      'origin, type and root are stable and importing twice yields identical FileInfo',
      async () => {
        const src = await seededOnce();
        const a = await open(src.config);
        const b = await open(src.config);
        expect(b.host.initResult).toEqual(a.host.initResult);
        expect(a.host.initResult?.origin).toBeTruthy();
        expect(a.host.initResult?.type).not.toBe('fs');
        const first = await a.host.importAll({ openContent: false });
        const second = await b.host.importAll({ openContent: false });
        expect(second.records.map(infoKey).sort()).toEqual(first.records.map(infoKey).sort());
      },
      600_000,
    );

    caseIt(
      'a dry run acks every record without opening anything and ends cleanly',
      async () => {
        const src = await seededOnce();
        const c = await open(src.config);
        const out = await c.host.importAll({ dryRun: true });
        expect(out.status.code).toBe(0);
        expect(out.stats.opens).toBe(0);
        expect(out.acks.length).toBe(out.records.length);
      },
      600_000,
    );

    if (options.seedBroken) {
      const seedBroken = options.seedBroken;
      caseIt(
        'a broken item becomes a per-item error and the run goes on',
        async () => {
          const src = await seedBroken();
          const c = await open(src.config);
          const out = await c.host.importAll({ content: 'sha256' });
          expect(out.status.code).toBe(0);
          const failed = [...out.errors.map((e) => e.pathname), ...out.itemErrors.map((e) => e.pathname)];
          expect(failed).toEqual([src.brokenPath]);
          for (const e of [...out.errors.map((x) => x.error), ...out.itemErrors.map((x) => x.message)]) messages.push(e);
          for (const f of src.expected) expect(out.contents.get(f.path), f.path).toBe(sha256(f.content));
        },
        600_000,
      );
    }

    if (options.badConfig) {
      const bad = options.badConfig;
      caseIt(`a bad ${bad.key} fails Init with a message naming the key`, async () => {
        const c = await openConnector(target, 'importer');
        opened.push(c);
        let text = '';
        try {
          await c.host.init('importer', proto, bad.config);
        } catch (err) {
          text = (err as Error).message;
        }
        messages.push(text);
        expect(text).toContain(bad.key);
        expect(text).toMatch(new RegExp(`^${target.integration.name} importer: `));
      });
    }
  });
}
