// Deterministic test data: hostile names, content generators and digests shared by the conformance suites.
import { createHash, randomBytes } from 'node:crypto';

/** Names that break careless code: the characters ? " ' @ < > & + ≠, CJK, accents, spaces, leading dots and dashes. */
export const HOSTILE_NAMES = [
  'plain.txt',
  'spaces in name.txt',
  'quote"double.txt',
  "quote'single.txt",
  'at@sign.txt',
  'angle<br>.txt',
  'amp&plus+.txt',
  'question?.txt',
  'not≠equal.txt',
  '日本語のファイル.txt',
  'café-naïve-Ærø.txt',
  '.hidden',
  '-leading-dash',
  'percent%20name.txt',
  'hash#tag.txt',
] as const;

/** A file of the fixture tree. */
export interface TreeFile {
  /** Path below the tree's root, `/`-separated, no leading slash. */
  path: string;
  content: Buffer;
  mtime: Date;
}

/** The standard tree every importer and exporter suite uses: hostile names, deep paths, empty and multi-MiB files. */
export function standardTree(options: { largeBytes?: number } = {}): TreeFile[] {
  const mtime = new Date('2024-03-04T05:06:07Z');
  const files: TreeFile[] = [];
  HOSTILE_NAMES.forEach((name, i) => files.push({ path: name, content: Buffer.from(`file ${i}: ${name}\n`), mtime }));
  files.push({ path: 'empty.bin', content: Buffer.alloc(0), mtime });
  files.push({ path: 'dir one/nested/deeper/still deeper/leaf.txt', content: Buffer.from('deep\n'), mtime });
  files.push({ path: 'dir one/nested/sibling ≠.txt', content: Buffer.from('sibling\n'), mtime });
  files.push({ path: '目录/файл.txt', content: Buffer.from('unicode dirs\n'), mtime });
  files.push({ path: 'large.bin', content: pseudoRandom(options.largeBytes ?? 3 * 1024 * 1024 + 123, 7), mtime });
  return files;
}

/** Deterministic pseudo-random bytes (fast, no crypto). */
export function pseudoRandom(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** A stream of `total` bytes made of a repeated random block with a counter, and its sha256 once consumed. */
export function bigStream(total: number): { stream: AsyncIterable<Uint8Array>; digest: () => string } {
  const block = randomBytes(1024 * 1024);
  const hash = createHash('sha256');
  let done = false;
  async function* gen(): AsyncGenerator<Uint8Array> {
    let sent = 0;
    let n = 0;
    while (sent < total) {
      const size = Math.min(block.length, total - sent);
      const piece = Buffer.from(block.subarray(0, size));
      piece.writeUInt32BE(n++ >>> 0, 0);
      hash.update(piece);
      sent += size;
      yield piece;
    }
    done = true;
  }
  return {
    stream: gen(),
    digest: () => {
      if (!done) throw new Error('stream not consumed');
      return hash.digest('hex');
    },
  };
}

/** sha256 of bytes as hex. */
export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A random 32-byte MAC. */
export function randomMac(): Buffer {
  return randomBytes(32);
}
