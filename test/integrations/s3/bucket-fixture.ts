// A generated source bucket for the s3 round-trip and fault tests: nested prefixes, awkward keys, metadata, tags, markers, a large object.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { CreateBucketCommand, PutObjectCommand, type PutObjectCommandInput, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createLimiter } from '../../../shared/index.ts';
import { pseudoRandom } from '../../conformance/data.ts';
import type { WireRecord } from '../../harness/index.ts';
import type { ExportEntry, ImportOutcome } from '../../harness/index.ts';

/** Keys that are awkward as paths; each must come back byte for byte. */
export const AWKWARD_KEYS = [
  'awkward/double//slash.txt',
  'awkward/trailing-with-content/',
  'awkward/dots/./single',
  'awkward/dots/x/../parent',
  'awkward/dots/..',
  'awkward/control\x01char\x1f.bin',
  'awkward/percent%41literal%.txt',
  'awkward/spaces and ≠ 日本語 ñ.txt',
  'awkward/both-file-and-dir',
  'awkward/both-file-and-dir/child.txt',
  'awkward/both-file-and-dir.txt',
  // radosgw caps names at osd_max_object_name_len (460, bucket marker included): long, not 1,024 bytes.
  `awkward/long/${'k'.repeat(120)}/${'e'.repeat(120)}/${'y'.repeat(120)}.txt`,
  'awkward/%self',
  'awkward/%_',
  'awkward/plus+and&amp=eq?q#h.txt',
];

/** Zero-byte directory markers in the fixture. */
export const MARKER_KEYS = ['markers/', 'markers/empty-dir/', 'markers/with-children/'];

/** What the fixture holds. */
export interface BucketFixture {
  bucket: string;
  prefix: string;
  /** Keys relative to the prefix → sha256 of their bytes. */
  digests: Map<string, string>;
  largeKey: string;
}

const CONTENT_TYPES = ['text/plain', 'application/json', 'image/png', 'application/octet-stream', 'text/html; charset=utf-8'];

/** Builds the put of fixture object `i` (nested prefixes, metadata on all, tags on some). */
function objectSpec(i: number): { key: string; body: Buffer; extra: Partial<PutObjectCommandInput> } {
  const depth = i % 4;
  const parts = [`top-${i % 7}`];
  for (let d = 0; d < depth; d++) parts.push(`level${d}-${(i >> d) % 3}`);
  const key = `${parts.join('/')}/object-${i}.dat`;
  const body = i % 97 === 0 ? Buffer.alloc(0) : pseudoRandom(64 + ((i * 131) % 4000), i);
  const extra: Partial<PutObjectCommandInput> = {
    ContentType: CONTENT_TYPES[i % CONTENT_TYPES.length],
    Metadata: { index: String(i), 'origin-host': `host-${i % 5}` },
  };
  if (i % 3 === 0) extra.CacheControl = 'max-age=3600, public';
  if (i % 5 === 0) extra.ContentDisposition = `attachment; filename="object-${i}.dat"`;
  if (i % 11 === 0) extra.ContentLanguage = 'fr-FR';
  if (i % 13 === 0) extra.ContentEncoding = 'identity';
  if (i % 4 === 0) extra.Tagging = `team=team-${i % 3}&index=${i}`;
  if (i % 17 === 0) extra.Metadata = { ...extra.Metadata, mtime: `${1_600_000_000 + i}.25` };
  return { key, body, extra };
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Fills `bucket/prefix` with `count` objects, the awkward keys, markers and one large object of `largeBytes`. */
export async function seedBucket(sdk: S3Client, bucket: string, prefix: string, count: number, largeBytes: number): Promise<BucketFixture> {
  await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
  const digests = new Map<string, string>();
  const limit = createLimiter(32);
  const put = (key: string, body: Buffer, extra: Partial<PutObjectCommandInput> = {}): Promise<void> =>
    limit(async () => {
      await sdk.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + key, Body: body, ContentLength: body.length, ...extra }));
      digests.set(key, sha(body));
    });
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const { key, body, extra } = objectSpec(i);
    jobs.push(put(key, body, extra));
  }
  AWKWARD_KEYS.forEach((key, i) => jobs.push(put(key, Buffer.from(`awkward ${i}: ${key}`), { ContentType: 'text/plain', Tagging: 'kind=awkward' })));
  for (const key of MARKER_KEYS) jobs.push(put(key, Buffer.alloc(0), { ContentType: 'application/x-directory', Metadata: { marker: 'yes' } }));
  jobs.push(put('markers/with-children/child.txt', Buffer.from('child')));
  await Promise.all(jobs);
  const largeKey = 'large/object.bin';
  if (largeBytes > 0) {
    const block = pseudoRandom(1024 * 1024, 99);
    const hash = createHash('sha256');
    async function* gen(): AsyncGenerator<Buffer> {
      for (let sent = 0, n = 0; sent < largeBytes; n++) {
        const piece = Buffer.from(block.subarray(0, Math.min(block.length, largeBytes - sent)));
        piece.writeUInt32BE(n, 0);
        hash.update(piece);
        sent += piece.length;
        yield piece;
      }
    }
    await new Upload({
      client: sdk,
      params: { Bucket: bucket, Key: prefix + largeKey, Body: Readable.from(gen()), ContentType: 'application/x-large', Metadata: { size: String(largeBytes) } },
      partSize: 16 * 1024 * 1024,
      queueSize: 4,
    }).done();
    digests.set(largeKey, hash.digest('hex'));
  }
  return { bucket, prefix, digests, largeKey };
}

/**
 * The restore the host would send for an import: every non-xattr record under `root`, with paths relative to it
 * (`/` = the root itself), FileInfo and xattr names as recorded, and the content the import read.
 */
export function restoreEntries(outcome: ImportOutcome, root: string): ExportEntry[] {
  const entries: ExportEntry[] = [];
  const rel = (p: string): string => (p === root ? '/' : root === '/' ? p : p.slice(root.length));
  let hasRoot = false;
  for (const r of outcome.records as WireRecord[]) {
    if (r.isXattr || r.error || !r.fileInfo) continue;
    if (r.pathname !== root && !r.pathname.startsWith(root === '/' ? '/' : `${root}/`)) continue;
    const path = rel(r.pathname);
    if (path === '/') hasRoot = true;
    const content = r.hasReader ? (outcome.contents.get(r.pathname) as Buffer | undefined) : undefined;
    entries.push({ path, info: { ...r.fileInfo }, xattrs: [...r.extendedAttributes], content });
  }
  if (!hasRoot) entries.push({ path: '/', info: { name: 'root', mode: (0x80000000 | 0o755) >>> 0 } });
  return entries;
}
