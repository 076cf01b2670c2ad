// The s3 integration: importer, exporter and storage for Amazon S3 and S3-compatible services, one executable.
import { defineIntegration } from '../../shared/index.ts';
import { exporter } from './exporter.ts';
import { importer } from './importer.ts';
import { storage } from './storage.ts';

/** The s3 integration (protocol `s3`), drop-in compatible with the official Plakar s3 integration's configuration. */
export const integration = defineIntegration({
  name: 's3',
  displayName: 'S3',
  description:
    'Back up buckets hosted on Amazon S3 or S3-compatible services, restore into them, and keep Plakar repositories in them.',
  version: '0.1.0',
  protocols: ['s3'],
  importer,
  exporter,
  storage,
});
