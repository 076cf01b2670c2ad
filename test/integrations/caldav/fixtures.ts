// Calendar objects and vCards the caldav tests seed: recurrence with EXDATE and an override, tasks, journals, time zones, vCards.

const crlf = (lines: string[]): string => `${lines.join('\r\n')}\r\n`;

const PARIS = [
  'BEGIN:VTIMEZONE',
  'TZID:Europe/Paris',
  'BEGIN:DAYLIGHT',
  'TZOFFSETFROM:+0100',
  'TZOFFSETTO:+0200',
  'TZNAME:CEST',
  'DTSTART:19700329T020000',
  'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU',
  'END:DAYLIGHT',
  'BEGIN:STANDARD',
  'TZOFFSETFROM:+0200',
  'TZOFFSETTO:+0100',
  'TZNAME:CET',
  'DTSTART:19701025T030000',
  'RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU',
  'END:STANDARD',
  'END:VTIMEZONE',
];

const NEW_YORK = [
  'BEGIN:VTIMEZONE',
  'TZID:America/New_York',
  'BEGIN:DAYLIGHT',
  'TZOFFSETFROM:-0500',
  'TZOFFSETTO:-0400',
  'TZNAME:EDT',
  'DTSTART:19700308T020000',
  'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU',
  'END:DAYLIGHT',
  'BEGIN:STANDARD',
  'TZOFFSETFROM:-0400',
  'TZOFFSETTO:-0500',
  'TZNAME:EST',
  'DTSTART:19701101T020000',
  'RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU',
  'END:STANDARD',
  'END:VTIMEZONE',
];

const HEAD = ['BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//kloset-ts//caldav tests//EN'];

/** A weekly stand-up with one EXDATE and one occurrence moved (RECURRENCE-ID override in the same resource). */
export const WEEKLY = crlf([
  ...HEAD,
  ...PARIS,
  'BEGIN:VEVENT',
  'UID:weekly-standup@kloset.test',
  'DTSTAMP:20240101T090000Z',
  'LAST-MODIFIED:20240102T100000Z',
  'DTSTART;TZID=Europe/Paris:20240108T093000',
  'DTEND;TZID=Europe/Paris:20240108T094500',
  'RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=20',
  'EXDATE;TZID=Europe/Paris:20240122T093000',
  'SUMMARY:Weekly stand-up',
  'DESCRIPTION:Line one\\nLine two\\, with a comma\\; and a semicolon',
  'LOCATION:Salle Émile Zola',
  'BEGIN:VALARM',
  'ACTION:DISPLAY',
  'DESCRIPTION:Stand-up in 10 minutes',
  'TRIGGER:-PT10M',
  'END:VALARM',
  'END:VEVENT',
  'BEGIN:VEVENT',
  'UID:weekly-standup@kloset.test',
  'DTSTAMP:20240101T090000Z',
  'RECURRENCE-ID;TZID=Europe/Paris:20240129T093000',
  'DTSTART;TZID=Europe/Paris:20240130T110000',
  'DTEND;TZID=Europe/Paris:20240130T111500',
  'SUMMARY:Weekly stand-up (moved to Tuesday)',
  'END:VEVENT',
  'END:VCALENDAR',
]);

/** An event in another time zone, with non-ASCII text and a long folded description. */
export const NEW_YORK_EVENT = crlf([
  ...HEAD,
  ...NEW_YORK,
  'BEGIN:VEVENT',
  'UID:ny-meeting@kloset.test',
  'DTSTAMP:20240201T120000Z',
  'DTSTART;TZID=America/New_York:20240315T140000',
  'DTEND;TZID=America/New_York:20240315T153000',
  'SUMMARY:Réunion 会議 ≠ “quotes” ✓',
  `DESCRIPTION:${'A long description that servers fold. '.repeat(6).trim()}`,
  'CATEGORIES:work,travel',
  'END:VEVENT',
  'END:VCALENDAR',
]);

/** An all-day event published with METHOD:PUBLISH (which a restore must strip) and an inline attachment. */
export const PUBLISHED = crlf([
  ...HEAD,
  'METHOD:PUBLISH',
  'BEGIN:VEVENT',
  'UID:holiday@kloset.test',
  'DTSTAMP:20240301T080000Z',
  'DTSTART;VALUE=DATE:20240501',
  'DTEND;VALUE=DATE:20240502',
  'SUMMARY:Fête du travail',
  'ATTACH;ENCODING=BASE64;VALUE=BINARY;FMTTYPE=text/plain;X-FILENAME=note.txt:SGVsbG8sIGF0dGFjaG1lbnQhIOKckw==',
  'END:VEVENT',
  'END:VCALENDAR',
]);

/** A task with a due date. */
export const TASK = crlf([
  ...HEAD,
  'BEGIN:VTODO',
  'UID:task-report@kloset.test',
  'DTSTAMP:20240105T080000Z',
  'DTSTART:20240105T080000Z',
  'DUE:20240110T170000Z',
  'SUMMARY:Write the quarterly report',
  'PRIORITY:1',
  'STATUS:NEEDS-ACTION',
  'PERCENT-COMPLETE:25',
  'END:VTODO',
  'END:VCALENDAR',
]);

/** A completed task with an all-day due date. */
export const TASK_DONE = crlf([
  ...HEAD,
  'BEGIN:VTODO',
  'UID:task-done@kloset.test',
  'DTSTAMP:20240106T080000Z',
  'DUE;VALUE=DATE:20240107',
  'COMPLETED:20240106T150000Z',
  'STATUS:COMPLETED',
  'SUMMARY:Buy coffee ☕',
  'END:VTODO',
  'END:VCALENDAR',
]);

/** A journal entry. */
export const JOURNAL = crlf([
  ...HEAD,
  'BEGIN:VJOURNAL',
  'UID:journal-1@kloset.test',
  'DTSTAMP:20240107T200000Z',
  'DTSTART;VALUE=DATE:20240107',
  'SUMMARY:Day one',
  'DESCRIPTION:Started the backup project. Ça marche.',
  'END:VJOURNAL',
  'END:VCALENDAR',
]);

/** A simple event, for the small collections. */
export function simpleEvent(uid: string, summary: string, day = '20240601'): string {
  return crlf([...HEAD, 'BEGIN:VEVENT', `UID:${uid}`, 'DTSTAMP:20240101T000000Z', `DTSTART:${day}T100000Z`, `DTEND:${day}T110000Z`, `SUMMARY:${summary}`, 'END:VEVENT', 'END:VCALENDAR']);
}

/** An event carrying `bytes` of attachment, base64-encoded inline and folded at 75 octets. */
export function fatEvent(i: number, bytes: number): string {
  const data = Buffer.alloc(bytes, `attachment ${i} `).toString('base64');
  const line = `ATTACH;ENCODING=BASE64;VALUE=BINARY;FMTTYPE=application/octet-stream:${data}`;
  const folded = line.match(/^.{1,75}|.{1,74}/g)?.join('\r\n ') ?? line;
  return simpleEvent(`fat-${i}@kloset.test`, `Fat ${i}`).replace('END:VEVENT', `${folded}\r\nEND:VEVENT`);
}

/** vCard 3.0 with an inline photo and non-ASCII. */
export const CARD_ZOE = crlf([
  'BEGIN:VCARD',
  'VERSION:3.0',
  'UID:zoe@kloset.test',
  'FN:Zoë Ångström',
  'N:Ångström;Zoë;;;',
  'EMAIL;TYPE=INTERNET,WORK:zoe@example.com',
  'TEL;TYPE=CELL:+33 6 12 34 56 78',
  'ADR;TYPE=HOME:;;12 rue de la Paix;Paris;;75002;France',
  'NOTE:Met at the “conference”\\, 2024',
  'PHOTO;ENCODING=b;TYPE=PNG:iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'END:VCARD',
]);

/** vCard 4.0. */
export const CARD_KENJI = crlf([
  'BEGIN:VCARD',
  'VERSION:4.0',
  'UID:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1',
  'FN:山田 健二',
  'N:山田;健二;;;',
  'EMAIL;TYPE=home:kenji@example.jp',
  'BDAY:19850412',
  'END:VCARD',
]);

/** A vCard for the second address book. */
export function simpleCard(uid: string, fn: string): string {
  return crlf(['BEGIN:VCARD', 'VERSION:3.0', `UID:${uid}`, `FN:${fn}`, `N:${fn};;;;`, 'END:VCARD']);
}

/** A VTIMEZONE calendar for calendar-timezone. */
export const PARIS_TZ = crlf([...HEAD, ...PARIS, 'END:VCALENDAR']);

/** One generated event for the large calendar: a weekly series every tenth object, non-ASCII, a few hundred bytes. */
export function benchEvent(i: number): string {
  const day = new Date(Date.UTC(2024, 0, 1) + (i % 365) * 86_400_000).toISOString().slice(0, 10).replace(/-/g, '');
  const lines = [
    ...HEAD,
    'BEGIN:VEVENT',
    `UID:bench-${i}@kloset.test`,
    'DTSTAMP:20240101T000000Z',
    `LAST-MODIFIED:20240102T${String(i % 24).padStart(2, '0')}0000Z`,
    `DTSTART:${day}T${String(8 + (i % 10)).padStart(2, '0')}0000Z`,
    `DTEND:${day}T${String(9 + (i % 10)).padStart(2, '0')}0000Z`,
    `SUMMARY:Event n°${i} — réunion`,
    `DESCRIPTION:${'Agenda item, notes and links. '.repeat(8).trim()}`,
  ];
  if (i % 10 === 0) lines.push('RRULE:FREQ=WEEKLY;COUNT=10');
  lines.push('END:VEVENT', 'END:VCALENDAR');
  return crlf(lines);
}
