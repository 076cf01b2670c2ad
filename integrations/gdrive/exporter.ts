// The gdrive exporter: recreates folders, uploads files in parallel (resumable, chunked, streamed), sets modifiedTime,
// verifies MD5, converts exported Google documents back to native ones, and applies `on_conflict` to existing items.
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import {
  AuthError,
  baseName,
  cleanPath,
  defineExporter,
  dirName,
  FatalError,
  ItemError,
  joinPath,
  QuotaError,
  type ExportEntry,
} from '../../shared/index.ts';
import { EXPORT_FORMATS, FOLDER_MIME, GOOGLE_APPS_PREFIX, MIME_BY_EXTENSION, SHORTCUT_MIME, XATTR_MIME, type DriveFile } from './api.ts';
import { DriveClient } from './client.ts';
import { nameOf } from './map.ts';
import { exporterOptions, parseLocation } from './options.ts';
import { uploadContent } from './upload.ts';

/** A destination folder: its id, and whether it existed before this restore (then its children are checked). */
interface Folder {
  id: string;
  existed: boolean;
  /** Children by name, loaded once for folders that existed. */
  children?: Promise<Map<string, DriveFile[]>>;
}

/** The gdrive exporter. */
export const exporter = defineExporter({
  options: exporterOptions,
  location: {
    help: 'gdrive://[/path]: the folder to restore into (created if missing), in My Drive, the shared drive named by `drive`, or below `root_folder_id`',
    examples: ['gdrive:///Restored', 'gdrive:///Restored/2024-05-01'],
    pattern: '^gdrive://',
  },
  async init(ctx) {
    const o = ctx.options;
    const loc = parseLocation(o.location, ctx.proto);
    const client = await DriveClient.connect(ctx, o, false);
    const folders = new Map<string, Promise<Folder>>();
    const dirs: ExportEntry[] = [];
    const restored = new Map<string, string>();
    const pendingLinks: ExportEntry[] = [];

    const where = `${loc.path} in ${client.start.label}`;
    const root = (): Promise<Folder> => {
      let p = folders.get('/');
      if (!p) {
        p = client.resolveFolder(client.start.id, loc.segments, true, client.start.label).then((r) => ({ id: (r as { id: string }).id, existed: !(r as { created: boolean }).created }));
        folders.set('/', p);
        p.catch(() => folders.delete('/'));
      }
      return p;
    };

    const childrenOf = (f: Folder): Promise<Map<string, DriveFile[]>> => {
      f.children ??= client.children(f.id, `list the destination folder ${f.id}`, { fields: 'id,name,mimeType,createdTime' }).then((list) => {
        const m = new Map<string, DriveFile[]>();
        for (const c of list) {
          const name = c.name ?? '';
          const arr = m.get(name);
          if (arr) arr.push(c);
          else m.set(name, [c]);
        }
        return m;
      });
      return f.children;
    };

    /** The folder at snapshot path `path`, created (with its parents) if the host sent no record for it. */
    const folderOf = (path: string): Promise<Folder> => {
      if (path === '/') return root();
      let p = folders.get(path);
      if (!p) {
        p = (async () => makeFolder(await folderOf(dirName(path)), path, undefined))();
        folders.set(path, p);
        p.catch(() => folders.delete(path));
      }
      return p;
    };

    const makeFolder = async (parent: Folder, path: string, mtime: Date | undefined): Promise<Folder> => {
      const name = nameOf(baseName(path));
      if (parent.existed) {
        const same = (await childrenOf(parent)).get(name)?.find((c) => c.mimeType === FOLDER_MIME);
        if (same?.id) return { id: same.id, existed: true };
      }
      const f = await client.createFolder(parent.id, name, `create folder ${path} in ${where}`, mtime);
      if (parent.children) (await parent.children).set(name, [...((await parent.children).get(name) ?? []), f]);
      return { id: f.id as string, existed: false };
    };

    /** Stops the whole restore on failures that every later file would hit too. */
    const fatalOr = (path: string, err: unknown): unknown => {
      if (err instanceof QuotaError || err instanceof AuthError) return new FatalError(err.message, { cause: err, code: err.code });
      return new ItemError(path, err);
    };

    const createShortcut = async (entry: ExportEntry, targetId: string): Promise<void> => {
      const parent = await folderOf(dirName(entry.path));
      await client.call(`create shortcut ${entry.path} in ${where}`, () =>
        client.api.files.create(
          {
            requestBody: { name: nameOf(baseName(entry.path)), mimeType: SHORTCUT_MIME, parents: [parent.id], shortcutDetails: { targetId } },
            fields: 'id',
            ...client.driveParams,
          },
          client.mo(),
        ),
      );
    };

    /** The id of a symbolic link's target: `gdrive:<id>`, or a relative path to something restored in this run. */
    const linkTarget = async (entry: ExportEntry): Promise<string | undefined> => {
      if (entry.target.startsWith('gdrive:')) return entry.target.slice('gdrive:'.length);
      const path = cleanPath(joinPath(dirName(entry.path), entry.target));
      const file = restored.get(path);
      if (file) return file;
      const folder = folders.get(path);
      return folder ? (await folder).id : undefined;
    };

    return {
      origin: `drive.google.com/${client.email}`,
      root: loc.path,
      concurrency: o.concurrency,
      async mkdir(entry) {
        try {
          if (entry.path === '/') await root();
          else {
            let p = folders.get(entry.path);
            if (!p) {
              p = (async () => makeFolder(await folderOf(dirName(entry.path)), entry.path, entry.mtime))();
              folders.set(entry.path, p);
              p.catch(() => folders.delete(entry.path));
            }
            await p;
          }
          dirs.push(entry);
        } catch (err) {
          throw fatalOr(entry.path, err);
        }
      },
      async write(entry, content) {
        try {
          await writeFile(entry, content);
        } catch (err) {
          if (!content.destroyed) content.resume();
          throw fatalOr(entry.path, err);
        }
      },
      async symlink(entry) {
        try {
          const id = await linkTarget(entry);
          if (id) await createShortcut(entry, id);
          else pendingLinks.push(entry);
        } catch (err) {
          throw fatalOr(entry.path, err);
        }
      },
      async finish() {
        for (const entry of pendingLinks) {
          const id = await linkTarget(entry);
          if (id) await createShortcut(entry, id);
          else client.log.warn('a shortcut could not be restored: its target is not part of this restore', { path: entry.path, target: entry.target });
        }
        // Folder times last, deepest first, as the fs exporter does.
        for (const entry of [...dirs].reverse()) {
          const f = await folders.get(entry.path);
          if (!f || (entry.path === '/' && f.existed)) continue;
          await client.update(f.id, { modifiedTime: entry.mtime.toISOString() }, `set the time of folder ${entry.path}`);
        }
      },
      async ping() {
        await client.call('ping Google Drive', () => client.api.about.get({ fields: 'user(emailAddress)' }, client.mo()));
      },
      async close() {
        client.close();
      },
    };

    async function writeFile(entry: ExportEntry, content: Readable): Promise<void> {
      const parent = await folderOf(dirName(entry.path));
      let name = nameOf(baseName(entry.path));
      const ext = /\.([A-Za-z0-9]+)$/.exec(name)?.[1]?.toLowerCase() ?? '';
      let mediaType = MIME_BY_EXTENSION[ext] ?? 'application/octet-stream';
      let convertTo: string | undefined;
      const format = EXPORT_FORMATS[ext];
      if (o.importAsNative && entry.xattrNames.includes(XATTR_MIME) && format?.importsAs) {
        convertTo = format.importsAs;
        mediaType = format.mime;
        name = name.slice(0, -(ext.length + 1));
      }
      let fileId: string | undefined;
      let siblings: Map<string, DriveFile[]> | undefined;
      if (parent.existed) {
        siblings = await childrenOf(parent);
        const same = (siblings.get(name) ?? []).filter((c) => c.mimeType !== FOLDER_MIME);
        if (same.length > 0) {
          if (o.onConflict === 'skip') {
            content.resume();
            if (!content.readableEnded) await once(content, 'end').catch(() => undefined);
            client.log.once('skip-existing', 'info', 'keeping files that already exist at the destination (on_conflict = skip)', { path: entry.path });
            return;
          }
          if (o.onConflict === 'rename') {
            name = freeName(siblings, name);
          } else {
            const existing = same[0] as DriveFile;
            const existingMime = existing.mimeType ?? '';
            const isNative = existingMime.startsWith(GOOGLE_APPS_PREFIX);
            if (!convertTo && !isNative) {
              fileId = existing.id ?? undefined;
            } else {
              await client.delete(existing.id as string, `replace ${entry.path} in ${where}`);
              siblings.set(name, (siblings.get(name) ?? []).filter((c) => c !== existing));
            }
          }
        }
        // Reserve the name now, so parallel uploads into this folder see it (rename picks distinct names).
        if (!fileId) siblings.set(name, [...(siblings.get(name) ?? []), { name, mimeType: mediaType }]);
      }
      const result = await uploadContent(
        client,
        {
          parentId: parent.id,
          fileId,
          name,
          mediaType,
          convertTo,
          modifiedTime: entry.mtime,
          size: entry.size >= 0 ? entry.size : undefined,
          what: `upload ${entry.path} to ${where}`,
        },
        content,
        o.chunkSize,
      );
      if (result.file.id) restored.set(entry.path, result.file.id);
    }
  },
});

/** `name (1).ext`, `name (2).ext`… the first not present in `siblings`. */
function freeName(siblings: Map<string, DriveFile[]>, name: string): string {
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  for (let n = 1; ; n++) {
    const candidate = `${stem} (${n})${ext}`;
    if (!siblings.has(candidate)) return candidate;
  }
}
