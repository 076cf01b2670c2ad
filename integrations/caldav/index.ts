// The caldav integration: CalDAV calendars and CardDAV address books, backed up and restored collection by collection.
import { defineIntegration } from '../../shared/index.ts';
import { exporter } from './exporter.ts';
import { importer } from './importer.ts';

/** The caldav integration (protocols `caldav` and `carddav`). */
export const integration = defineIntegration({
  name: 'caldav',
  displayName: 'CalDAV and CardDAV',
  description: 'Every calendar (VEVENT, VTODO, VJOURNAL) and address book of a CalDAV/CardDAV account, with collection properties, restored as they were.',
  version: '0.1.0',
  protocols: ['caldav', 'carddav'],
  importer,
  exporter,
});
