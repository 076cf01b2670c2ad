// Fuzzes every option parser through the real Init path (SDK server + the integration's init, in process): random and
// malformed values for declared keys, unknown keys and bad locations. Init must fail naming the key (or succeed, or
// fail on the unreachable test endpoint with a clear message), never with an internal error, never hang, never leak.
import { describe, expect, it } from 'vitest';
import type { ConnectorKind, Integration } from '../../shared/define.ts';
import type { OptionSpec } from '../../shared/options/builders.ts';
import { parseConfig } from '../../shared/options/parse.ts';
import { redactor } from '../../shared/redact.ts';
import { serveOnDuplex } from '../../shared/transport/serve.ts';
import { loadIntegrations } from '../../scripts/gen-integrations.ts';
import { connectInProcess } from '../harness/index.ts';
import { ignoreSecretValues } from '../harness/secret-scan.ts';
import { fuzzSeed, rng, type Rng } from './prng.ts';
import { findSecret } from './secret-forms.ts';
import { hostileValue, unknownKey } from './values.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
/** A loopback port nothing listens on: valid configs fail fast with "connection refused" instead of reaching the Internet. */
const DEAD = 'http://127.0.0.1:1';
const SECRET = 'Fuzz-Secret-Value-9f3b2c';

/** A config that every connector of the integration accepts, pointing at the dead port, with one try per call. */
const BASE: Record<string, (proto: string) => Record<string, string>> = {
  s3: () => ({
    location: 's3://127.0.0.1:1/fuzz-bucket',
    access_key: 'fuzz-access-key',
    secret_access_key: SECRET,
    use_tls: 'false',
    max_retries: '1',
  }),
  gdrive: (proto) => ({
    location: `${proto}:///fuzz`,
    access_token: SECRET,
    api_url: DEAD,
    token_url: `${DEAD}/token`,
    max_retries: '1',
    timeout: '2s',
  }),
  onedrive: (proto) => ({
    location: `${proto}:///fuzz`,
    access_token: SECRET,
    endpoint: DEAD,
    max_retries: '1',
    timeout: '2s',
  }),
  imap: (proto) => ({
    location: `${proto}://127.0.0.1:1/INBOX`,
    username: 'fuzz',
    password: SECRET,
    tls: 'no-tls',
    io_timeout: '2s',
    max_retries: '1',
  }),
  caldav: (proto) => ({
    location: `${proto}://127.0.0.1:1/dav/`,
    username: 'fuzz',
    password: SECRET,
    use_tls: 'false',
    timeout: '2s',
    max_retries: '1',
  }),
};

/** Locations no connector may accept. */
function badLocation(r: Rng, proto: string): string {
  return r.pick([
    '',
    ' ',
    proto,
    `${proto}:`,
    `${proto}:/`,
    'no-scheme-at-all',
    'zz-unknown://127.0.0.1:1/x',
    'http://127.0.0.1:1/x',
    `\0${proto}://x`,
    `${' '.repeat(3)}\n`,
    'ptar:///etc/passwd',
    '../../etc/passwd',
    `${r.pick(['ü', '\u202e', '%'])}://x`,
  ]);
}

/** Bound of one Init: every valid config points at a refused loopback port with one try per call. */
const PER_CASE_MS = 8000;

interface Outcome {
  ok: boolean;
  message: string;
  ms: number;
}

async function initOnce(integration: Integration, kind: ConnectorKind, proto: string, config: Record<string, string>): Promise<Outcome> {
  const conn = connectInProcess((d) => serveOnDuplex(integration, kind, d));
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Init hung for more than ${PER_CASE_MS} ms`)), PER_CASE_MS);
    });
    await Promise.race([conn.host.init(kind, proto, config, { maxConcurrency: 2 }), hang]);
    return { ok: true, message: '', ms: performance.now() - t0 };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (message.startsWith('Init hung')) throw new Error(`${message}: ${JSON.stringify(config).slice(0, 2000)}`);
    return { ok: false, message, ms: performance.now() - t0 };
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}

/** What the declared parser says about a value (the oracle for "the message names the key"). */
function rejects(spec: OptionSpec | undefined, raw: string): boolean {
  if (!spec) return true;
  if (raw.trim() === '') return false;
  return 'problem' in spec.parse(raw);
}

/** The real integrations (the test fixture has its own parser tests). */
const integrations = (await loadIntegrations(ROOT)).filter((i) => i.integration.name !== 'fixture');
const SEED = fuzzSeed(20261125);
/** Cases through the full Init path per connector; plus many more straight through the parser Init uses. */
const INIT_CASES = Number(process.env.KLOSET_TS_FUZZ_INIT_CASES ?? 60);
const PARSE_CASES = Number(process.env.KLOSET_TS_FUZZ_PARSE_CASES ?? 300);

describe('hostile input: option parsers through Init', () => {
  it('every integration has a base config for the fuzzer', () => {
    expect(integrations.map((i) => i.integration.name).sort()).toEqual(Object.keys(BASE).sort());
  });

  it('a bad value of 300 KB echoed in the error still gets an Init reply, cut to a readable length (found by this fuzzer)', async () => {
    const caldav = integrations.find((i) => i.integration.name === 'caldav')?.integration as Integration;
    const config = { ...(BASE.caldav as (p: string) => Record<string, string>)('caldav'), components: '%'.repeat(300_000) };
    const out = await initOnce(caldav, 'exporter', 'caldav', config);
    expect(out.ok).toBe(false);
    expect(out.message).toMatch(/^caldav exporter: option components: /);
    expect(out.message.length).toBeLessThan(9000);
    expect(out.message).toMatch(/more characters\)$/);
  });

  for (const { integration } of integrations) {
    for (const kind of ['importer', 'exporter', 'storage'] as const) {
      const def = integration[kind];
      if (!def) continue;
      const specs = def.options as readonly OptionSpec[];
      const byKey = new Map<string, OptionSpec>();
      for (const s of specs) for (const k of [s.key, ...s.deprecatedAlias]) byKey.set(k, s);
      const siblings = new Set<string>();
      for (const k of ['importer', 'exporter', 'storage'] as const) {
        if (k !== kind) for (const s of integration[k]?.options ?? []) siblings.add(s.key);
      }
      const known = [...byKey.keys()];

      /** One random case: the base config with 1–3 keys replaced or added; returns what must be named. */
      const makeCase = (r: Rng, proto: string) => {
        const config = { ...(BASE[integration.name] as (p: string) => Record<string, string>)(proto) };
        for (const k of Object.keys(config)) if (!byKey.has(k) && k !== 'location') delete config[k];
        const mustName: string[] = [];
        const secrets = [SECRET];
        const n = 1 + r.int(3);
        for (let i = 0; i < n; i++) {
          const roll = r.next();
          if (roll < 0.1) {
            const loc = badLocation(r, proto);
            config.location = loc;
            mustName.push('location');
          } else if (roll < 0.2) {
            const key = unknownKey(r, known);
            if (byKey.has(key) || siblings.has(key) || ['location', 'passphrase', 'passphrase_cmd'].includes(key)) continue;
            config[key] = hostileValue(r, undefined);
            mustName.push(key);
          } else if (known.length > 0) {
            const key = r.pick(known);
            const spec = byKey.get(key);
            const value = hostileValue(r, spec);
            // A key and its alias together is its own error; keep one spelling per option.
            for (const other of [spec?.key, ...(spec?.deprecatedAlias ?? [])]) if (other && other !== key) delete config[other];
            config[key] = value;
            if (spec?.secret && value.length >= 12) secrets.push(value);
            // Junk in a secret key (`Infinity`, `constructor`) is not a recognisable secret for the suite-wide scan.
            if (spec?.secret || /(?:password|secret|token|private_key|passphrase)$/i.test(key)) ignoreSecretValues([value]);
            if (rejects(spec, value)) mustName.push(key);
          }
        }
        // Valid retry counts stay at 1: refused connections are retried with backoff, which is policy, not a hang.
        const retries = byKey.get('max_retries');
        if (config.max_retries !== undefined && retries && !rejects(retries, config.max_retries)) config.max_retries = '1';
        // Judge the final config (a key may have been set twice): keys the declared parser rejects, unknown keys, location.
        const final = [...new Set(mustName)].filter((k) =>
          k === 'location' ? true : config[k] !== undefined && (!byKey.has(k) || rejects(byKey.get(k), config[k] as string)),
        );
        return { config, mustName: final, secrets };
      };

      it(`${integration.name} ${kind}: ${INIT_CASES} hostile configs through Init fail naming the key, never crash or hang`, async () => {
        const r = rng(SEED ^ hash(`${integration.name}/${kind}`));
        const failures: string[] = [];
        let slowest = 0;
        for (let i = 0; i < INIT_CASES; i++) {
          const proto = r.pick(integration.protocols);
          const { config, mustName, secrets } = makeCase(r, proto);
          const out = await initOnce(integration, kind, proto, config);
          slowest = Math.max(slowest, out.ms);
          const where = `case ${i} (seed ${SEED}) ${JSON.stringify(config).slice(0, 300)}`;
          if (!out.ok) {
            if (!out.message.startsWith(`${integration.name} ${kind}: `)) failures.push(`${where}: message without the connector prefix: ${out.message.slice(0, 300)}`);
            if (/internal error/.test(out.message)) failures.push(`${where}: unexpected exception: ${out.message.slice(0, 300)}`);
            // Every key the declared parser rejects is named at once; the location is checked by the integration's
            // own init after the parser passes, so it must be named when it is the only bad value.
            // A key equal to a secret value registered earlier in this process is redacted like the secret: compare
            // with the redacted spelling. Cross-option rules of an integration may fire before its location check.
            const parserKeys = mustName.filter((k) => k !== 'location' || config.location?.trim() === '');
            for (const key of parserKeys) {
              if (!out.message.includes(redactor.redact(`option ${key}`))) failures.push(`${where}: message does not name ${JSON.stringify(key)}: ${out.message.slice(0, 300)}`);
            }
            if (mustName.length > 0 && !/option \S+/.test(out.message)) failures.push(`${where}: message names no key: ${out.message.slice(0, 300)}`);
            const leak = findSecret(out.message, secrets);
            if (leak) failures.push(`${where}: secret #${leak.index} leaked into the Init error`);
          } else if (mustName.length > 0) {
            failures.push(`${where}: Init succeeded although ${mustName.join(', ')} is invalid`);
          }
        }
        expect(failures.slice(0, 10)).toEqual([]);
        expect(slowest).toBeLessThan(PER_CASE_MS);
      }, 300_000);

      it(`${integration.name} ${kind}: ${PARSE_CASES} hostile configs through the parser Init uses name every bad key`, () => {
        const r = rng(SEED ^ hash(`parse/${integration.name}/${kind}`));
        const failures: string[] = [];
        for (let i = 0; i < PARSE_CASES; i++) {
          const proto = r.pick(integration.protocols);
          const { config, mustName } = makeCase(r, proto);
          const t0 = performance.now();
          let message = '';
          try {
            parseConfig(specs, config, { siblingKeys: [...siblings] });
          } catch (err) {
            if (!(err instanceof Error) || err.name !== 'ConfigError') {
              failures.push(`case ${i}: parser threw ${String(err)}`);
              continue;
            }
            message = err.message;
          }
          if (performance.now() - t0 > 2000) failures.push(`case ${i}: parsing took ${(performance.now() - t0).toFixed(0)} ms`);
          // The location is checked by the integration's init, not the generic parser (it only requires one).
          for (const key of mustName.filter((k) => k !== 'location' || config.location?.trim() === '')) {
            if (!message.includes(`option ${key}`)) failures.push(`case ${i}: ${JSON.stringify(key)} not named: ${message.slice(0, 200) || '(accepted)'}`);
          }
        }
        expect(failures.slice(0, 10)).toEqual([]);
      });
    }
  }
});

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
