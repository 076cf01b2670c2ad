// Hostile restore paths: the SDK's containment (every exporter goes through it) on a real local target, and each
// exporter's own name mapping. The per-exporter conformance suites already restore `..`, NUL, control-character and
// relative paths against each real server or emulator; this adds double slashes, backslash escapes, names past the
// file-system limits, names that collide after Unicode normalisation, and random names through every mapping.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { integration as fixture } from '../fixture/index.ts';
import { decodeSegment, encodeSegment, unsafePathReason } from '../../shared/paths.ts';
import { serveOnDuplex } from '../../shared/transport/serve.ts';
import { nameOf, segmentOf } from '../../integrations/gdrive/map.ts';
import { driveName, drivePathOf } from '../../integrations/onedrive/names.ts';
import { mailboxToPath, pathSegments, segmentsToMailbox } from '../../integrations/imap/map.ts';
import { resourceName, serverNameOf } from '../../integrations/caldav/map.ts';
import { rawExport } from '../conformance/exporter.ts';
import { connectInProcess } from '../harness/index.ts';
import { rng } from './prng.ts';

let parent: string;
let target: string;

async function tree(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = `${prefix}/${e.name}`;
    out.push(p);
    if (e.isDirectory()) out.push(...(await tree(join(dir, e.name), p)));
  }
  return out.sort();
}

beforeAll(async () => {
  parent = await mkdtemp(join(tmpdir(), 'kloset-hostile-export-'));
  target = join(parent, 'target');
  await writeFile(join(parent, 'sentinel'), 'untouched');
});

afterAll(async () => {
  await rm(parent, { recursive: true, force: true });
});

describe('hostile input: restore paths through the SDK onto a real directory', () => {
  it('rejects unclean paths per item, restores the good ones, and writes nothing outside the target', async () => {
    const conn = connectInProcess((d) => serveOnDuplex(fixture, 'exporter', d));
    try {
      await conn.host.init('exporter', 'fixture', { location: `fixture://${target}` });
      const refused = [
        '//etc/passwd',
        '/a//b',
        '/./dot',
        '/a/./b',
        '/a/..',
        '/..',
        '/a\\..\\..\\..\\backslash-escape',
        '/tab\tname',
        '/newline\nname',
        '/del\u007fname',
        '/\u0000',
        '',
      ];
      const longName = `/${'n'.repeat(300)}`;
      const deepPath = `/${'d/'.repeat(2100)}f`;
      const nfc = '/caf\u00e9';
      const nfd = '/cafe\u0301';
      const good = ['/ok.txt', '/dir with spaces/ünïcödé ✓.txt', '/%2E%2E', '/..hidden', '/a..b', nfc, nfd];
      const results = await rawExport(conn.host, [...refused, longName, deepPath, ...good], Buffer.from('payload'));

      for (const p of refused) expect(results.get(p), `result for ${JSON.stringify(p)}`).toMatch(/refusing to restore/);
      // Past the file-system limits: that item fails with its own message, the restore goes on.
      for (const p of [longName, deepPath]) {
        expect(results.get(p), `result for a ${p.length}-character path`).toMatch(/ENAMETOOLONG|name too long|too long/i);
      }
      for (const p of good) expect(results.get(p), `result for ${JSON.stringify(p)}`).toBe('');
      // Names equal after Unicode normalisation stay two files with their own bytes (no silent overwrite).
      const files = await tree(target);
      expect(files).toContain(nfc.normalize('NFC'));
      expect(files).toContain(nfd);
      expect(files).toContain('/%2E%2E');
      expect(await readFile(join(target, 'ok.txt'), 'utf8')).toBe('payload');
      // Nothing next to the target but the sentinel, which is untouched; nothing anywhere above it.
      expect((await readdir(parent)).sort()).toEqual(['sentinel', 'target']);
      expect(await readFile(join(parent, 'sentinel'), 'utf8')).toBe('untouched');
      expect(files.some((f) => /escape|passwd|\n|\t/.test(f))).toBe(false);
    } finally {
      conn.close();
    }
  });

  it('unsafePathReason names the reason for every unclean path and accepts clean ones', () => {
    const bad: Array<[string, RegExp]> = [
      ['', /empty/],
      ['relative/x', /not absolute/],
      ['/a\0b', /NUL/],
      ['/a\u001bb', /control/],
      ['/a/../b', /not clean/],
      ['/a//b', /not clean/],
      ['/a/.', /not clean/],
      ['/x\\..\\y', /backslash/],
    ];
    for (const [p, why] of bad) expect(unsafePathReason(p), JSON.stringify(p)).toMatch(why);
    for (const p of ['/', '/a', '/a/b.c', '/..a', '/a..', '/%2E%2E', '/ü/✓', '/a\\b']) expect(unsafePathReason(p), p).toBeUndefined();
  });
});

/** Random names with separators, dots, percent signs, controls, unicode and reserved characters. */
function hostileNames(seed: number, n: number): string[] {
  const r = rng(seed);
  const alphabet = ['/', '\\', '.', '..', '%', '%2F', '%25', '%2E', '\0', '\n', '\u007f', ':', '*', '?', '"', '<', '>', '|', 'a', 'Z', ' ', 'é', 'e\u0301', '✓', '𝔘', '\u202e', '\ufeff', '~', '#'];
  const out = ['', '.', '..', '...', '/', '//', '%', '%_', '%2E', '%2E%2E', 'CON', 'nul.txt', ' lead', 'trail ', 'x'.repeat(400)];
  for (let i = 0; i < n; i++) {
    let s = '';
    const len = 1 + r.int(12);
    for (let j = 0; j < len; j++) s += r.pick(alphabet);
    out.push(s);
  }
  return out;
}

describe('hostile input: each exporter maps hostile names to safe ones', () => {
  const names = hostileNames(424242, 600);

  it('gdrive: a snapshot segment never holds "/", a control character, ".", ".." or nothing, and maps back to the Drive name', () => {
    for (const name of names) {
      const seg = segmentOf(name);
      expect(seg, JSON.stringify(name)).not.toMatch(/[/\x00-\x1f\x7f]/);
      expect(['', '.', '..']).not.toContain(seg);
      expect(unsafePathReason(`/${seg}`), JSON.stringify(name)).toBeUndefined();
      expect(nameOf(seg), JSON.stringify(name)).toBe(name);
    }
  });

  it('onedrive: every restored name is one OneDrive accepts, and a path never gains or loses a level', () => {
    for (const name of names) {
      const out = driveName(name);
      expect(out, JSON.stringify(name)).not.toMatch(/["*:<>?\\|\x00-\x1f]/);
      expect(['.', '..']).not.toContain(out);
      if (name !== '' && !name.includes('/')) {
        expect(drivePathOf('/Restore', `/${encodeSegment(name)}`).split('/').length).toBe(3);
      }
    }
  });

  it('imap: a mailbox path never splits or merges levels on the destination delimiter', () => {
    for (const delimiter of ['/', '.', undefined]) {
      for (const name of names.filter((n) => n !== '')) {
        const segments = [name, 'Sub'];
        const mailbox = segmentsToMailbox(segments, delimiter);
        if (delimiter) expect(mailbox.split(delimiter), `${JSON.stringify(name)} with ${delimiter}`).toHaveLength(2);
      }
      for (const name of names.filter((n) => n !== '' && !n.includes('/'))) {
        const path = mailboxToPath(name, '/');
        expect(unsafePathReason(path), JSON.stringify(name)).toBeUndefined();
        expect(pathSegments(path), JSON.stringify(name)).toEqual([name]);
      }
    }
  });

  it('caldav: a resource name is one clean segment and maps back to the server name', () => {
    for (const name of names.filter((n) => n !== '' && n !== '.' && n !== '..' && !n.includes('/'))) {
      const file = resourceName(new URL(`https://dav.example/cal/${encodeURIComponent(name)}`), 'caldav');
      expect(unsafePathReason(`/${file}`), JSON.stringify(name)).toBeUndefined();
      expect(serverNameOf(file), JSON.stringify(name)).toBe(decodeSegment(file));
      expect(serverNameOf(file).endsWith('.ics')).toBe(true);
    }
  });
});
