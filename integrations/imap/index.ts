// The imap integration: mailboxes backed up and restored with full fidelity, and a Plakar repository stored in mailboxes.
import { defineIntegration } from '../../shared/index.ts';
import { exporter } from './exporter.ts';
import { importer } from './importer.ts';
import { storage } from './storage.ts';

/** The imap integration (protocols `imap` and `imaps`, the latter defaulting to implicit TLS). */
export const integration = defineIntegration({
  name: 'imap',
  displayName: 'IMAP',
  description: 'Back up and restore IMAP mail accounts (flags, keywords, dates, folders) and store Plakar repositories in mailboxes.',
  version: '0.1.0',
  protocols: ['imap', 'imaps'],
  importer,
  exporter,
  storage,
});
