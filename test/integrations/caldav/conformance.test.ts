// The importer and exporter conformance suites for caldav, against Radicale (objects named after the hostile fixture names).
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { integration } from '../../../integrations/caldav/index.ts';
import { decodeSegment, encodeSegment } from '../../../shared/index.ts';
import { HOSTILE_NAMES, runExporterConformance, runImporterConformance, type TreeFile } from '../../conformance/index.ts';
import { Account, parsed } from './dav-util.ts';
import { simpleEvent } from './fixtures.ts';
import { startProxy, type Proxy } from './proxy.ts';
import { startRadicale, type RunningServer } from './servers.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const target = { integration, proto: 'caldav', packageDir: join(ROOT, 'dist', 'caldav') };

let srv: RunningServer;
let host = '';
const proxies: Proxy[] = [];
let seq = 0;

beforeAll(async () => {
  srv = await startRadicale();
  host = new URL(srv.url).host;
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await srv?.stop();
});

/** Radicale keeps its own files as dot-files in each collection folder, so it refuses object names starting with a dot. */
const NAMES = HOSTILE_NAMES.filter((n) => !n.startsWith('.')).map((n) => `${n}.ics`);

/** The restore tree: one event per hostile name (a calendar holds only calendar objects, and no sub-directories). */
const TREE: TreeFile[] = NAMES.map((name, i) => ({
  path: name,
  content: Buffer.from(simpleEvent(`conformance-${i}@kloset.test`, `Event ${i}: ${name}`)),
  mtime: new Date('2024-03-04T05:06:07Z'),
}));

const alice = (): Account => new Account(srv.url, 'alice', 'alicepw');

/** A fresh calendar of alice's holding one event per hostile name; expected bytes are what the server serves. */
async function seedCalendar(): Promise<{ calendar: string; expected: Array<{ path: string; content: Buffer }> }> {
  const calendar = `conf-${++seq}`;
  const a = alice();
  await a.mkcalendar(`/alice/${calendar}/`, { displayName: `Conformance ${seq}` });
  for (const f of TREE) await a.put(`/alice/${calendar}/${encodeURIComponent(f.path)}`, f.content.toString('utf8'));
  const served = await a.objects(`/alice/${calendar}/`, 'calendar');
  return {
    calendar,
    // Snapshot names use the SDK's reversible segment encoding (`%` → `%25`).
    expected: [...served].map(([name, data]) => ({ path: `/${calendar}/${encodeSegment(name)}`, content: Buffer.from(data, 'utf8') })),
  };
}

runImporterConformance({
  target,
  seed: async () => {
    const { calendar, expected } = await seedCalendar();
    return { config: { location: `caldav://${host}/alice/${calendar}/`, username: 'alice', password: 'alicepw', use_tls: 'false' }, expected };
  },
  seedBroken: async () => {
    const { calendar, expected } = await seedCalendar();
    const victim = encodeSegment(NAMES[0] as string);
    // The proxy corrupts that one event in every answer: the server itself holds only valid objects.
    const p = await startProxy(srv.url, { rewrite: (_req, body) => body.replace(/SUMMARY:Event 0: [^\r\n]*/g, '$&\r\nnot an iCalendar line') });
    proxies.push(p);
    return {
      config: { location: `caldav://${p.host}/alice/${calendar}/`, username: 'alice', password: 'alicepw', use_tls: 'false' },
      expected: expected.filter((f) => f.path !== `/${calendar}/${victim}`),
      brokenPath: `/${calendar}/${victim}`,
    };
  },
  secrets: ['alicepw', 'bobpw'],
  badConfig: { config: { location: 'caldav://127.0.0.1:1/', use_tls: 'sometimes' }, key: 'use_tls' },
});

runExporterConformance({
  target,
  freshConfig: async () => ({ location: `caldav://${host}/bob/restore-${++seq}/`, username: 'bob', password: 'bobpw', use_tls: 'false' }),
  inspect: async (config) => {
    const path = new URL((config.location ?? '').replace(/^caldav:/, 'http:')).pathname;
    const bob = new Account(srv.url, 'bob', 'bobpw');
    const objects = await bob.objects(path, 'calendar').catch(() => new Map<string, string>());
    // A snapshot name is decoded into the server name (`percent%20name` → `percent name`): look each one up that way.
    const out = new Map<string, Buffer>();
    for (const f of TREE) {
      const data = objects.get(decodeSegment(f.path));
      if (data !== undefined) out.set(`/${f.path}`, Buffer.from(data));
    }
    return out;
  },
  tree: TREE,
  // Radicale rewrites what it stores (property order, folding, an added VTIMEZONE): compare parsed objects.
  same: (sent, restored, path) => {
    if (JSON.stringify(parsed(restored.toString('utf8'))) !== JSON.stringify(parsed(sent.toString('utf8')))) throw new Error(`${path}: restored object differs`);
  },
  secrets: ['alicepw', 'bobpw'],
  badConfig: { config: { location: 'caldav://127.0.0.1:1/', on_conflict: 'sometimes' }, key: 'on_conflict' },
});
