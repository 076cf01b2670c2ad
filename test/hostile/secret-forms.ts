// The forms in which a secret value could leak (raw, URL-encoded, base64, base64url), and a search for them in text.

/** Every form of `value` worth searching for; values shorter than `min` characters are too common to search. */
export function secretForms(value: string, min = 6): string[] {
  if (value.length < min) return [];
  const forms = new Set<string>([value]);
  try {
    forms.add(encodeURIComponent(value));
  } catch {
    // An unpaired surrogate: encodeURIComponent throws, and such a value cannot travel URL-encoded anyway.
  }
  const b64 = Buffer.from(value).toString('base64');
  forms.add(b64);
  forms.add(b64.replace(/=+$/, ''));
  forms.add(Buffer.from(value).toString('base64url'));
  return [...forms].filter((f) => f.length >= min);
}

/** The first secret (by index) found in `text` in any of its forms, with the form that matched, or undefined. */
export function findSecret(text: string, secrets: readonly string[]): { index: number; form: string } | undefined {
  for (let i = 0; i < secrets.length; i++) {
    for (const form of secretForms(secrets[i] as string)) if (text.includes(form)) return { index: i, form };
  }
  return undefined;
}
