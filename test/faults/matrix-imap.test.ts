// Fault matrix of the imap connectors (importer, exporter, storage) against Dovecot: byte-stream faults only (IMAP
// has no HTTP layer).
import { integration } from '../../integrations/imap/index.ts';
import { pseudoRandom } from '../conformance/data.ts';
import { providedServer } from '../servers/provided.ts';
import { describeMatrix, TCP_FAULTS, type Subject } from './matrix.ts';

const dovecot = providedServer('dovecot');
const user = dovecot.users[0] as { user: string; password: string };

/** An RFC 5322 message with CRLF line ends; `attachment` bytes go in base64 (76-character lines). */
function message(n: number, subject: string, attachment?: Buffer): Buffer {
  const head = [
    `From: Fault Matrix <faults@kloset.test>`,
    `To: ${user.user}@kloset.test`,
    `Subject: ${subject}`,
    `Date: Mon, 04 Mar 2024 05:06:0${n} +0000`,
    `Message-ID: <faults-${n}-${Date.now()}@kloset.test>`,
    'MIME-Version: 1.0',
  ];
  if (!attachment) return Buffer.from([...head, 'Content-Type: text/plain; charset=utf-8', '', `Body of message ${n}.`, ''].join('\r\n'));
  const b64 = attachment.toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.from(
    [
      ...head,
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain; charset=utf-8',
      '',
      `Message ${n} with an attachment.`,
      '--b1',
      'Content-Type: application/octet-stream',
      'Content-Transfer-Encoding: base64',
      'Content-Disposition: attachment; filename="data.bin"',
      '',
      b64,
      '--b1--',
      '',
    ].join('\r\n'),
  );
}

const base = (name: string, via?: { port: number }): Record<string, string> => ({
  location: `imap://127.0.0.1:${via?.port ?? dovecot.port}/${name}`,
  username: user.user,
  password: user.password,
  tls: 'no-tls',
  // Through the proxy, a connection that stalls is given up after 5 s (the default is longer) and reopened.
  ...(via ? { io_timeout: '5s', max_retries: '6' } : {}),
});

const subject: Subject = {
  name: 'imap',
  target: { integration },
  kinds: ['importer', 'exporter', 'storage'],
  layer: 'tcp',
  faults: TCP_FAULTS,
  upstream: () => dovecot.port,
  stallMs: 30_000,
  config: base,
  storeConfig: (name, via) => ({ ...base('', via), root: `Repo-${name}`, max_message_size: '512KiB' }),
  tree: {
    Box: {
      '1-first.eml': message(1, 'first'),
      '2-second.eml': message(2, 'second ≠ unicode'),
      '3-big.eml': message(3, 'big', pseudoRandom(900_000, 3)),
      '4-fourth.eml': message(4, 'fourth', pseudoRandom(100_000, 4)),
    },
  },
  rootOf: (name) => `/${name}`,
  // Restored messages are named after their new UIDs.
  exactNames: false,
  secrets: [user.password],
};

describeMatrix(subject, 'Dovecot');
