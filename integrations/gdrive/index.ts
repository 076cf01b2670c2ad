// The gdrive integration: Google Drive as a Plakar source, restore destination and repository store (protocol gdrive).
import { defineIntegration } from '../../shared/index.ts';
import { exporter } from './exporter.ts';
import { importer } from './importer.ts';
import { runLogin } from './oauth.ts';
import { storage } from './storage.ts';

/** The gdrive integration: one executable serving importer, exporter and storage, plus the `login` command. */
export const integration = defineIntegration({
  name: 'gdrive',
  displayName: 'Google Drive',
  description: 'Back up Google Drive (My Drive, shared drives, shared with me) with Google documents exported, restore to Drive, and keep a Plakar repository in a Drive folder.',
  version: '0.1.0',
  protocols: ['gdrive'],
  importer,
  exporter,
  storage,
  commands: {
    login: {
      help: 'sign in to Google in a browser and print the plakar lines with a refresh token',
      run: runLogin,
    },
  },
});
