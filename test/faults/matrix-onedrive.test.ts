// Fault matrix of the onedrive connectors (importer, exporter, storage) against the Graph emulator, every fault class.
import { integration } from '../../integrations/onedrive/index.ts';
import { pseudoRandom } from '../conformance/data.ts';
import { startGraphEmulator } from '../servers/graph-emulator.ts';
import { FAULT_NAMES, describeMatrix, type Subject } from './matrix.ts';

const emu = await startGraphEmulator();
const direct = emu.url;
const secrets: string[] = [];

const GRAPH_ERRORS: Record<number, string> = { 429: 'activityLimitReached', 503: 'serviceNotAvailable', 500: 'generalException' };

const config = (name: string, via?: { endpoint: string }): Record<string, string> => {
  const c = emu.config(`onedrive:///faults/${name}`, {
    // Through the proxy, requests that stall are abandoned after 5 s and retried (the default is longer).
    ...(via ? { timeout: '5s', max_retries: '6' } : {}),
    // The big file goes through an upload session of 320 KiB fragments.
    upload_cutoff: '400KiB',
    chunk_size: '320KiB',
  });
  if (via) c.endpoint = via.endpoint;
  secrets.push(c.refresh_token as string);
  return c;
};

const subject: Subject = {
  name: 'onedrive',
  target: { integration },
  kinds: ['importer', 'exporter', 'storage'],
  layer: 'http',
  faults: FAULT_NAMES,
  upstream: () => direct,
  stallMs: 30_000,
  errorBody: (status) => ({
    contentType: 'application/json',
    text: JSON.stringify({ error: { code: GRAPH_ERRORS[status] ?? 'generalException', message: `injected ${status}` } }),
  }),
  config,
  storeConfig: config,
  tree: {
    'one.txt': 'x',
    'medium.bin': pseudoRandom(150_000, 1),
    'dir a': { 'big.bin': pseudoRandom(1_300_000, 2), 'note ≠.txt': 'note\n' },
  },
  rootOf: (name) => `/faults/${name}`,
  exactNames: true,
  secrets,
};

describeMatrix(subject, 'the Graph emulator', () => emu.close());
