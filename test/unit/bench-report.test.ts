// bench/report.ts processUsage and resetPeakRss: a process's peak RSS per phase, and its file-backed share.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { processUsage, resetPeakRss } from '../../bench/report.ts';

const MiB = 1024 * 1024;

/** A Node child that holds 64 MiB of touched memory, frees it (with a GC), then waits for stdin to end. */
const CHILD = `
let big = Buffer.alloc(64 * 1024 * 1024, 1);
process.stdout.write('big\\n');
process.stdin.once('data', () => {
  big = undefined;
  globalThis.gc();
  process.stdout.write('freed\\n');
});
process.stdin.on('end', () => process.exit(0));
`;

describe.skipIf(process.platform !== 'linux')('bench report: process usage', () => {
  it('resetPeakRss starts a new peak at the current RSS, and rssFile reports the file-backed pages', async () => {
    const child = spawn(process.execPath, ['--expose-gc', '-e', CHILD], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const lines = child.stdout.setEncoding('utf8');
      await once(lines, 'data');
      const whileBig = processUsage(child.pid);
      expect(whileBig.rss).toBeGreaterThan(64 * MiB);
      expect(whileBig.rssFile).toBeGreaterThan(0);
      expect(whileBig.rssFile).toBeLessThan(whileBig.rss);

      child.stdin.write('free\n');
      await once(lines, 'data');
      // The peak is still the whole life's until it is reset.
      expect(processUsage(child.pid).rss).toBeGreaterThan(64 * MiB);
      expect(resetPeakRss(child.pid)).toBe(true);
      const afterReset = processUsage(child.pid);
      expect(afterReset.rss).toBeLessThan(whileBig.rss - 32 * MiB);
    } finally {
      child.stdin.end();
      if (child.exitCode === null) await once(child, 'exit');
    }
  });

  it('answers NaN and refuses a reset without a pid', () => {
    expect(processUsage(undefined)).toEqual({ cpu: NaN, rss: NaN, rssFile: NaN });
    expect(resetPeakRss(undefined)).toBe(false);
  });
});
