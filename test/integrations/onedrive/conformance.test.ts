// The three conformance suites against the Graph emulator (in-process, or the built executable with KLOSET_TS_SPAWN=1).
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll } from 'vitest';
import { runExporterConformance, runImporterConformance, runStorageConformance, standardTree } from '../../conformance/index.ts';
import type { GraphEmulator } from '../../servers/graph-emulator.ts';
import { emulator, filesUnder, integration } from './helpers.ts';

let emu: GraphEmulator;
let n = 0;
const secrets: string[] = [];
const target = { integration };
beforeAll(async () => {
  emu = await emulator();
});
afterAll(async () => {
  await emu?.close();
});

/** A config for a fresh folder; its refresh token joins the secrets checked against stderr and messages. */
function fresh(prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  const config = emu.config(`onedrive:///conformance/${prefix}-${++n}`, extra);
  secrets.push(config.refresh_token as string);
  return config;
}
const folderOf = (config: Record<string, string>): string => (config.location as string).slice('onedrive://'.length);
/** OneDrive refuses these characters in names; the exporter restores them as full-width look-alikes (docs/onedrive.md). */
const FULLWIDTH: Record<string, string> = { '＂': '"', '＊': '*', '：': ':', '＜': '<', '＞': '>', '？': '?', '＼': '\\', '｜': '|' };
const onOneDrive = (path: string): boolean => !/["*:<>?\\|]/.test(path);

runStorageConformance({
  target,
  freshConfig: async () => fresh('repo', { upload_cutoff: '1MiB', chunk_size: '1280KiB' }),
  secrets,
  plantForeign: async (config) => {
    const base = folderOf(config);
    await emu.store.writeFile(emu.me, `${base}/packfiles/zz/not-a-mac`, 'junk');
    await emu.store.writeFile(emu.me, `${base}/packfiles/${'ab'.repeat(32)}.partial`, 'junk');
    await emu.store.writeFile(emu.me, `${base}/locks/nested/x`, 'junk');
    await emu.store.writeFile(emu.me, `${base}/README.txt`, 'junk');
  },
  badConfig: { config: { location: 'onedrive:///x', client_id: 'c', refresh_token: 'rt-x', chunk_size: '1000000' }, key: 'chunk_size' },
  manyObjects: Number(process.env.ONEDRIVE_OBJECTS ?? 600),
  bigObjectBytes: Number(process.env.ONEDRIVE_BIG_MIB ?? 24) * 1024 * 1024,
});

async function seed(prefix: string): Promise<{ config: Record<string, string>; expected: Array<{ path: string; content: Buffer }> }> {
  const config = fresh(prefix);
  const base = folderOf(config);
  const expected: Array<{ path: string; content: Buffer }> = [];
  for (const f of standardTree().filter((f) => onOneDrive(f.path))) {
    await emu.store.writeFile(emu.me, `${base}/${f.path}`, f.content, { mtime: f.mtime });
    expected.push({ path: `${base}/${f.path}`, content: f.content });
  }
  return { config, expected };
}

runImporterConformance({
  target,
  seed: () => seed('src'),
  seedBroken: async () => {
    const s = await seed('broken');
    const broken = `${folderOf(s.config)}/plain.txt`;
    // Bytes that no longer match the hashes OneDrive reported: the download fails its check, for this file only.
    const item = emu.store.resolve(emu.me, emu.store.item(emu.me, emu.me.rootId), broken.split('/').filter(Boolean));
    await import('node:fs/promises').then((fs) => fs.writeFile(item?.blob as string, Buffer.alloc(item?.size ?? 0, 0x41)));
    return { ...s, expected: s.expected.filter((f) => f.path !== broken), brokenPath: broken };
  },
  secrets,
  badConfig: { config: { location: 'onedrive:///', client_id: 'c', refresh_token: 'rt-x', listing: 'sideways' }, key: 'listing' },
});

runExporterConformance({
  target,
  freshConfig: async () => fresh('dst', { upload_cutoff: '1MiB', chunk_size: '640KiB' }),
  inspect: async (config) => {
    const out = new Map<string, Buffer>();
    for (const [p, item] of filesUnder(emu, emu.me, folderOf(config))) {
      if (item.kind !== 'file') continue;
      out.set(p.replace(/[＂＊：＜＞？＼｜]/g, (c) => FULLWIDTH[c] ?? c), item.blob ? await readFile(item.blob) : Buffer.alloc(0));
    }
    return out;
  },
  secrets,
  badConfig: { config: { location: 'onedrive:///', client_id: 'c', refresh_token: 'rt-x', on_conflict: 'merge' }, key: 'on_conflict' },
});
