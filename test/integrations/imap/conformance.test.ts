// The three conformance suites against Dovecot over plain IMAP (conformance-starttls and conformance-tls run the other transports).
import { runImapConformance } from './conformance-suites.ts';

runImapConformance('plain');
