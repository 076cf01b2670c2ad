// Options that mean the same thing in every integration: retries, connection cap, timeouts.
import { opt } from './builders.ts';

/** `max_retries`: attempts per service call before an error is reported. */
export const maxRetriesOption = opt.int('max_retries', {
  help: 'Attempts per service call (including the first) before an error is reported.\nTransient network errors, throttling (429/503 with Retry-After) and 5xx answers are retried with exponential backoff and jitter.',
  default: 10,
  min: 1,
  max: 100,
});

/** `concurrency`: parallel requests to the service. */
export function concurrencyOption(defaultValue: number, help = 'Parallel requests to the service.') {
  return opt.int('concurrency', { help, default: defaultValue, min: 1, max: 256 });
}

/** Options of the SDK's read-ahead packfile cache; storage connectors that set `readAhead` include these. */
export const readAheadOptions = [
  opt.bool('cache', {
    help: 'Read-ahead packfile cache for restores and checks.\nA ranged read of a packfile downloads the whole packfile once into a private on-disk cache and answers later ranges locally, instead of one request per range. Removed when the process ends.',
    default: true,
  }),
  opt.size('cache_size', {
    help: 'Disk space the read-ahead cache may use; least recently used packfiles are evicted beyond it.',
    default: 1024 ** 3,
    min: 16 * 1024 ** 2,
  }),
  opt.string('cache_dir', {
    help: 'Directory under which the read-ahead cache creates its private folder (default: the system temp directory).',
  }),
  opt.int('cache_prefetch', {
    help: 'Packfiles fetched ahead in parallel when a check or restore walks packfiles in order (0 turns prefetch off).',
    default: 2,
    min: 0,
    max: 16,
  }),
] as const;
