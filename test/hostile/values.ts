// Hostile option values: wrong types, empty, huge, unicode, NUL and control characters, injection-like strings, bad URLs.
import type { OptionSpec } from '../../shared/options/builders.ts';
import type { Rng } from './prng.ts';

/** Values that are wrong, strange or dangerous for any kind of option. */
export const GENERAL: readonly string[] = [
  '',
  ' ',
  '\t\n',
  'a\0b',
  '\0',
  '\u0007\u001b[31mred\u001b[0m',
  'line1\r\nInjected-Header: yes',
  'A001 LOGOUT\r\nA002 DELETE INBOX',
  "'; DROP TABLE users; --",
  '$(rm -rf /)',
  '`id`',
  '${jndi:ldap://127.0.0.1:1/a}',
  '{{7*7}}',
  '<script>alert(1)</script>',
  '../../../../etc/passwd',
  '/etc/shadow',
  'C:\\Windows\\System32',
  '%00%2e%2e%2f',
  'null',
  'undefined',
  'NaN',
  'Infinity',
  '-Infinity',
  '[]',
  '{}',
  '{"a":1}',
  'true',
  '0',
  '-1',
  '1.5',
  '1e309',
  '0x10',
  '9'.repeat(400),
  'ü',
  'Ǆ𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🎉',
  '\u202eevil\u202c',
  '\ufeffbom',
  '\ud800',
  '١٢٣',
  'Ａ'.repeat(300),
  '__proto__',
  'constructor',
];

const INT_VALUES = ['1', '2', '+3', '-0', '0', '-5', '12abc', '1_000', '١', '2147483648', '9007199254740993', ' 7 ', '07'];
const SIZE_VALUES = ['16MiB', '1K', '512k', '1048576', '5 MiB', '-1MiB', '1.5MiB', '9999999999PiB', '0B', '16mib', 'MiB', '1e6'];
const DURATION_VALUES = ['30s', '5m', '1h30m', '500ms', '10', '-5s', 'PT5M', '99999999999h', '0s', '1d', 's', '1h-30m'];
const BOOL_VALUES = ['true', 'false', 'yes', 'no', 'on', 'off', '1', '0', 'TRUE', 'y', 'N', 'maybe', 'tru'];
const URL_VALUES = [
  'http://127.0.0.1:1/',
  'https://127.0.0.1:1/x',
  'http://',
  'https://[::1',
  'javascript:alert(1)',
  'file:///etc/passwd',
  'http://user:pass@127.0.0.1:1/',
  'http://127.0.0.1:99999/',
  'ftp://127.0.0.1:1/',
  '//127.0.0.1:1/',
  'http://127.0.0.1:1/a b',
  'http://\u0000/',
];

/** A value for `spec`: mostly hostile, sometimes plausible for its kind, now and then huge. */
export function hostileValue(r: Rng, spec: OptionSpec | undefined): string {
  const roll = r.next();
  if (roll < 0.04) return r.pick(['a', 'é', '\0', '%', 'A001 ']).repeat(r.pick([4096, 65_536, 300_000]));
  if (spec && roll < 0.45) {
    switch (spec.kind) {
      case 'int':
        return r.pick([...INT_VALUES, String(spec.min ?? 0), String((spec.max ?? 1000) + 1), String((spec.min ?? 1) - 1)]);
      case 'size':
        return r.pick(SIZE_VALUES);
      case 'duration':
        return r.pick(DURATION_VALUES);
      case 'bool':
        return r.pick(BOOL_VALUES);
      case 'enum': {
        const c = r.pick(spec.choices ?? ['x']);
        return r.pick([c, c.toUpperCase(), ` ${c} `, `${c}x`, c.slice(1)]);
      }
      case 'url':
        return r.pick(URL_VALUES);
      case 'list':
        return r.pick([',', ',,a,,', 'a,b,c', ' , ', `${r.pick(GENERAL)},${r.pick(GENERAL)}`]);
      case 'string':
        if (spec.examples.length > 0 && r.chance(0.3)) return r.pick(spec.examples);
        break;
    }
  }
  if (roll < 0.85) return r.pick(GENERAL);
  // Random code points, including controls and unpaired surrogates.
  const len = r.int(40);
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(r.pick([r.int(0x20), 0x20 + r.int(0x5f), r.int(0x10000)]));
  return s;
}

/** Keys that are not declared anywhere: typos, case variants, hostile names. */
export function unknownKey(r: Rng, known: readonly string[]): string {
  const k = known.length > 0 ? r.pick(known) : 'key';
  return r.pick([`${k}x`, k.toUpperCase(), `${k}_`, `x${k}`, 'definitely_not_an_option', '__proto__x', 'a\0b', 'ключ', 'key with spaces', '']);
}
