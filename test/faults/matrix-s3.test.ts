// Fault matrix of the s3 connectors (importer, exporter, storage) against radosgw, every fault class.
import { integration } from '../../integrations/s3/index.ts';
import { pseudoRandom } from '../conformance/data.ts';
import { providedServer } from '../servers/provided.ts';
import { FAULT_NAMES, describeMatrix, type Subject } from './matrix.ts';

const rgw = providedServer('radosgw');
const bucket = `faults-${Date.now().toString(36)}`;
const host = rgw.endpoint.replace(/^https?:\/\//, '');

const S3_ERRORS: Record<number, [string, string]> = {
  429: ['SlowDown', 'Please reduce your request rate.'],
  503: ['SlowDown', 'Please reduce your request rate.'],
  500: ['InternalError', 'We encountered an internal error. Please try again.'],
};

const subject: Subject = {
  name: 's3',
  target: { integration },
  kinds: ['importer', 'exporter', 'storage'],
  layer: 'http',
  faults: FAULT_NAMES,
  upstream: () => rgw.endpoint,
  stallMs: 30_000,
  errorBody: (status) => {
    const [code, message] = S3_ERRORS[status] ?? ['InternalError', 'injected'];
    return { contentType: 'application/xml', text: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>` };
  },
  config: (name, via) => ({
    location: `s3://${via?.host ?? host}/${bucket}/${name}`,
    access_key: rgw.accessKey,
    secret_access_key: rgw.secretKey,
    use_tls: 'false',
    // Through the proxy, a connection silent for 5 s is abandoned and the request retried (the default is 2 minutes).
    ...(via ? { timeout: '5s' } : {}),
    max_retries: '6',
  }),
  storeConfig: (name, via) => ({
    location: `s3://${via?.host ?? host}/${bucket}/${name}`,
    access_key: rgw.accessKey,
    secret_access_key: rgw.secretKey,
    use_tls: 'false',
    // Through the proxy, a connection silent for 5 s is abandoned and the request retried (the default is 2 minutes).
    ...(via ? { timeout: '5s' } : {}),
    max_retries: '6',
  }),
  tree: {
    'one.txt': 'x',
    'medium.bin': pseudoRandom(150_000, 1),
    'dir a': { 'big.bin': pseudoRandom(1_300_000, 2), 'note ≠.txt': 'note\n' },
  },
  rootOf: (name) => `/${name}`,
  exactNames: true,
  secrets: [rgw.secretKey],
};

describeMatrix(subject, 'radosgw');
