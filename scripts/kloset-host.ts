// CLI that stands in for Plakar v1.1.4: list, back up, restore and storage-check through a plugin executable.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  chmodBitsFromGo,
  ContractError,
  entriesFromDirectory,
  formatGoMode,
  HostError,
  isDir,
  isRegular,
  isSymlink,
  launchPlugin,
  readManifest,
  RESOURCE,
  type ConnectorKind,
  type LaunchedPlugin,
  type ResourceType,
  type StdioMode,
  type WireRecord,
} from '../test/harness/index.ts';

const USAGE = `usage: npx tsx scripts/kloset-host.ts <command> [options] ...

Drives a Plakar integration executable exactly as the Plakar v1.1.4 host does (two pipes on fd 0/1, gRPC over
HTTP/2, the host's call order, acks, chunking and size limits) without Plakar.

commands:
  ls          <exe|manifest.yaml> <location> [key=value...]
              list what the importer would back up: mode, size, mtime, path (no content is read)
  backup      <exe|manifest.yaml> <location> <dir> [key=value...]
              import everything and write it under <dir> (xattrs as <file>.xattr.<name> sidecars); lists errors
  restore     <dir> <exe|manifest.yaml> <location> [key=value...]
              export the local tree <dir> through the exporter (as a restore of a snapshot of <dir>)
  store-check <exe|manifest.yaml> <location> [key=value...]
              open (or create, if opening fails) the store, then put/get/ranged get/list/delete a random object of
              each resource type; prints a pass/fail table

  <exe|manifest.yaml>  a plugin executable (give its argv with --args), or a manifest.yaml whose connector of the
                       command's kind (importer / exporter / storage) is spawned with its own args
  <location>           e.g. s3://bucket/prefix; rewritten like kloset: <proto>://<rest> (relative paths made absolute
                       when the manifest declares localfs, or with --localfs)
  key=value            extra config entries (all values are strings, as on the wire)

options:
  --args ARG           argv[1..] for an executable target (repeat for several)
  --proto NAME         the protocol sent in Init (default: the location's scheme)
  --mode MODE          pipes (default, like Plakar) | socketpair | one-socket
  --concurrency N      Open workers during import (default 2, what the real host ran)
  --max-concurrency N  maxconcurrency sent in Init options (default: CPU count - 1)
  --open               ls: also read every file's content (sizes become the bytes actually read)
  --all-types          store-check: also exercise the ECC resource types (never used by v1.1.x)
  --localfs            treat the connector as localfs when it is an executable
  --lenient            collect contract violations instead of stopping at the first one
  --stderr             pass the plugin's stderr through (it is always captured and shown on failure)
  -h, --help           this help

exit status: 0 on success, 1 when an item failed or a check failed, 2 on a fatal error.`;

interface Common {
  target: string;
  location: string;
  config: Record<string, string>;
  proto: string;
  args: string[];
  mode: StdioMode;
  lenient: boolean;
  passStderr: boolean;
  /** Init's maxconcurrency (default: CPU count − 1). */
  maxConcurrency?: number;
}

function fail(message: string): never {
  process.stderr.write(`kloset-host: ${message}\n`);
  process.exit(2);
}

const isManifest = (p: string): boolean => /\.ya?ml$/i.test(p);

/** Rewrites a location like kloset: split at the first ':', drop a leading `//`, absolutise for localfs, join with `://`. */
function canonicalLocation(raw: string, localfs: boolean): { proto: string; location: string } {
  const m = /^([A-Za-z0-9+.-]{2,}):(.*)$/s.exec(raw);
  if (!m) fail(`location ${JSON.stringify(raw)} has no <proto>: scheme`);
  const proto = m[1] as string;
  let rest = (m[2] as string).replace(/^\/\//, '');
  if (localfs && !path.isAbsolute(rest)) rest = path.resolve(rest);
  return { proto, location: `${proto}://${rest}` };
}

function parseKv(items: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) fail(`expected key=value, got ${JSON.stringify(item)}`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

async function launch(c: Common, kind: ConnectorKind): Promise<LaunchedPlugin> {
  const options = { mode: c.mode, passStderr: c.passStderr, strict: !c.lenient };
  try {
    return isManifest(c.target)
      ? await launchPlugin({ manifest: c.target, kind, protocol: c.proto }, options)
      : await launchPlugin({ executable: c.target, args: c.args }, options);
  } catch (err) {
    fail(`cannot start ${c.target}: ${(err as Error).message}`);
  }
}

async function finish(p: LaunchedPlugin, sendClose: boolean): Promise<void> {
  if (sendClose) {
    await p.host.close().catch((err: unknown) => process.stderr.write(`kloset-host: Close failed: ${(err as Error).message}\n`));
  }
  const exit = await p.dispose(5000);
  if (exit.timedOut) process.stderr.write('kloset-host: the plugin did not exit on EOF within 5 s; killed\n');
  else if (exit.code !== 0) process.stderr.write(`kloset-host: the plugin exited with ${exit.code ?? exit.signal}\n`);
}

/** Runs `body` on a launched plugin; reports host-side failures with the host's words and the plugin's stderr. */
async function withPlugin(c: Common, kind: ConnectorKind, body: (p: LaunchedPlugin) => Promise<number>): Promise<number> {
  const p = await launch(c, kind);
  try {
    const init = await p.host.init(kind, c.proto, c.config, { maxConcurrency: c.maxConcurrency });
    process.stderr.write(`init: origin=${JSON.stringify(init.origin)} type=${JSON.stringify(init.type)} root=${JSON.stringify(init.root)} flags=${init.flags}\n`);
    const code = await body(p);
    for (const v of p.host.violations) process.stderr.write(`violation: ${v}\n`);
    await finish(p, true);
    return code !== 0 ? code : p.host.violations.length > 0 ? 1 : 0;
  } catch (err) {
    const label = err instanceof ContractError ? 'contract violation' : err instanceof HostError ? `host (${err.name})` : 'error';
    process.stderr.write(`kloset-host: ${label}: ${(err as Error).message}\n`);
    await finish(p, false);
    if (!c.passStderr && p.process.stderr().trim() !== '') process.stderr.write(`--- plugin stderr ---\n${p.process.stderr()}`);
    return 2;
  }
}

function mtimeText(r: WireRecord): string {
  const t = r.fileInfo?.modTime;
  if (!t) return '-';
  return new Date(t.seconds * 1000 + Math.floor(t.nanos / 1e6)).toISOString();
}

async function cmdLs(c: Common, concurrency: number, openAll: boolean): Promise<number> {
  return withPlugin(c, 'importer', async (p) => {
    const out = await p.host.importAll({ maxConcurrency: concurrency, openContent: openAll, content: 'sha256' });
    const lines: string[] = [];
    for (const r of out.records) {
      if (r.error) lines.push(`ERROR ${r.pathname}: ${r.error}`);
      else if (r.isXattr) lines.push(`xattr ${r.pathname} ${r.xattrType === 1 ? 'ads' : 'xattr'}:${r.xattrName}`);
      else {
        const fi = r.fileInfo;
        if (!fi) continue;
        const ack = openAll ? out.acks.find((a) => a.pathname === r.pathname && !a.isXattr) : undefined;
        const size = ack?.fileInfo?.size ?? fi.size;
        lines.push(`${formatGoMode(fi.mode)} ${String(size).padStart(12)} ${mtimeText(r)} ${r.pathname}${r.target ? ` -> ${r.target}` : ''}`);
      }
    }
    process.stdout.write(lines.join('\n') + (lines.length ? '\n' : ''));
    for (const e of out.itemErrors) process.stdout.write(`KO ${e.pathname}: ${e.message}\n`);
    for (const w of out.warnings) process.stderr.write(`warning: ${w}\n`);
    process.stderr.write(`${out.records.length} records, ${out.errors.length} error records, ${out.itemErrors.length} item errors\n`);
    return out.itemErrors.length > 0 ? 1 : 0;
  });
}

/** Maps an absolute snapshot path under `dir`, refusing anything that would escape it. */
function under(dir: string, pathname: string): string {
  const joined = path.join(dir, path.posix.normalize(pathname));
  if (joined !== dir && !joined.startsWith(dir + path.sep)) throw new Error(`refusing to write outside ${dir}: ${pathname}`);
  return joined;
}

async function cmdBackup(c: Common, dir: string, concurrency: number): Promise<number> {
  const target = path.resolve(dir);
  fs.mkdirSync(target, { recursive: true });
  return withPlugin(c, 'importer', async (p) => {
    const dirs: WireRecord[] = [];
    const out = await p.host.importAll({
      maxConcurrency: concurrency,
      content: (record) => {
        const file = under(target, record.pathname);
        const dest = record.isXattr ? `${file}.xattr.${record.xattrName.replaceAll('/', '_')}` : file;
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        return fs.createWriteStream(dest);
      },
      onRecord: (record) => {
        if (record.error || record.isXattr || !record.fileInfo) return;
        const file = under(target, record.pathname);
        if (isDir(record.fileInfo.mode)) {
          fs.mkdirSync(file, { recursive: true });
          dirs.push(record);
        } else if (isSymlink(record.fileInfo.mode)) {
          fs.mkdirSync(path.dirname(file), { recursive: true });
          fs.rmSync(file, { force: true });
          fs.symlinkSync(record.target, file);
        }
      },
    });
    let files = 0;
    let bytes = 0;
    for (const ack of out.acks) {
      const fi = ack.fileInfo;
      if (ack.error || ack.isXattr || !fi || !isRegular(fi.mode)) continue;
      if (out.itemErrors.some((e) => e.key === ack.pathname)) continue;
      const file = under(target, ack.pathname);
      if (!fs.existsSync(file)) continue;
      files++;
      bytes += fi.size;
      fs.chmodSync(file, chmodBitsFromGo(fi.mode));
      const t = fi.modTime ? fi.modTime.seconds + fi.modTime.nanos / 1e9 : 0;
      fs.utimesSync(file, t, t);
    }
    for (const d of dirs.reverse()) {
      const fi = d.fileInfo;
      if (!fi) continue;
      const file = under(target, d.pathname);
      const t = fi.modTime ? fi.modTime.seconds + fi.modTime.nanos / 1e9 : 0;
      fs.chmodSync(file, chmodBitsFromGo(fi.mode) | 0o700);
      fs.utimesSync(file, t, t);
    }
    for (const e of out.errors) process.stdout.write(`error record ${e.pathname}: ${e.error}\n`);
    for (const e of out.itemErrors) process.stdout.write(`KO ${e.pathname}: ${e.message}\n`);
    for (const w of out.warnings) process.stderr.write(`warning: ${w}\n`);
    process.stdout.write(
      `backed up ${out.records.length} records (${files} files, ${bytes} bytes) into ${target}; ` +
        `${out.errors.length + out.itemErrors.length} errors\n`,
    );
    return out.errors.length + out.itemErrors.length > 0 ? 1 : 0;
  });
}

async function cmdRestore(c: Common, dir: string): Promise<number> {
  const source = path.resolve(dir);
  if (!fs.existsSync(source)) fail(`${source} does not exist`);
  return withPlugin(c, 'exporter', async (p) => {
    const out = await p.host.exportTree(entriesFromDirectory(source));
    for (const r of out.results) process.stdout.write(`${r.error ? 'KO' : 'OK'} ${r.pathname}${r.error ? `: ${r.error}` : ''}\n`);
    for (const w of out.warnings) process.stderr.write(`warning: ${w}\n`);
    process.stdout.write(`restored ${out.sent.length} records, ${out.itemErrors.length} errors\n`);
    return out.itemErrors.length > 0 ? 1 : 0;
  });
}

async function cmdStoreCheck(c: Common, allTypes: boolean): Promise<number> {
  return withPlugin(c, 'storage', async (p) => {
    const h = p.host;
    const rows: [string, boolean, string][] = [];
    const check = async (name: string, fn: () => Promise<string | void>): Promise<boolean> => {
      try {
        const detail = await fn();
        rows.push([name, true, detail ?? '']);
        return true;
      } catch (err) {
        rows.push([name, false, (err as Error).message]);
        return false;
      }
    };
    let opened = false;
    try {
      const config = await h.open();
      rows.push(['open (existing repository)', true, `${config.length} config bytes`]);
      opened = true;
    } catch (err) {
      rows.push(['open (existing repository)', true, `none: ${(err as Error).message}`]);
    }
    if (!opened) {
      const blob = Buffer.concat([Buffer.from('_KLOSET_'), randomBytes(120)]);
      const created = await check('create', async () => h.create(blob));
      if (created) {
        await check('open returns the created config verbatim', async () => {
          const back = await h.open();
          if (!back.equals(blob)) throw new Error(`got ${back.length} bytes that differ from the ${blob.length} stored`);
        });
      }
    }
    await check('ping', async () => h.ping());
    await check('mode is readable and writable (6)', async () => {
      const m = await h.mode();
      if ((m & 6) !== 6) throw new Error(`mode ${m}`);
      return `mode ${m}`;
    });
    await check('size', async () => `${await h.size()} bytes`);
    const types: [string, ResourceType, number][] = [
      ['packfile', RESOURCE.PACKFILE, 2 * 1024 * 1024 + 4099],
      ['state', RESOURCE.STATE, 70_000],
      ['lock', RESOURCE.LOCK, 300],
    ];
    if (allTypes) types.push(['ECC packfile', RESOURCE.ECC_PACKFILE, 5000], ['ECC state', RESOURCE.ECC_STATE, 5000]);
    for (const [name, type, size] of types) {
      const mac = randomBytes(32);
      const data = randomBytes(size);
      const put = await check(`${name}: put ${size} bytes`, async () => {
        const n = await h.put(type, mac, data);
        if (n !== size) throw new Error(`bytes_written ${n}`);
      });
      if (!put) continue;
      await check(`${name}: get whole`, async () => {
        const back = await h.get(type, mac);
        if (!back.equals(data)) throw new Error(`got ${back.length} bytes, content ${back.length === size ? 'differs' : 'truncated'}`);
      });
      const ranges: [number, number][] = [
        [0, 16],
        [Math.floor(size / 2) - 7, Math.min(size - Math.floor(size / 2) + 7, 1024 * 1024 + 13)],
        [size - 5, 5],
      ];
      await check(`${name}: ranged gets`, async () => {
        for (const [offset, length] of ranges) {
          const back = await h.get(type, mac, { offset, length });
          if (!back.equals(data.subarray(offset, offset + length))) throw new Error(`range ${offset}+${length} differs`);
        }
        return `${ranges.length} ranges`;
      });
      await check(`${name}: list contains it, 32-byte MACs`, async () => {
        const macs = await h.list(type);
        if (!macs.some((m) => m.equals(mac))) throw new Error(`not among ${macs.length} MACs`);
        return `${macs.length} objects`;
      });
      await check(`${name}: delete`, async () => h.delete(type, mac));
      await check(`${name}: gone after delete`, async () => {
        const macs = await h.list(type);
        if (macs.some((m) => m.equals(mac))) throw new Error('still listed');
        const err = await h.get(type, mac).then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        if (!err) throw new Error('get still succeeds');
        return `get fails: ${err.message}`;
      });
    }
    const width = Math.max(...rows.map(([n]) => n.length));
    for (const [name, ok, detail] of rows) {
      process.stdout.write(`${ok ? 'PASS' : 'FAIL'}  ${name.padEnd(width)}  ${detail}\n`);
    }
    for (const w of h.warnings) process.stderr.write(`warning: ${w}\n`);
    const failed = rows.filter(([, ok]) => !ok).length;
    process.stdout.write(`${rows.length - failed} passed, ${failed} failed\n`);
    return failed > 0 ? 1 : 0;
  });
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        args: { type: 'string', multiple: true },
        proto: { type: 'string' },
        mode: { type: 'string' },
        concurrency: { type: 'string' },
        'max-concurrency': { type: 'string' },
        open: { type: 'boolean' },
        'all-types': { type: 'boolean' },
        localfs: { type: 'boolean' },
        lenient: { type: 'boolean' },
        stderr: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(USAGE + '\n');
    return values.help ? 0 : 2;
  }
  const mode = (values.mode ?? 'pipes') as StdioMode;
  if (!['pipes', 'socketpair', 'one-socket'].includes(mode)) fail(`unknown --mode ${mode}`);
  const concurrency = Number(values.concurrency ?? 2);
  const kindOf: Record<string, ConnectorKind> = { ls: 'importer', backup: 'importer', restore: 'exporter', 'store-check': 'storage' };
  const kind = kindOf[command];
  if (!kind) fail(`unknown command ${command}\n${USAGE}`);

  let target: string | undefined;
  let rawLocation: string | undefined;
  let dir: string | undefined;
  let kv: string[];
  if (command === 'restore') [dir, target, rawLocation, ...kv] = rest;
  else if (command === 'backup') [target, rawLocation, dir, ...kv] = rest;
  else [target, rawLocation, ...kv] = rest;
  if (!target || !rawLocation || ((command === 'backup' || command === 'restore') && !dir)) fail(`missing arguments\n${USAGE}`);

  let localfs = values.localfs ?? false;
  if (isManifest(target)) {
    try {
      localfs = readManifest(target, kind).locationFlags.includes('localfs');
    } catch (err) {
      fail((err as Error).message);
    }
  }
  const { proto: scheme, location } = canonicalLocation(rawLocation, localfs);
  const common: Common = {
    target,
    location,
    config: { ...parseKv(kv), location },
    proto: values.proto ?? scheme,
    args: values.args ?? [],
    mode,
    lenient: values.lenient ?? false,
    passStderr: values.stderr ?? false,
    maxConcurrency: values['max-concurrency'] === undefined ? undefined : Number(values['max-concurrency']),
  };
  switch (command) {
    case 'ls':
      return cmdLs(common, concurrency, values.open ?? false);
    case 'backup':
      return cmdBackup(common, dir as string, concurrency);
    case 'restore':
      return cmdRestore(common, dir as string);
    default:
      return cmdStoreCheck(common, values['all-types'] ?? false);
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => fail((err as Error).stack ?? String(err)),
);
