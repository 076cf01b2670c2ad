// Direct bucket access for the s3 tests: list every key, read objects, and compare buckets (keys, bytes, metadata, tags).
import { createHash } from 'node:crypto';
import { GetObjectCommand, GetObjectTaggingCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createLimiter } from '../../../shared/index.ts';

/** One listed object. */
export interface Listed {
  key: string;
  size: number;
}

/** Every object under `prefix` (keys decoded from EncodingType=url, so control characters survive). */
export async function listAll(sdk: S3Client, bucket: string, prefix = ''): Promise<Listed[]> {
  const out: Listed[] = [];
  let token: string | undefined;
  do {
    const page = await sdk.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined, ContinuationToken: token, EncodingType: 'url' }));
    for (const o of page.Contents ?? []) out.push({ key: decodeURIComponent((o.Key as string).replace(/\+/g, ' ')), size: o.Size ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** The bytes of one object. */
export async function readObject(sdk: S3Client, bucket: string, key: string): Promise<Buffer> {
  const r = await sdk.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
}

/** What a bucket comparison looks at for one object. */
export interface ObjectFacts {
  size: number;
  sha256: string;
  contentType?: string;
  cacheControl?: string;
  contentEncoding?: string;
  contentDisposition?: string;
  contentLanguage?: string;
  metadata: Record<string, string>;
  tags: Record<string, string>;
}

/** Keys (relative to `prefix`) → size, sha256, system and user metadata and tags, read with `parallel` requests. */
export async function describeBucket(sdk: S3Client, bucket: string, prefix = '', parallel = 32): Promise<Map<string, ObjectFacts>> {
  const limit = createLimiter(parallel);
  const out = new Map<string, ObjectFacts>();
  const objects = await listAll(sdk, bucket, prefix);
  await Promise.all(
    objects.map((o) =>
      limit(async () => {
        // A GET answers with every header a HEAD would (metadata, tag count): one request per object, plus the tags.
        const head = await sdk.send(new GetObjectCommand({ Bucket: bucket, Key: o.key }));
        const hash = createHash('sha256');
        for await (const chunk of head.Body as AsyncIterable<Buffer>) hash.update(chunk);
        const tags = head.TagCount ? await sdk.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: o.key })) : { TagSet: [] };
        out.set(o.key.slice(prefix.length), {
          size: o.size,
          sha256: hash.digest('hex'),
          contentType: head.ContentType,
          cacheControl: head.CacheControl,
          contentEncoding: head.ContentEncoding,
          contentDisposition: head.ContentDisposition,
          contentLanguage: head.ContentLanguage,
          metadata: { ...(head.Metadata ?? {}) },
          tags: Object.fromEntries((tags.TagSet ?? []).map((t) => [t.Key as string, t.Value ?? ''])),
        });
      }),
    ),
  );
  return out;
}
