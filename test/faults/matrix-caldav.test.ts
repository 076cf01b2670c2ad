// Fault matrix of the caldav connectors (importer, exporter) against Radicale, every fault class.
import { integration } from '../../integrations/caldav/index.ts';
import { providedServer } from '../servers/provided.ts';
import { FAULT_NAMES, describeMatrix, type Subject } from './matrix.ts';

const radicale = providedServer('radicale');
const user = radicale.users[0] as { user: string; password: string };
const host = new URL(radicale.url).host;

/** Folds an iCalendar content line at 75 octets (RFC 5545 §3.1). */
function fold(line: string): string {
  const parts: string[] = [];
  for (let i = 0; i < line.length; i += 74) parts.push((i === 0 ? '' : ' ') + line.slice(i, i + 74));
  return parts.join('\r\n');
}

function event(n: number, summary: string, descriptionBytes = 0): string {
  const description = descriptionBytes > 0 ? 'x'.repeat(descriptionBytes).replace(/x{50}/g, (m, i: number) => `${m.slice(0, 40)}${String(i).padStart(10, '0')}`) : `Event ${n}`;
  return [
    'BEGIN:VCALENDAR',
    'VERSION:2.0',
    'PRODID:-//kloset-ts//fault matrix//EN',
    'BEGIN:VEVENT',
    `UID:faults-${n}@kloset.test`,
    'DTSTAMP:20240304T050607Z',
    `DTSTART:20240${(n % 9) + 1}01T100000Z`,
    `DTEND:20240${(n % 9) + 1}01T110000Z`,
    fold(`SUMMARY:${summary}`),
    fold(`DESCRIPTION:${description}`),
    'END:VEVENT',
    'END:VCALENDAR',
    '',
  ].join('\r\n');
}

const subject: Subject = {
  name: 'caldav',
  target: { integration, proto: 'caldav' },
  kinds: ['importer', 'exporter'],
  layer: 'http',
  faults: FAULT_NAMES,
  upstream: () => radicale.url,
  stallMs: 30_000,
  config: (name, via) => ({
    location: `caldav://${via?.host ?? host}/${user.user}/${name}/`,
    username: user.user,
    password: user.password,
    use_tls: 'false',
    // Through the proxy, a request that stalls is given up after 5 s (the default is longer) and retried.
    ...(via ? { timeout: '5s', max_retries: '6' } : {}),
  }),
  storeConfig: () => {
    throw new Error('caldav has no storage connector');
  },
  tree: {
    'first.ics': event(1, 'First'),
    'second ≠.ics': event(2, 'Second ≠ unicode'),
    'big.ics': event(3, 'Big', 150_000),
    'fourth.ics': event(4, 'Fourth', 20_000),
  },
  rootOf: (name) => `/${name}`,
  serverRewrites: true,
  ignore: /\/\.collection\.json$/,
  exactNames: true,
  secrets: [user.password],
};

describeMatrix(subject, 'Radicale');
