// Fault matrix of the gdrive connectors (importer, exporter, storage) against the Drive emulator, every fault class.
import { integration } from '../../integrations/gdrive/index.ts';
import { pseudoRandom } from '../conformance/data.ts';
import { DriveEmulator } from '../servers/drive-emulator.ts';
import { FAULT_NAMES, describeMatrix, type Subject } from './matrix.ts';

const CLIENT_ID = 'faults-client.apps.googleusercontent.com';
const CLIENT_SECRET = 'GOCSPX-faults-client-secret';
const emu = await DriveEmulator.start();
emu.addClient(CLIENT_ID, CLIENT_SECRET);
const refreshToken = emu.issueRefreshToken(CLIENT_ID);
const direct = emu.url;

const DRIVE_ERRORS: Record<number, [string, string, string]> = {
  429: ['usageLimits', 'rateLimitExceeded', 'Rate Limit Exceeded'],
  503: ['global', 'backendError', 'Backend Error'],
  500: ['global', 'internalError', 'Internal Error'],
};

const config = (name: string, via?: { endpoint: string }): Record<string, string> => ({
  location: `gdrive:///faults/${name}`,
  client_id: CLIENT_ID,
  client_secret: CLIENT_SECRET,
  refresh_token: refreshToken,
  api_url: via ? `${via.endpoint}/` : direct,
  token_url: via ? `${via.endpoint}/token` : emu.tokenUrl,
  // Through the proxy, requests that stall are abandoned after 5 s and retried (the default is 5 minutes).
  ...(via ? { timeout: '5s', max_retries: '6' } : {}),
  chunk_size: '512KiB',
});

const subject: Subject = {
  name: 'gdrive',
  target: { integration },
  kinds: ['importer', 'exporter', 'storage'],
  layer: 'http',
  faults: FAULT_NAMES,
  upstream: () => direct,
  stallMs: 30_000,
  errorBody: (status) => {
    const [domain, reason, message] = DRIVE_ERRORS[status] ?? ['global', 'internalError', 'injected'];
    return { contentType: 'application/json; charset=UTF-8', text: JSON.stringify({ error: { code: status, message, errors: [{ domain, reason, message }] } }) };
  },
  config,
  storeConfig: config,
  tree: {
    'one.txt': 'x',
    'medium.bin': pseudoRandom(150_000, 1),
    'dir a': { 'big.bin': pseudoRandom(1_300_000, 2), 'note ≠.txt': 'note\n' },
  },
  rootOf: (name) => `/faults/${name}`,
  exactNames: true,
  secrets: [CLIENT_SECRET, refreshToken],
};

describeMatrix(subject, 'the Drive emulator', () => emu.close());
