// Reads, checks and stages manifest folders into the directories `plakar pkg create` packs.
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  exeFileName,
  formatManifestProblems,
  referencedFiles,
  validateManifest,
  type ManifestProbe,
  type Target,
} from './build-lib.ts';

/** A {@link ManifestProbe} over a real directory. */
export function dirProbe(dir: string): ManifestProbe {
  const at = (rel: string): string => join(dir, ...rel.split('/'));
  return {
    kind(rel) {
      try {
        const info = statSync(at(rel));
        return info.isFile() ? 'file' : info.isDirectory() ? 'dir' : 'missing';
      } catch {
        return 'missing';
      }
    },
    executable(rel) {
      if (process.platform === 'win32') return true;
      try {
        accessSync(at(rel), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    },
    read(rel) {
      return readFileSync(at(rel), 'utf8');
    },
  };
}

/** Parses `<dir>/manifest.yaml`, throwing a message that names the file on a YAML error. */
export function readManifest(dir: string, shown: string): unknown {
  const file = join(dir, 'manifest.yaml');
  if (!existsSync(file)) {
    throw new Error(
      `${shown}/manifest.yaml is missing: each integration needs a hand-written manifest (PROTOCOL.md §5)`,
    );
  }
  try {
    return parseYaml(readFileSync(file, 'utf8')) as unknown;
  } catch (error) {
    throw new Error(`${shown}/manifest.yaml is not valid YAML: ${(error as Error).message}`);
  }
}

/**
 * Checks the manifest in `dir` for the integration `name` and target, throwing one message listing every problem.
 *
 * @param shown the folder as printed to the user (relative to the repository)
 * @param requireExecutable false before the executable is built
 */
export function checkManifestDir(
  dir: string,
  shown: string,
  name: string,
  target: Target,
  requireExecutable: boolean,
): unknown {
  const doc = readManifest(dir, shown);
  const problems = validateManifest(doc, dirProbe(dir), {
    expectedName: name,
    target,
    requireExecutable,
  });
  if (problems.length > 0)
    throw new Error(formatManifestProblems(`${shown}/manifest.yaml`, problems));
  return doc;
}

async function listFiles(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() || entry.isSymbolicLink())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)).split(sep).join('/'));
}

/**
 * The files of a manifest folder that go into its package directory.
 *
 * For `manifests/<name>/`: every file except the Makefile (it only serves `plakar pkg build`) and executables an
 * in-place build left there. For the test fixture, whose folder also holds TypeScript sources: only the files the
 * manifest references.
 */
export async function filesToStage(
  sourceDir: string,
  name: string,
  doc: unknown,
  onlyReferenced: boolean,
): Promise<string[]> {
  if (onlyReferenced) return referencedFiles(doc);
  const skip = new Set(['Makefile', name, `${name}.exe`]);
  return (await listFiles(sourceDir)).filter((rel) => !skip.has(rel) && !/\.tmp-\d+$/.test(rel));
}

/**
 * Copies the manifest folder's files into the stage directory and removes anything stale there, keeping the
 * executable (built straight into the stage directory).
 */
export async function stageFiles(
  sourceDir: string,
  stage: string,
  files: readonly string[],
  name: string,
  target: Target,
): Promise<void> {
  await mkdir(stage, { recursive: true });
  const keep = new Set([...files, exeFileName(name, target)]);
  for (const rel of await listFiles(stage)) {
    if (!keep.has(rel) && !/\.tmp-\d+$/.test(rel))
      await rm(join(stage, ...rel.split('/')), { force: true });
  }
  for (const rel of files) {
    const to = join(stage, ...rel.split('/'));
    await mkdir(dirname(to), { recursive: true });
    await copyFile(join(sourceDir, ...rel.split('/')), to);
  }
}
