// The IMAP classifier and error texts: throttling backs off, dropped connections retry, refused logins stop, replies read well.
import { describe, expect, it } from 'vitest';
import { AuthError, QuotaError } from '../../../shared/index.ts';
import { classify, classifyInit, ImapError, imapErrorText, normalizeError, type ImapSettings } from '../../../integrations/imap/client.ts';

const settings = { user: 'alice', account: 'alice@imap.example.com:993', auth: 'login' } as ImapSettings;

/** An error shaped like imapflow's for a tagged NO/BAD reply. */
function reply(status: string, code: string | undefined, text: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error('Command failed'), { responseStatus: status, serverResponseCode: code, responseText: text, ...extra });
}

describe('imap client: classification', () => {
  it('backs off on throttling replies', () => {
    expect(classify(normalizeError(reply('NO', 'THROTTLED', 'Slow down'), settings))).toEqual({ kind: 'throttle' });
    expect(classify(normalizeError(reply('NO', 'UNAVAILABLE', 'Try later'), settings))).toEqual({ kind: 'throttle' });
    expect(classify(normalizeError(reply('NO', 'LIMIT', 'Too many'), settings))).toEqual({ kind: 'throttle' });
    expect(classify(normalizeError(reply('NO', 'ALERT', 'Too many simultaneous connections. (Failure)'), settings))).toEqual({ kind: 'throttle' });
    expect(classify(normalizeError(reply('NO', undefined, 'Account exceeded command or bandwidth limits.'), settings))).toEqual({ kind: 'throttle' });
    // imapflow leaves serverResponseCode unset for FETCH: the code is read from the parsed reply.
    const fetchReply = reply('NO', undefined, 'Slow down', { response: { attributes: [{ type: 'ATOM', value: '', section: [{ type: 'ATOM', value: 'THROTTLED' }] }] } });
    expect(classify(normalizeError(fetchReply, settings))).toEqual({ kind: 'throttle' });
    expect(classify(normalizeError(reply('NO', undefined, 'x', { response: '12 NO [THROTTLED] x' }), settings))).toEqual({ kind: 'throttle' });
    expect(classify(normalizeError(Object.assign(new Error('throttled'), { code: 'ETHROTTLE', throttleReset: 1500 }), settings))).toEqual({
      kind: 'throttle',
      retryAfterMs: 1500,
    });
  });

  it('retries dropped connections and timeouts, and fails other replies at once', () => {
    for (const code of ['NoConnection', 'EConnectionClosed', 'ETIMEOUT', 'ECONNRESET', 'EPIPE']) {
      expect(classify(normalizeError(Object.assign(new Error('x'), { code }), settings)), code).toEqual({ kind: 'transient' });
    }
    expect(classify(normalizeError(reply('NO', 'TRYCREATE', "Mailbox doesn't exist: X"), settings))).toEqual({ kind: 'permanent' });
    expect(classify(normalizeError(reply('BAD', undefined, 'Error in IMAP command'), settings))).toEqual({ kind: 'permanent' });
    // Connecting in Init: a refused port or unknown host is reported at once.
    expect(classifyInit(normalizeError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), settings))).toEqual({ kind: 'permanent' });
  });

  it('stops on refused credentials and a full mailbox', () => {
    const auth = normalizeError(reply('NO', 'AUTHENTICATIONFAILED', 'Authentication failed.', { authenticationFailed: true }), settings);
    expect(auth).toBeInstanceOf(AuthError);
    expect(auth.message).toBe(
      'cannot log in as "alice" at imap.example.com:993: NO [AUTHENTICATIONFAILED] Authentication failed. (check username and password; Gmail needs an app password or auth=xoauth2)',
    );
    expect(classify(auth)).toEqual({ kind: 'fatal' });
    // A temporary authentication failure is throttling, not a wrong password.
    expect(normalizeError(reply('NO', 'UNAVAILABLE', 'Temporary authentication failure.', { authenticationFailed: true }), settings)).toBeInstanceOf(ImapError);
    const quota = normalizeError(reply('NO', 'OVERQUOTA', 'Quota exceeded (mailbox for user is full)'), settings);
    expect(quota).toBeInstanceOf(QuotaError);
    expect(quota.message).toBe('the mailbox of alice@imap.example.com:993 is full: NO [OVERQUOTA] Quota exceeded (mailbox for user is full)');
  });
});

describe('imap client: error texts', () => {
  it('quotes the server reply without Dovecot timing noise, and names network causes', () => {
    expect(imapErrorText(reply('NO', 'TRYCREATE', "Mailbox doesn't exist: X (0.001 + 0.000 secs)."))).toBe("NO [TRYCREATE] Mailbox doesn't exist: X");
    expect(imapErrorText(reply('NO', 'UNAVAILABLE', 'Temporary authentication failure. [vm:2026-11-25 10:29:02]'))).toBe('NO [UNAVAILABLE] Temporary authentication failure.');
    expect(imapErrorText(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toBe('connection refused (ECONNREFUSED)');
    expect(imapErrorText(Object.assign(new Error('x'), { code: 'ClosedAfterConnectText' }))).toBe(
      'the server closed the connection (does it expect implicit TLS? try tls=tls) (ClosedAfterConnectText)',
    );
  });

  it('explains certificate failures with the options that fix them', () => {
    const e = normalizeError(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }), settings);
    expect(e.message).toBe('TLS failed: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT) (for a private CA set tls_ca_file; tls_no_verify=true disables the check)');
    expect(classify(e)).toEqual({ kind: 'permanent' });
  });
});
