// Checks that the servers test/global-setup.ts started for this run (KLOSET_TS_SERVERS) are provided and reachable.
import { describe, expect, it } from 'vitest';
import { parseServerList, providedServer, type ServerName } from './index.ts';
import { httpStatus, tcpOpen } from './process-utils.ts';

const WANTED = parseServerList(process.env.KLOSET_TS_SERVERS);

/** The TCP port or URL that shows the server is up. */
async function reachable(name: ServerName): Promise<boolean> {
  switch (name) {
    case 'radosgw':
    case 'swift':
      return (await httpStatus(providedServer(name).endpoint)) !== undefined;
    case 'dovecot':
    case 'dovecot-dot': {
      const info = providedServer(name);
      return (await tcpOpen(info.port)) && (await tcpOpen(info.tlsPort));
    }
    case 'radicale':
    case 'xandikos':
      return (await httpStatus(providedServer(name).url)) !== undefined;
  }
}

describe('test servers: the global setup provides the servers of the run', () => {
  it.runIf(WANTED.length === 0)('provides nothing when KLOSET_TS_SERVERS is empty', () => {
    expect(() => providedServer('radosgw')).toThrow(/was not started for this run/);
  });

  it.runIf(WANTED.length > 0).each(WANTED)('provides a reachable %s', async (name) => {
    expect(JSON.parse(JSON.stringify(providedServer(name)))).toEqual(providedServer(name));
    expect(await reachable(name)).toBe(true);
  });

  it.runIf(WANTED.includes('dovecot-dot'))('starts dovecot-dot with the . separator', () => {
    expect(providedServer('dovecot-dot').separator).toBe('.');
  });
});
