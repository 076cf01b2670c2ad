// Pure mapping from Drive items to snapshot names: export extensions, and the stable disambiguation of names that
// Drive allows several times in one folder.
import { EXPORT_FORMATS, FOLDER_MIME, GOOGLE_APPS_PREFIX, SHORTCUT_MIME, type ExportFormat } from './api.ts';

/** What an item becomes in the snapshot. */
export type ItemKind = 'folder' | 'file' | 'doc' | 'shortcut' | 'unexportable';

/** The kind of an item from its MIME type. */
export function kindOf(mimeType: string, formats: ReadonlyMap<string, ExportFormat>): ItemKind {
  if (mimeType === FOLDER_MIME) return 'folder';
  if (mimeType === SHORTCUT_MIME) return 'shortcut';
  if (mimeType.startsWith(GOOGLE_APPS_PREFIX)) return formats.has(mimeType) ? 'doc' : 'unexportable';
  return 'file';
}

/** For each native type, the first format of `extensions` it can be exported to. */
export function exportChoice(extensions: readonly string[]): Map<string, ExportFormat> {
  const out = new Map<string, ExportFormat>();
  for (const ext of extensions) {
    const f = EXPORT_FORMATS[ext];
    if (!f) continue;
    for (const native of f.from) if (!out.has(native)) out.set(native, f);
  }
  return out;
}

/** `name` with the export extension of a document appended (`Budget` → `Budget.xlsx`). */
export function exportedName(name: string, format: ExportFormat): string {
  return `${name}.${format.ext}`;
}

/**
 * The name given to every same-named sibling but the oldest: the Drive id inserted before the extension of a file
 * (`report (1AbC…).pdf`), after the name of a folder (`Photos (1AbC…)`). Ids never change, so the name is stable.
 */
export function disambiguated(name: string, id: string, folder: boolean): string {
  const dot = name.lastIndexOf('.');
  if (!folder && dot > 0 && dot < name.length - 1 && name.length - dot <= 12 && !/\s/.test(name.slice(dot))) {
    return `${name.slice(0, dot)} (${id})${name.slice(dot)}`;
  }
  return `${name} (${id})`;
}

/**
 * Names already given in each folder. Items must be claimed oldest first (the listings ask Drive for createdTime
 * order), so the oldest item keeps its plain name on every run and newer duplicates get `disambiguated` names.
 */
export class SiblingNames {
  private readonly byParent = new Map<string, Set<string>>();

  /** The name `id` gets under `parent`. */
  claim(parent: string, name: string, id: string, folder: boolean): string {
    let taken = this.byParent.get(parent);
    if (!taken) {
      taken = new Set();
      this.byParent.set(parent, taken);
    }
    let out = name;
    if (taken.has(out)) out = disambiguated(name, id, folder);
    for (let n = 2; taken.has(out); n++) out = disambiguated(name, `${id}-${n}`, folder);
    taken.add(out);
    return out;
  }
}

/** Sorts a group of items created at the same instant by id, so ties are broken the same way on every run. */
export function byId<T extends { id?: string | null }>(items: T[]): T[] {
  return items.sort((a, b) => ((a.id ?? '') < (b.id ?? '') ? -1 : (a.id ?? '') > (b.id ?? '') ? 1 : 0));
}

/** Relative symbolic-link text from the directory of `from` to `to` (both clean absolute snapshot paths). */
export function relativeLink(from: string, to: string): string {
  const a = from.split('/').filter(Boolean).slice(0, -1);
  const b = to.split('/').filter(Boolean);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const up = a.slice(i).map(() => '..');
  const rel = [...up, ...b.slice(i)].join('/');
  return rel === '' ? '.' : rel;
}

/** `%` sequences that `nameOf` decodes: a `/`, `%`, a control character or DEL. */
const DECODED = /%(2[Ff]|25|[01][0-9A-Fa-f]|7[Ff])/g;

/**
 * The snapshot path segment of a Drive name, encoded only where needed: `/`, control characters and DEL become
 * `%XX`, a `%` that would read as one of those becomes `%25`, and `.`, `..` and the empty name become `%2E`, `%2E%2E`
 * and `%_` (the SDK's encodeSegment forms). Other names, `%20` included, are kept as they are.
 */
export function segmentOf(name: string): string {
  if (name === '') return '%_';
  if (name === '.') return '%2E';
  if (name === '..') return '%2E%2E';
  // A Drive name spelled like one of those three forms keeps its own name: its `%` becomes `%25`.
  if (name === '%_' || name === '%2E' || name === '%2E%2E') return `%25${name.slice(1)}`;
  return name.replace(/%(?=2[Ff]|25|[01][0-9A-Fa-f]|7[Ff])|[/\x00-\x1f\x7f]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** The Drive name of a snapshot path segment (the reverse of `segmentOf`). */
export function nameOf(segment: string): string {
  if (segment === '%_') return '';
  if (segment === '%2E') return '.';
  if (segment === '%2E%2E') return '..';
  return segment.replace(DECODED, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}
