import { defineConfig } from 'vitest/config';

/**
 * Two runs of the suites. `server`: every suite against the PostgreSQL and Redis servers.
 * `embedded`: the API-level suites again with neither (HR_TEST_EMBEDDED=1: PGlite and in-process
 * jobs, what `npm start` uses when DATABASE_URL and REDIS_URL are unset), so both modes stay true.
 * Unit suites of code that does not depend on the mode run once.
 */
const API_LEVEL = [
  'test/smoke.test.ts',
  'test/ingest.test.ts',
  'test/loads.test.ts',
  'test/analytics.challenge.test.ts',
  'test/analytics.loads.test.ts',
  'test/warehouse.refresh.test.ts',
  'test/warehouse.incremental.test.ts',
  'test/backups.test.ts',
  'test/backups-files.test.ts',
  'test/backups-challenge.test.ts',
  'test/backups-schedule.test.ts',
  'test/dashboard.browser.test.ts',
  'test/edge-values.test.ts',
  'test/tables.test.ts',
  'test/retention.test.ts',
  'test/landing.test.ts',
];

export default defineConfig({
  test: {
    // Suites are isolated by database and queue prefix, so files run in parallel.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'server', include: ['test/**/*.test.ts'] } },
      { extends: true, test: { name: 'embedded', include: API_LEVEL, env: { HR_TEST_EMBEDDED: '1' } } },
    ],
  },
});
