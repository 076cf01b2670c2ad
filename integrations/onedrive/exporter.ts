// OneDrive exporter: creates folders, sends small files in one PUT and larger ones through upload sessions streamed
// from the snapshot, keeps modification times, checks the stored hash, runs uploads in parallel, applies on_conflict.
import { status } from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  AuthError,
  createLimiter,
  defineExporter,
  describeError,
  FatalError,
  ItemError,
  QuotaError,
  type ExportEntry,
} from '../../shared/index.ts';
import type { ConflictBehavior, DriveItem } from './api.ts';
import { baseOf, dirOf, OneDriveError } from './client.ts';
import { connect, LOCATION } from './connect.ts';
import { drivePathOf } from './names.ts';
import { exporterOptions, folderOf } from './options.ts';
import { collect, FileSource, isoSeconds, sessionUpload, simpleUpload, StreamSource } from './upload.ts';

const CONFLICT: Readonly<Record<'overwrite' | 'skip' | 'rename', ConflictBehavior>> = { overwrite: 'replace', skip: 'fail', rename: 'rename' };

/** The OneDrive exporter. */
export const exporter = defineExporter({
  options: exporterOptions,
  location: LOCATION,
  async init(ctx) {
    const o = ctx.options;
    const target = folderOf(o.location, ctx.proto);
    const g = await connect(ctx, 'exporter');
    const targetItem = await g.ensureFolder(target);
    const conflict = CONFLICT[o.onConflict];
    /** Folders restored, with their snapshot times, set once every file is in (uploads would not change them, but be safe). */
    const folders: Array<{ id: string; path: string; mtime: Date }> = [];
    let skipped = 0;
    /** Private folder for files of unknown size (an upload session needs the size first), made on first use. */
    let spillDir: Promise<string> | undefined;
    const spillDirectory = (): Promise<string> => (spillDir ??= mkdtemp(join(tmpdir(), 'kloset-onedrive-')));

    const fatalOr = (path: string, err: unknown): Error => {
      // Credentials or a full drive fail every later item too: stop the restore with the reason.
      if (err instanceof AuthError) return new FatalError(err.message, { cause: err, code: err.code });
      if (err instanceof QuotaError) return new FatalError(err.message, { cause: err, code: status.RESOURCE_EXHAUSTED });
      return new ItemError(path, err);
    };

    return {
      origin: g.drive.id,
      type: ctx.proto,
      root: target,
      concurrency: o.concurrency,
      async mkdir(entry: ExportEntry) {
        const path = drivePathOf(target, entry.path);
        let folder: DriveItem;
        try {
          folder = entry.path === '/' ? targetItem : await g.ensureFolder(path);
        } catch (err) {
          throw fatalOr(entry.path, err);
        }
        folders.push({ id: folder.id, path, mtime: entry.mtime });
      },
      async write(entry: ExportEntry, content: Readable) {
        const path = drivePathOf(target, entry.path);
        const what = `cannot restore ${entry.path} to ${path}`;
        try {
          const parent = await g.ensureFolder(dirOf(path));
          const t = { itemApiPath: g.childPath(parent.id, baseOf(path)), conflict, mtime: entry.mtime, what };
          if (entry.size < 0) {
            // Size unknown (a snapshot record without one): small files in memory, larger ones through a private file.
            const got = await collect(content, o.uploadCutoff, spillDirectory);
            try {
              if (got.memory) await simpleUpload(g, t, got.memory, got.quickXorHash);
              else {
                const src = await FileSource.open(got.file as string, got.size, got.quickXorHash);
                try {
                  await sessionUpload(g, t, src, o.chunkSize);
                } finally {
                  await src.close();
                }
              }
            } finally {
              if (got.file) await rm(got.file, { force: true });
            }
          } else if (entry.size <= o.uploadCutoff) {
            const body = await readAll(content, o.uploadCutoff);
            if (body.length !== entry.size) {
              throw new OneDriveError('sizeMismatch', `${what}: the snapshot gave ${body.length} bytes for a ${entry.size}-byte file`);
            }
            await simpleUpload(g, t, body);
          } else {
            await sessionUpload(g, t, new StreamSource(content, entry.size), o.chunkSize);
          }
        } catch (err) {
          if (conflict === 'fail' && err instanceof OneDriveError && err.httpStatus === 409) {
            skipped++;
            ctx.log.debug('kept the existing file (on_conflict=skip)', { path });
            return;
          }
          throw fatalOr(entry.path, err);
        }
      },
      async finish() {
        const limit = createLimiter(Math.max(1, o.concurrency ?? 4));
        // Deepest first, as the fs exporter does, so that nothing written later changes a parent's time.
        await Promise.all(
          folders.reverse().map((f) =>
            limit(async () => {
              try {
                await g.request(`cannot set the time of folder ${f.path}`, 'PATCH', `${g.drivePath}/items/${encodeURIComponent(f.id)}`, {
                  body: { fileSystemInfo: { lastModifiedDateTime: isoSeconds(f.mtime) } },
                });
              } catch (err) {
                ctx.log.warn(`cannot set the modification time of folder ${f.path}: ${describeError(err)}`);
              }
            }),
          ),
        );
        if (skipped > 0) ctx.log.info(`${skipped} files already existed at the destination and were kept (on_conflict=skip)`);
      },
      async close() {
        if (spillDir) await rm(await spillDir, { recursive: true, force: true }).catch(() => undefined);
        spillDir = undefined;
      },
      async ping() {
        await g.request('cannot reach the drive', 'GET', g.drivePath);
      },
    };
  },
});

/** Reads a whole (small) stream; more than `max` bytes is an error. */
async function readAll(stream: Readable, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > max) throw new OneDriveError('sizeMismatch', `the content is longer than the ${max} bytes announced`);
    parts.push(chunk);
  }
  return Buffer.concat(parts, n);
}
