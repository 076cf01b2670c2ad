// The three conformance suites against Dovecot over STARTTLS (certificate checked against tls_ca_file).
import { runImapConformance } from './conformance-suites.ts';

runImapConformance('starttls');
