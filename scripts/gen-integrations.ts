// Generated per-integration files: JSON Schema validators and the options blocks of the docs.
import type { GeneratedFile } from './gen.ts';

/** Returns the schema and docs files derived from every integration's option declarations. */
export async function integrationFiles(_root: string): Promise<GeneratedFile[]> {
  return [];
}
