// Standalone config for the caldav tests (`npx vitest run --config test/integrations/caldav/vitest.config.ts`); the root config's `caldav` project runs the same files.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('../../..', import.meta.url)),
  test: {
    include: ['test/integrations/caldav/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
