// Test projects: unit, conformance (fixture), servers, and one project per integration (`npm test -- --project s3`).
import { defineConfig } from 'vitest/config';

const INTEGRATIONS = ['s3', 'gdrive', 'onedrive', 'imap', 'caldav'];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 240_000,
    pool: 'forks',
    // The secret check fails the run if a declared secret reaches the test output or an executable's stderr.
    reporters: ['default', './test/hostile/secret-reporter.ts'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts', 'test/meta/**/*.test.ts'] } },
      { extends: true, test: { name: 'conformance', include: ['test/conformance/**/*.test.ts'] } },
      { extends: true, test: { name: 'servers', include: ['test/servers/**/*.test.ts'] } },
      { extends: true, test: { name: 'faults', include: ['test/faults/**/*.test.ts'] } },
      { extends: true, test: { name: 'hostile', include: ['test/hostile/**/*.test.ts'] } },
      ...INTEGRATIONS.map((name) => ({
        extends: true as const,
        test: { name, include: [`test/integrations/${name}/**/*.test.ts`] },
      })),
    ],
  },
});
