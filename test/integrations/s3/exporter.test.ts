// s3 exporter beyond conformance: restores of a filesystem snapshot (Content-Type from the extension, paths as they
// are, X-Amz-Meta-Mtime), directory markers on demand, and paths whose key would leave the destination prefix.
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import type { OpenConnector } from '../../conformance/index.ts';
import type { ExportEntry } from '../../harness/index.ts';
import { s3Connectors } from './connect.ts';
import { listAll, readObject } from './inspect.ts';
import { bucketName, configFor, radosgw, sdkClient } from './servers.ts';

const rgw = await radosgw();
const sdk: S3Client = sdkClient(rgw);
const connectors = s3Connectors([rgw.secretKey]);

afterAll(async () => {
  await connectors.disposeAll();
  sdk.destroy();
  await rgw.stop();
});

function exporter(config: Record<string, string>): Promise<OpenConnector> {
  return connectors.open('exporter', config);
}

const DIR = (0x80000000 | 0o755) >>> 0;
const mtime = { seconds: 1_700_000_123, nanos: 500_000_000 };
const dir = (path: string): ExportEntry => ({ path, info: { mode: DIR, modTime: mtime } });
const file = (path: string, text: string, xattrs: string[] = []): ExportEntry => ({
  path,
  info: { mode: 0o644, size: Buffer.byteLength(text), modTime: mtime },
  content: Buffer.from(text),
  xattrs,
});

/** A tree as a filesystem importer records it: no s3.v1 names (a foreign xattr only). */
function filesystemTree(): ExportEntry[] {
  return [
    dir('/'),
    dir('/docs'),
    dir('/docs/empty'),
    file('/docs/report.json', '{"ok":true}', ['user.comment']),
    file('/docs/notes.TXT', 'notes'),
    file('/docs/page.html', '<p>hi</p>'),
    file('/docs/photo.jpeg', 'not really a jpeg'),
    file('/docs/archive.tar.gz', 'gz'),
    file('/docs/no-extension', 'plain'),
    file('/docs/.hidden', 'dotfile'),
    file('/100%20literal.txt', 'percent kept'),
  ];
}

const bucketOf = (config: Record<string, string>): string => (config.location as string).split('/')[3] as string;

describe('s3 exporter: restores from other sources', () => {
  it('a filesystem snapshot: Content-Type guessed from the extension, paths kept as they are, mtime in X-Amz-Meta-Mtime, no directory objects', async () => {
    const config = configFor(rgw, bucketName('exp-fs'), 'restored');
    const bucket = bucketOf(config);
    const c = await exporter(config);
    const out = await c.host.exportTree(filesystemTree());
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors).toEqual([]);
    const keys = (await listAll(sdk, bucket)).map((o) => o.key).sort();
    expect(keys).toEqual(
      [
        'restored/100%20literal.txt',
        'restored/docs/.hidden',
        'restored/docs/archive.tar.gz',
        'restored/docs/no-extension',
        'restored/docs/notes.TXT',
        'restored/docs/page.html',
        'restored/docs/photo.jpeg',
        'restored/docs/report.json',
      ].sort(),
    );
    const head = (key: string) => sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    const types: Record<string, string | undefined> = {};
    for (const key of keys) types[key.slice('restored/'.length)] = (await head(key)).ContentType;
    expect(types).toEqual({
      '100%20literal.txt': 'text/plain; charset=utf-8',
      'docs/.hidden': 'application/octet-stream',
      'docs/archive.tar.gz': 'application/gzip',
      'docs/no-extension': 'application/octet-stream',
      'docs/notes.TXT': 'text/plain; charset=utf-8',
      'docs/page.html': 'text/html; charset=utf-8',
      'docs/photo.jpeg': 'image/jpeg',
      'docs/report.json': 'application/json',
    });
    const report = await head('restored/docs/report.json');
    // Only the mtime: the foreign xattr `user.comment` is not S3 metadata.
    expect(report.Metadata).toEqual({ mtime: '1700000123.500' });
    expect((await readObject(sdk, bucket, 'restored/100%20literal.txt')).toString()).toBe('percent kept');
  });

  it('directory_markers=true writes a zero-byte dir/ object for every directory below the prefix', async () => {
    const config = configFor(rgw, bucketName('exp-markers'), 'restored', { directory_markers: 'true' });
    const bucket = bucketOf(config);
    const c = await exporter(config);
    const out = await c.host.exportTree(filesystemTree());
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors).toEqual([]);
    const listed = await listAll(sdk, bucket);
    const markers = listed.filter((o) => o.key.endsWith('/'));
    expect(markers.map((o) => o.key).sort()).toEqual(['restored/docs/', 'restored/docs/empty/']);
    expect(markers.every((o) => o.size === 0)).toBe(true);
    expect(listed.length).toBe(8 + 2);
    const marker = await sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: 'restored/docs/empty/' }));
    expect(marker.ContentType).toBe('application/x-directory');
    expect(marker.Metadata?.mtime).toBe('1700000123.500');
  });

  it('a path whose key would climb above the destination prefix is refused for that item only', async () => {
    const config = configFor(rgw, bucketName('exp-escape'), 'jail/inner');
    const bucket = bucketOf(config);
    const c = await exporter(config);
    // Paths recorded by the s3 importer are encoded keys: `%2E%2E` is a key segment `..`, which the host's own path
    // checks cannot see. `../../x` would land outside jail/inner/ on a service that resolves dot-segments.
    const s3 = ['s3.v1.content-type=text%2Fplain'];
    const out = await c.host.exportTree([
      dir('/'),
      dir('/a'),
      dir('/a/%2E%2E'),
      dir('/a/%2E%2E/%2E%2E'),
      dir('/%2E%2E'),
      file('/a/%2E%2E/%2E%2E/escaped.txt', 'escape', s3),
      file('/%2E%2E/sibling.txt', 'escape too', s3),
      file('/a/%2E%2E/inside.txt', 'stays inside', s3),
      file('/a/kept.txt', 'kept', s3),
    ]);
    expect(out.status.code, out.status.details).toBe(0);
    expect(out.itemErrors.map((e) => e.pathname).sort()).toEqual(['/%2E%2E/sibling.txt', '/a/%2E%2E/%2E%2E/escaped.txt']);
    for (const e of out.itemErrors) expect(e.error).toMatch(/^s3 exporter: refusing to restore "[^"]+": its key "[^"]+" would escape s3:\/\/[^ ]+\/jail\/inner$/);
    expect((await listAll(sdk, bucket)).map((o) => o.key).sort()).toEqual(['jail/inner/a/../inside.txt', 'jail/inner/a/kept.txt']);
  });
});
