// The OneDrive integration: importer, exporter and storage for OneDrive, OneDrive for Business and SharePoint.
import { defineIntegration } from '../../shared/index.ts';
import { exporter } from './exporter.ts';
import { importer } from './importer.ts';
import { login } from './login.ts';
import { storage } from './storage.ts';

/** The OneDrive integration (protocol `onedrive`, location `onedrive://[/path]`). */
export const integration = defineIntegration({
  name: 'onedrive',
  displayName: 'OneDrive',
  description: 'Back up and restore OneDrive, OneDrive for Business and SharePoint libraries, and keep Plakar repositories in them, through Microsoft Graph.',
  version: '0.1.0',
  protocols: ['onedrive'],
  importer,
  exporter,
  storage,
  commands: { login },
});
