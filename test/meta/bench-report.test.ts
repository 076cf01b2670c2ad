// bench/run.ts and its output convention: figure lines, ratios, the generated section of docs/BENCHMARKS.md.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchEnv, benchScripts, END, ranText, scriptSection, sectionFigures, START, summaryTable, withSection } from '../../bench/run.ts';
import { figureLine, parseFigures, ratioText } from '../../bench/report.ts';
import { exeFileName, hostTarget } from '../../scripts/build-lib.ts';

describe('bench report: npm run bench', () => {
  it('runs every benchmark script, sdk first, and none of the helpers', () => {
    const scripts = benchScripts(join(import.meta.dirname, '..', '..', 'bench'));
    expect(scripts[0]).toBe('sdk.ts');
    expect(scripts).toEqual(expect.arrayContaining(['s3.ts', 'gdrive.ts', 'onedrive.ts', 'imap.ts', 'caldav.ts']));
    expect(scripts).not.toContain('run.ts');
    expect(scripts).not.toContain('report.ts');
  });

  it('reads BENCH figure lines among other output and reports malformed ones', () => {
    const out = [
      '| a | table |',
      figureLine({ integration: 's3', measure: 'Put throughput', value: 120, unit: 'MB/s', limit: 150 }),
      'BENCH {"integration":"s3"}',
      'BENCH not json',
      figureLine({ integration: 'imap', measure: 'cold start', value: 200, unit: 'ms', limit: 100 }),
    ].join('\n');
    const { figures, problems } = parseFigures(out);
    expect(figures.map((f) => f.measure)).toEqual(['Put throughput', 'cold start']);
    expect(problems).toHaveLength(2);
    // Higher is better for rates, lower is better for times and sizes: the ratio is always connector / practical limit.
    expect(ratioText(figures[0] as (typeof figures)[0])).toBe('0.80');
    expect(ratioText(figures[1] as (typeof figures)[0])).toBe('0.50');
    expect(summaryTable(figures)).toContain('| s3 | Put throughput | 120 MB/s | 150 MB/s | 0.80 |');
  });

  it('keeps a script section\'s figures inside it, so a later run of other scripts still summarises them', () => {
    const line = figureLine({ integration: 'imap', measure: 'backup', value: 281, unit: 'messages/s', limit: 3121 });
    const section = scriptSection({ script: 'imap.ts', ok: true, exit: '0', seconds: 3, ended: '2026-12-07 10:40', output: `| a | b |\n|---|---|\n${line}\nnote\n` });
    expect(section).not.toMatch(/^BENCH /m);
    expect(section.split('\n')[0]).toBe('### `bench/imap.ts` — ok, 3 s, ended 2026-12-07 10:40 UTC');
    expect(parseFigures(sectionFigures(section)).figures).toEqual([{ integration: 'imap', measure: 'backup', value: 281, unit: 'messages/s', limit: 3121 }]);
    expect(sectionFigures('### `bench/x.ts` — ok, 1 s\n\nno figures')).toBe('');
  });

  it('says which scripts the run measured and which sections it kept', () => {
    expect(ranText(['s3.ts'], ['s3.ts'])).toBe('This run: s3.ts.');
    expect(ranText(['s3.ts'], ['imap.ts', 's3.ts'])).toBe('This run: s3.ts; imap.ts kept from earlier runs (each section says when it ended).');
    expect(ranText([], ['imap.ts'])).toMatch(/^This run measured only the package sizes; imap.ts kept/);
  });

  it('replaces its own section of docs/BENCHMARKS.md and leaves the hand-written sections alone', () => {
    const doc = '# Benchmarks\n\nIntro.\n\n## S3 (`bench/s3.ts`)\n\nhand-written\n';
    const once = withSection(doc, '## Latest\n\nfirst');
    expect(once).toContain(`${START}\n## Latest\n\nfirst\n${END}`);
    expect(once.indexOf(START)).toBeLessThan(once.indexOf('## S3'));
    const twice = withSection(once, '## Latest\n\nsecond');
    expect(twice).not.toContain('first');
    expect(twice).toContain('second');
    expect(twice).toContain('hand-written');
    expect(twice.split(START)).toHaveLength(2);
  });
});

describe('bench/run.ts: what the integrations\' benches run', () => {
  it('points each integration\'s bench at its built executable when one exists, and keeps a choice already made', () => {
    const root = mkdtempSync(join(tmpdir(), 'bench-env-'));
    try {
      mkdirSync(join(root, 'dist', 'imap'), { recursive: true });
      const exe = join('dist', 'imap', exeFileName('imap', hostTarget()));
      writeFileSync(join(root, exe), '');
      const env = benchEnv(root, { PATH: '/bin' });
      expect(env.IMAP_BENCH_EXE).toBe(exe);
      expect(env.CALDAV_BENCH_EXE).toBeUndefined();
      expect(env.PATH).toBe('/bin');
      expect(benchEnv(root, { IMAP_BENCH_EXE: 'elsewhere/imap' }).IMAP_BENCH_EXE).toBe('elsewhere/imap');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
