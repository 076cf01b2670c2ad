// Start-up of the built executables: the bundle runs with the V8 code cache recorded at build time (scripts/sea-main.cjs).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import http2 from 'node:http2';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleIntegration } from '../../scripts/build-sea.ts';
import { decodeMessage, encodeMessage, launchPlugin, spawnPlugin } from '../harness/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BUILT = join(ROOT, 'dist', 'fixture', 'fixture');
const KINDS = ['importer', 'exporter', 'storage'] as const;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kts-startup-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts the built fixture as `kind` with the debug log, sends Init and returns the process's stderr. */
async function start(kind: (typeof KINDS)[number], env: NodeJS.ProcessEnv = {}): Promise<string> {
  await mkdir(join(dir, kind), { recursive: true });
  const p = await launchPlugin({ executable: BUILT, args: [kind] }, { cwd: dir, env: { KLOSET_TS_LOG: 'debug', NODE_OPTIONS: undefined, ...env } });
  try {
    const reply = await p.host.init(kind, 'fixture', { location: `fixture://${join(dir, kind)}` });
    expect(reply.type).toBe('fixture');
  } finally {
    await p.dispose();
  }
  return p.process.stderr();
}

describe.skipIf(!existsSync(BUILT))('sdk start-up of the built executable', () => {
  it.each(KINDS)('runs the %s with the code cache recorded at build time', async (kind) => {
    const stderr = await start(kind);
    expect(stderr).toMatch(new RegExp(`DEBUG fixture/${kind}: serving the ${kind} \\d+ ms after start code_cache=accepted`));
    expect(stderr).not.toMatch(/Code cache data rejected/);
  });

  it("compiles none of Node's built-in modules from source (the startup snapshot carries their code cache, made under the executables' V8 flags)", () => {
    const r = spawnSync(BUILT, ['--version'], { env: { ...process.env, NODE_OPTIONS: '', NODE_DEBUG_NATIVE: 'CODE_CACHE' }, encoding: 'utf8' });
    expect(r.stdout).toMatch(/^fixture /);
    expect(r.stderr).toMatch(/Code cache of \S+ \(\w+\) is accepted/);
    expect(r.stderr.match(/Code cache of \S+ \(\w+\) is rejected/g) ?? []).toEqual([]);
  });

  it('still serves when V8 refuses the cache (other V8 flags in NODE_OPTIONS), compiling from source', async () => {
    const stderr = await start('storage', { NODE_OPTIONS: '--stack-trace-limit=20' });
    expect(stderr).toMatch(/serving the storage \d+ ms after start code_cache=rejected/);
  });

  it('answers a gzip-compressed Init (zlib, loaded by grpc-js only when a message needs it)', async () => {
    const proc = await spawnPlugin(BUILT, { args: ['storage'], cwd: dir, env: { NODE_OPTIONS: undefined } });
    const session = http2.connect('http://127.0.0.1:0', { createConnection: () => proc.duplex });
    try {
      const payload = gzipSync(encodeMessage('store.InitRequest', { proto: 'fixture', config: { location: `fixture://${join(dir, 'gzip')}` } }));
      const frame = Buffer.alloc(5 + payload.length);
      frame[0] = 1; // compressed
      frame.writeUInt32BE(payload.length, 1);
      payload.copy(frame, 5);
      const stream = session.request({
        ':method': 'POST',
        ':path': '/store.Store/Init',
        'content-type': 'application/grpc',
        'grpc-encoding': 'gzip',
        'grpc-accept-encoding': 'identity',
        te: 'trailers',
      });
      stream.end(frame);
      const chunks: Buffer[] = [];
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('trailers', resolve));
      for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
      expect((await trailers)['grpc-status']).toBe('0');
      const body = Buffer.concat(chunks);
      expect(body[0]).toBe(0);
      expect(decodeMessage('store.InitResponse', body.subarray(5, 5 + body.readUInt32BE(1))).type).toBe('fixture');
    } finally {
      session.destroy();
      await proc.close();
    }
  });
});

describe('sdk bundles for the executables', () => {
  const entries = [
    ...readdirSync(join(ROOT, 'integrations')).map((name) => ({ name, file: join(ROOT, 'integrations', name, 'index.ts') })),
    { name: 'fixture', file: join(ROOT, 'test', 'fixture', 'index.ts') },
  ].filter((e) => existsSync(e.file));

  it.each(entries)('$name has no dynamic import() (its vm.Script has no module loader), grpc-js gets zlib and dns lazily, no keepNames, error classes keep their names, the AWS SDK is tree-shaken', async ({ name, file }) => {
    const bundle = await bundleIntegration({ root: ROOT, integrationFile: file, name, outFile: join(dir, name, 'bundle.cjs'), minify: true });
    const text = bundle.text.toString('utf8');
    expect(/(^|[^\w$.])import\(/.exec(text)?.[0], 'a dynamic import() is left').toBeUndefined();
    for (const builtin of ['zlib', 'dns']) {
      expect(text.includes(`??=require("node:${builtin}")`), `the lazy ${builtin} stand-in`).toBe(true);
    }
    // keepNames would wrap every function expression in __name(), a defineProperty per closure made.
    expect(/\b__name\(/.test(text), 'esbuild keepNames helper').toBe(false);
    // Without keepNames, a class esbuild renames (a clash between modules) would lose its name: the SDK's errors name
    // themselves (those every bundle keeps; the others are tree-shaken where unused).
    for (const error of ['KlosetError', 'ConfigError', 'NotInitialisedError']) {
      expect(text.includes(`name="${error}"`), `${error} names itself`).toBe(true);
    }
    // The AWS SDK comes from its ES module builds: only the S3 commands in use are kept.
    if (name === 's3') {
      expect(text).toContain('PutObjectCommand');
      expect(text).not.toContain('PutBucketInventoryConfigurationCommand');
    }
  });
});

