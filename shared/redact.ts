// Redaction of secrets from every log line and status message: declared secret values plus well-known token shapes.

const MIN_SECRET_LENGTH = 4;

const PATTERNS: Array<[RegExp, string]> = [
  // Authorization-style headers and their bearer/basic values.
  [/\b(authorization|proxy-authorization|cookie|set-cookie|x-amz-security-token|x-goog-api-key)(\s*[:=]\s*)("?)[^\r\n",;]+/gi, '$1$2$3***'],
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 ***'],
  // URL userinfo: scheme://user:pass@host → scheme://user:***@host
  [/\b([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):[^/\s@]+@/gi, '$1:***@'],
  // Signed-URL and OAuth query parameters.
  [
    /([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|access_token|refresh_token|id_token|client_secret|code|token|key|tempauth|sv|se)=)[^&\s"']+/gi,
    '$1***',
  ],
  // JSON fields carrying tokens.
  [/("(?:access_token|refresh_token|id_token|client_secret|private_key|password|secret)"\s*:\s*")[^"]*"/gi, '$1***"'],
];

/** Collects secret values and scrubs them, in their common encodings, from any text. */
export class Redactor {
  private readonly secrets = new Set<string>();
  /** The forms, longest first, so a form inside a longer one never breaks the longer one's match. */
  private sorted: string[] | undefined;

  /** Registers a secret value; its URL-encoded, base64 and base64url forms are redacted too. */
  add(value: string | undefined): void {
    if (!value || value.length < MIN_SECRET_LENGTH) return;
    const forms = [
      value,
      uriEncoded(value),
      Buffer.from(value).toString('base64'),
      Buffer.from(value).toString('base64url'),
      Buffer.from(value).toString('base64').replace(/=+$/, ''),
    ];
    for (const f of forms) if (f.length >= MIN_SECRET_LENGTH) this.secrets.add(f);
    this.sorted = undefined;
  }

  /** Every registered form, longest first (for tests that scan output). */
  forms(): string[] {
    return [...this.secrets].sort((a, b) => b.length - a.length);
  }

  /** Returns `text` with every secret form and token shape replaced by `***`. */
  redact(text: string): string {
    let out = text;
    // Plain substring replacement: one alternation regex of every form fails ("Regular expression too large") once
    // the secrets are long (a pasted key file, a hostile value) and would turn every error into a crash.
    this.sorted ??= this.forms();
    for (const form of this.sorted) if (out.includes(form)) out = out.replaceAll(form, '***');
    for (const [re, replacement] of PATTERNS) out = out.replace(re, replacement);
    return out;
  }
}

/** `encodeURIComponent`, or the value itself when it holds an unpaired surrogate (which encodeURIComponent throws on). */
function uriEncoded(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return value;
  }
}

/** The process-wide redactor: one connector instance per process, so one set of secrets. */
export const redactor = new Redactor();
