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
