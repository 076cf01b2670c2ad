// The three conformance suites against Dovecot over implicit TLS, under the `imaps` protocol alias.
import { runImapConformance } from './conformance-suites.ts';

runImapConformance('tls');
