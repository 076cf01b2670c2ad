// Test-side access to the servers the global setup started: `providedServer('radosgw')` instead of a bare inject.
import { inject } from 'vitest';
import { serverKey, type ServerInfos, type ServerName } from './registry.ts';

/**
 * Returns the handle of a server started by `test/global-setup.ts` for this run.
 *
 * @param name - the server
 * @returns its serialisable handle (endpoint, ports, credentials…)
 * @throws Error explaining how to start it when the run did not (`KLOSET_TS_SERVERS` lacks the name)
 * @example
 * const rgw = providedServer('radosgw');
 * const s3 = new S3Client({ endpoint: rgw.endpoint, ... });
 */
export function providedServer<N extends ServerName>(name: N): ServerInfos[N] {
  const info = inject(serverKey(name)) as ServerInfos[N] | undefined;
  if (info === undefined) {
    throw new Error(
      `test server ${name} was not started for this run: use \`npm test -- --project <name>\`, or set ` +
        `KLOSET_TS_SERVERS=${name} for a direct \`npx vitest\` run`,
    );
  }
  return info;
}
