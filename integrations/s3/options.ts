// Options of the s3 integration (drop-in compatible with the official keys) and the location grammar.
import {
  ConfigError,
  concurrencyOption,
  maxRetriesOption,
  opt,
  readAheadOptions,
  type ConfigProblem,
  type LocationSpec,
  type OptionValues,
} from '../../shared/index.ts';
import { normalizePrefix } from './map.ts';

/** Storage classes accepted by `storage_class` (the official integration's list). */
export const STORAGE_CLASSES = [
  'STANDARD',
  'REDUCED_REDUNDANCY',
  'STANDARD_IA',
  'ONEZONE_IA',
  'INTELLIGENT_TIERING',
  'GLACIER',
  'GLACIER_IR',
  'DEEP_ARCHIVE',
] as const;

/** Classes whose objects cannot be read without a restore request: the repository becomes write-only. */
export const COLD_CLASSES: readonly string[] = ['GLACIER', 'DEEP_ARCHIVE'];

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

function base64Key(value: string): string | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value.trim())) return 'expected the base64 encoding of a 32-byte key (openssl rand -base64 32)';
  return Buffer.from(value.trim(), 'base64').length === 32 ? undefined : 'expected the base64 encoding of exactly 32 bytes (openssl rand -base64 32)';
}

/** Options every s3 connector reads: where the bucket is and how to talk to it. */
export const commonOptions = [
  opt.string('access_key', {
    help: 'Access key ID.\nGive it with secret_access_key for static credentials. Leave both unset to use the standard AWS credential chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, the shared config and credentials files (see profile), web identity, then container and instance roles.',
    examples: ['AKIAIOSFODNN7EXAMPLE'],
  }),
  opt.string('secret_access_key', {
    help: 'Secret access key that goes with access_key.',
    secret: true,
  }),
  opt.string('session_token', {
    help: 'Session token of temporary credentials (STS), sent with access_key and secret_access_key.',
    secret: true,
    advanced: true,
  }),
  opt.string('profile', {
    help: 'Profile of the shared AWS config and credentials files (~/.aws/config, ~/.aws/credentials) used when no access_key is given.\nDefaults to AWS_PROFILE, then `default`.',
    examples: ['backup'],
  }),
  opt.string('region', {
    help: 'Region used to sign requests.\nDefaults to the region in an AWS host name (s3.eu-west-3.amazonaws.com), then AWS_REGION, then us-east-1. Set it for S3-compatible services that reject us-east-1 signatures (SignatureDoesNotMatch, AuthorizationHeaderMalformed).',
    examples: ['eu-west-3', 'fr-par', 'garage'],
  }),
  opt.string('endpoint', {
    help: 'Host name (and port) of the service, for the virtual-host and short-bucket location forms.\nWith virtual_host=true the bucket is the location host minus `.endpoint`; otherwise a location host that differs from endpoint is read as the bucket (`s3://bucket/prefix`). A leading http:// or https:// is accepted and then decides TLS.',
    examples: ['s3.fr-par.scw.cloud', 'minio.lan:9000'],
  }),
  opt.bool('virtual_host', {
    help: 'The bucket is part of the location host name (`s3://bucket.endpoint/prefix`); requires endpoint.',
    default: false,
  }),
  opt.int('port', {
    help: 'TCP port of the service when the location has none.',
    min: 1,
    max: 65535,
  }),
  opt.string('root', {
    help: 'Overrides the location path: `/bucket/prefix`, or just the prefix inside the location bucket.\nWhen its first segment is the location bucket, or the location has no bucket, it reads as `/bucket/prefix`; otherwise as a prefix, which must then agree with any prefix in the location.',
    examples: ['/backups/laptop'],
  }),
  opt.bool('use_tls', {
    help: 'Talk HTTPS to the service (default true); set false for a plain-HTTP endpoint such as a local MinIO.',
  }),
  opt.bool('tls_insecure_no_verify', {
    help: 'Accept any TLS certificate (self-signed, wrong host name). Only for testing; ignored when use_tls is false.',
    default: false,
  }),
  opt.string('sse_customer_key', {
    help: 'Server-side encryption with a customer key (SSE-C): the base64 encoding of a 32-byte AES-256 key.\nEvery object is written and read with it; objects written with it cannot be read without it. Plakar does not mask this key in `plakar … show` (its name is kept for compatibility).',
    secret: true,
    validate: base64Key,
  }),
  opt.enum('request_checksum', ['when_required', 'when_supported'] as const, {
    help: 'When the client adds CRC checksums to uploads.\n`when_required` (default) sends only Content-MD5, which every S3-compatible service accepts; `when_supported` also sends the AWS flexible checksums (CRC32), which some services reject (MissingContentLength, NotImplemented).',
    default: 'when_required',
    advanced: true,
  }),
  opt.bool('requester_pays', {
    help: 'Accept the charges of a requester-pays bucket (x-amz-request-payer: requester).',
    default: false,
    advanced: true,
  }),
  opt.int('list_chunk', {
    help: 'Keys asked for per listing request (ListObjectsV2 max-keys). Lower it for services that time out on long listings.',
    default: 1000,
    min: 1,
    max: 1000,
    advanced: true,
  }),
  opt.duration('timeout', {
    help: 'Longest a request may stall (no byte sent or received: a listing, an upload, a download) before it is abandoned and retried.',
    default: 120_000,
    min: 1000,
    advanced: true,
  }),
  maxRetriesOption,
] as const;

/** Options of the connectors that write objects (exporter and storage). */
export const writeOptions = [
  opt.enum('storage_class', STORAGE_CLASSES, {
    help: 'Storage class of the objects written.\nStorage: default STANDARD; GLACIER and DEEP_ARCHIVE make the repository write-only, with hot copies kept in STANDARD (see the docs). Exporter: default is the bucket default.',
  }),
  opt.enum('sse', ['AES256', 'aws:kms'] as const, {
    help: 'Server-side encryption by the service: AES256 (SSE-S3) or aws:kms (SSE-KMS, see sse_kms_key_id). Not together with sse_customer_key.',
    advanced: true,
  }),
  opt.string('sse_kms_key_id', {
    help: 'KMS key ID or ARN for sse=aws:kms (default: the AWS-managed key).',
    advanced: true,
  }),
  opt.size('part_size', {
    help: 'Size of each part of a multipart upload.\nMemory used by one upload is at most part_size × upload_concurrency. Objects of known size grow the part size so that 10,000 parts suffice.',
    default: 8 * MIB,
    min: 5 * MIB,
    max: 5 * GIB,
  }),
  opt.bool('content_md5', {
    help: 'Also send Content-MD5 with every upload (whole object or part).\nOff by default: every upload is already signed with the SHA-256 of its bytes (x-amz-content-sha256), which S3 and S3-compatible services (Ceph, MinIO, Swift) check before storing, so a corrupted upload is refused and sent again; MD5 would cost about a quarter of the CPU of a Put. Turn it on for a service that ignores that hash.',
    default: false,
    advanced: true,
  }),
  opt.size('upload_cutoff', {
    help: 'Objects up to this size are sent in one PUT; larger ones as a multipart upload. At most part_size.',
    default: 8 * MIB,
    min: 0,
    max: 5 * GIB,
  }),
  opt.int('upload_concurrency', {
    help: 'Parts of one multipart upload sent in parallel.',
    default: 4,
    min: 1,
    max: 64,
  }),
] as const;

/** Importer options. */
export const importerOptions = [
  ...commonOptions,
  opt.bool('metadata', {
    help: 'Read each object’s metadata (HEAD): Content-Type, Cache-Control, Content-Encoding/Disposition/Language, Expires, user metadata and X-Amz-Meta-Mtime, kept as extended attributes.\nTurning it off saves one request per object; the listing still gives size, mtime, storage class and ETag.',
    default: true,
  }),
  opt.enum('tags', ['auto', 'always', 'never'] as const, {
    help: 'Read object tags (GetObjectTagging), kept as extended attributes.\n`auto` (default) asks only for objects whose HEAD reports tags (x-amz-tagging-count, sent by AWS, Ceph and MinIO), and for every object when metadata=false; `always` asks for every object, for services that do not report the count; `never` skips tags.',
    default: 'auto',
  }),
  concurrencyOption(16, 'Metadata and tag requests in flight at once while listing.'),
] as const;

/** Exporter options. */
export const exporterOptions = [
  ...commonOptions,
  ...writeOptions,
  opt.bool('directory_markers', {
    help: 'Create a zero-byte `dir/` object for every restored directory.\nMarkers recorded in the snapshot by the s3 importer are restored either way.',
    default: false,
  }),
] as const;

/** Storage options. */
export const storageOptions = [...commonOptions, ...writeOptions, ...readAheadOptions] as const;

/** Parsed values of the common options. */
export type CommonValues = OptionValues<typeof commonOptions>;
/** Parsed values of the write options. */
export type WriteValues = OptionValues<typeof writeOptions>;

/** The location forms, for docs and the schema. */
export const locationSpec: LocationSpec = {
  help: 's3://HOST[:PORT]/BUCKET[/PREFIX] (path style); s3://BUCKET.ENDPOINT[/PREFIX] with virtual_host=true and endpoint; s3://BUCKET[/PREFIX] with endpoint',
  examples: ['s3://s3.eu-west-3.amazonaws.com/my-bucket/backups', 's3://127.0.0.1:9000/bucket', 's3://my-bucket.s3.fr-par.scw.cloud/plakar'],
  pattern: '^s3://[^/]+(/.*)?$',
};

/** Where the bucket is and how to reach it, resolved from `location` and the addressing options. */
export interface S3Location {
  /** `host[:port]` requests go to (the endpoint host for virtual-host addressing). */
  host: string;
  bucket: string;
  /** Key prefix: empty, or ending in `/` (never starting with one). */
  prefix: string;
  useTls: boolean;
  /** Whether requests name the bucket in the path (`host/bucket/key`) rather than the host name. */
  forcePathStyle: boolean;
  /** `http(s)://host[:port]` for the SDK. */
  endpointUrl: string;
  region: string;
  /** `s3://host/bucket/prefix` for messages. */
  display: string;
}

function stripScheme(endpoint: string): { host: string; scheme: 'http' | 'https' | undefined } {
  let e = endpoint.trim();
  let scheme: 'http' | 'https' | undefined;
  const m = /^(https?):\/\//i.exec(e);
  if (m) {
    scheme = (m[1] as string).toLowerCase() as 'http' | 'https';
    e = e.slice(m[0].length);
  }
  e = e.replace(/\/+$/, '').replace(/^\.+/, '');
  return { host: e, scheme };
}

function splitHostPort(host: string): { name: string; port: string | undefined } {
  const m = /^(.*?)(?::(\d+))?$/.exec(host);
  return { name: m?.[1] ?? host, port: m?.[2] };
}

function decodePath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/** Splits a path-style path and `root` into bucket and prefix, as the official integration does. */
export function splitPathStyle(locationPath: string, root: string): { bucket: string; prefix: string } | { problem: string } {
  const trimmed = locationPath.replace(/^\//, '');
  const slash = trimmed.indexOf('/');
  const bucket = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const prefix = slash < 0 ? '' : trimmed.slice(slash + 1);
  const rootPath = root.replace(/^\/+|\/+$/g, '');
  if (rootPath === '') return { bucket, prefix };
  const r = root.replace(/^\//, '');
  const rs = r.indexOf('/');
  const rootBucket = rs < 0 ? r : r.slice(0, rs);
  const rootPrefix = rs < 0 ? '' : r.slice(rs + 1);
  if (bucket === '' || rootBucket === bucket) return { bucket: rootBucket, prefix: rootPrefix };
  const locationPrefix = prefix.replace(/^\/+|\/+$/g, '');
  if (locationPrefix !== '' && locationPrefix !== rootPath) {
    return { problem: `the location path ${JSON.stringify(locationPath)} conflicts with root ${JSON.stringify(root)}` };
  }
  return { bucket, prefix: root.replace(/^\//, '') };
}

/** The region in an AWS-style host name (`s3.eu-west-3.amazonaws.com`, `bucket.s3-us-west-2.amazonaws.com`). */
export function regionFromHost(host: string): string | undefined {
  const name = splitHostPort(host).name.toLowerCase();
  const m = /(?:^|\.)s3[.-](?:dualstack\.)?([a-z]{2}(?:-gov)?-[a-z]+-\d)\.amazonaws\.com(?:\.cn)?$/.exec(name);
  return m?.[1];
}

function isAws(host: string): boolean {
  return /(?:^|\.)amazonaws\.com(?:\.cn)?$/i.test(splitHostPort(host).name);
}

/** Parses `location` with the addressing options into an S3Location; throws ConfigError naming the keys involved. */
export function parseLocation(o: CommonValues, proto = 's3', env: NodeJS.ProcessEnv = process.env): S3Location {
  const problems: ConfigProblem[] = [];
  const expected = `expected ${proto}://HOST[:PORT]/BUCKET[/PREFIX], ${proto}://BUCKET.ENDPOINT[/PREFIX] with virtual_host=true, or ${proto}://BUCKET[/PREFIX] with endpoint`;
  const raw = o.location.trim();
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)$/.exec(raw);
  if (!m || (m[1] as string).toLowerCase() !== proto.toLowerCase()) {
    throw new ConfigError('location', `${expected}, got ${JSON.stringify(o.location)}`);
  }
  const urlHostRaw = m[2] as string;
  const urlPath = decodePath(m[3] as string);
  if (urlHostRaw.includes('@')) problems.push({ key: 'location', message: 'credentials do not belong in the location; use access_key and secret_access_key' });
  const withPort = (h: string): string => (o.port !== undefined && h !== '' && splitHostPort(h).port === undefined ? `${h}:${o.port}` : h);
  const urlHost = withPort(urlHostRaw);

  let endpoint: { host: string; scheme: 'http' | 'https' | undefined } | undefined;
  if (o.endpoint !== undefined && o.endpoint.trim() !== '') endpoint = stripScheme(o.endpoint);
  if (endpoint) endpoint.host = withPort(endpoint.host);

  let useTls = o.useTls ?? (endpoint?.scheme ? endpoint.scheme === 'https' : true);
  if (o.useTls !== undefined && endpoint?.scheme && (endpoint.scheme === 'https') !== o.useTls) {
    problems.push({ key: 'endpoint', message: `its ${endpoint.scheme}:// scheme contradicts use_tls=${o.useTls}` });
    useTls = o.useTls;
  }

  let host = '';
  let bucket = '';
  let prefix = '';
  let forcePathStyle = true;
  if (o.virtualHost) {
    if (!endpoint) {
      problems.push({ key: 'endpoint', message: 'is required with virtual_host=true (the service host, e.g. s3.fr-par.scw.cloud)' });
    } else {
      const hostName = splitHostPort(urlHost).name.replace(/\.$/, '');
      const endName = splitHostPort(endpoint.host).name;
      if (!hostName.toLowerCase().endsWith(`.${endName.toLowerCase()}`)) {
        problems.push({
          key: 'location',
          message: `with virtual_host=true the host must be BUCKET.${endName}, got ${JSON.stringify(urlHost)}`,
        });
      } else {
        bucket = hostName.slice(0, hostName.length - endName.length - 1);
      }
      host = endpoint.host;
      forcePathStyle = false;
      const urlPrefix = urlPath.replace(/^\/+|\/+$/g, '');
      const rootPrefix = (o.root ?? '').replace(/^\/+|\/+$/g, '');
      if (urlPrefix !== '' && rootPrefix !== '' && urlPrefix !== rootPrefix) {
        problems.push({ key: 'root', message: `conflicts with the location path ${JSON.stringify(urlPath)}` });
      }
      prefix = rootPrefix !== '' ? (o.root as string).replace(/^\//, '') : urlPath.replace(/^\//, '');
    }
  } else {
    let path = urlPath;
    host = urlHost;
    if (endpoint) {
      const u = splitHostPort(urlHost);
      const e = splitHostPort(endpoint.host);
      const same = u.name.toLowerCase() === e.name.toLowerCase() && (u.port === undefined || e.port === undefined || u.port === e.port);
      // Short-bucket form: s3://bucket/prefix with endpoint=host (the location host is the bucket).
      if (!same) path = `/${[urlHostRaw, urlPath.replace(/^\//, '')].filter((s) => s !== '').join('/')}`;
      host = same && u.port !== undefined ? urlHost : endpoint.host;
    }
    const split = splitPathStyle(path, o.root ?? '');
    if ('problem' in split) problems.push({ key: 'root', message: split.problem });
    else {
      bucket = split.bucket;
      prefix = split.prefix;
    }
  }
  if (problems.length === 0 && (host === '' || bucket === '')) {
    problems.push({ key: 'location', message: `${expected}; the ${host === '' ? 'host' : 'bucket'} is missing in ${JSON.stringify(o.location)}` });
  }
  if (problems.length > 0) throw new ConfigError(problems);

  // Like minio-go (the official client), AWS hosts get virtual-host requests when the bucket name allows it.
  if (forcePathStyle && isAws(host) && /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)) forcePathStyle = false;
  prefix = normalizePrefix(prefix);
  const region = o.region?.trim() || regionFromHost(host) || env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1';
  return {
    host,
    bucket,
    prefix,
    useTls,
    forcePathStyle,
    endpointUrl: `${useTls ? 'https' : 'http'}://${host}`,
    region,
    display: `${proto}://${host}/${bucket}${prefix ? `/${prefix.replace(/\/$/, '')}` : ''}`,
  };
}

/** Cross-option checks the per-key parsers cannot make; throws one ConfigError listing every problem. */
export function checkCombinations(o: Partial<CommonValues & WriteValues>): void {
  const problems: ConfigProblem[] = [];
  if ((o.accessKey === undefined) !== (o.secretAccessKey === undefined)) {
    problems.push({
      key: o.accessKey === undefined ? 'access_key' : 'secret_access_key',
      message: `is required with ${o.accessKey === undefined ? 'secret_access_key' : 'access_key'} (give both, or neither to use the AWS credential chain)`,
    });
  }
  if (o.sessionToken !== undefined && o.accessKey === undefined) {
    problems.push({ key: 'session_token', message: 'needs access_key and secret_access_key' });
  }
  if (o.sse !== undefined && o.sseCustomerKey !== undefined) {
    problems.push({ key: 'sse', message: 'cannot be combined with sse_customer_key (choose SSE-S3/KMS or SSE-C)' });
  }
  if (o.sseKmsKeyId !== undefined && o.sse !== 'aws:kms') {
    problems.push({ key: 'sse_kms_key_id', message: 'needs sse=aws:kms' });
  }
  if (o.uploadCutoff !== undefined && o.partSize !== undefined && o.uploadCutoff > o.partSize) {
    problems.push({ key: 'upload_cutoff', message: 'must not exceed part_size (an upload buffers at most one part before choosing single or multipart)' });
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
