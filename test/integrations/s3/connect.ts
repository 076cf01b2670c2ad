// The s3 connectors a test file opens: launched on the built package (KLOSET_TS_SPAWN=1) or in process, and after
// the file each one's stderr checked for secrets before it is disposed.
import { join } from 'node:path';
import { integration } from '../../../integrations/s3/index.ts';
import { assertNoSecrets, openConnector, type OpenConnector } from '../../conformance/index.ts';

/** The s3 integration and its built package. */
export const target = { integration, packageDir: join(import.meta.dirname, '..', '..', '..', 'dist', 's3') };

/** A connector kind of the s3 integration. */
export type S3Kind = 'importer' | 'exporter' | 'storage';

/** The connectors of one test file. */
export interface S3Connectors {
  /**
   * Launches `kind` and sends Init with `config`. Importers and exporters get the host options `maxConcurrency`
   * (default 4); storage gets none, as the host sends none. `env` is the spawned process's environment.
   */
  open(kind: S3Kind, config: Record<string, string>, options?: { env?: NodeJS.ProcessEnv; maxConcurrency?: number }): Promise<OpenConnector>;
  /** Launches `kind` without sending Init (for a test of an Init that fails). */
  launch(kind: S3Kind, env?: NodeJS.ProcessEnv): Promise<OpenConnector>;
  /** For afterAll: checks every connector's stderr for the secrets, then disposes it (stops at the first leak). */
  disposeAll(): Promise<void>;
}

/** Connectors whose stderr must never show any of `secrets` (each also checked URL- and base64-encoded). */
export function s3Connectors(secrets: readonly string[]): S3Connectors {
  const opened: OpenConnector[] = [];
  const launch = async (kind: S3Kind, env?: NodeJS.ProcessEnv): Promise<OpenConnector> => {
    const c = await openConnector(target, kind, env);
    opened.push(c);
    return c;
  };
  return {
    launch,
    async open(kind, config, { env, maxConcurrency = 4 } = {}) {
      const c = await launch(kind, env);
      await c.host.init(kind, 's3', config, kind === 'storage' ? undefined : { maxConcurrency });
      return c;
    },
    async disposeAll() {
      for (const c of opened) {
        try {
          assertNoSecrets(c.stderr(), secrets, 's3 stderr');
        } finally {
          await c.dispose();
        }
      }
    },
  };
}
