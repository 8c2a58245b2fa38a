import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig, type Config } from '../../core/config.js';
import type { Services } from '../../jobs/index.js';
import { createPool } from '../../core/db.js';
import { startEmbeddedPostgres } from '../../pg/embedded.js';
import { createLogger } from '../../core/log.js';
import { migrate } from '../../core/migrate.js';
import { createQueues } from '../../jobs/index.js';
import { createRedis } from '../../jobs/redis.js';

/** The local servers the suites talk to; override with TEST_PG_URL / TEST_REDIS_URL. */
export const PG_ADMIN_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';


export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

export function databaseUrl(name: string): string {
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * HR_TEST_EMBEDDED=1 runs the suites against the embedded stand-ins `npm start` uses without
 * DATABASE_URL and REDIS_URL: PostgreSQL in PGlite, jobs in-process (jobs/local-queue.ts).
 * vitest.config.ts runs the API-level suites both ways.
 */
export const EMBEDDED = process.env.HR_TEST_EMBEDDED === '1';

/** An in-memory embedded PostgreSQL of the suite's own; `drop` stops it. */
async function embeddedDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const pg = await startEmbeddedPostgres({});
  return { url: pg.url, drop: () => pg.stop() };
}

/** A brand-new, empty database (no migrations); `drop` removes it. */
export async function freshDatabase(): Promise<{ name: string; url: string; drop: () => Promise<void> }> {
  const name = uniqueName('hrtest');
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  return {
    name,
    url: databaseUrl(name),
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

export interface TestServices extends Services {
  /** Removes the database, the queue keys and the data folder. */
  cleanup(): Promise<void>;
}

/**
 * Everything a suite needs, isolated: its own migrated database, its own queue prefix in Redis
 * (or in-process queues, with `embedded`), its own DATA_DIR. Settings can be overridden like
 * environment variables.
 */
export async function createTestServices(
  env: Record<string, string> = {},
  { embedded = EMBEDDED }: { embedded?: boolean } = {},
): Promise<TestServices> {
  const db = embedded ? await embeddedDatabase() : await freshDatabase();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'hrtest-'));
  const queuePrefix = uniqueName('hrq');
  const config: Config = loadConfig({
    ...(embedded ? {} : { DATABASE_URL: db.url, REDIS_URL }),
    DATA_DIR: dataDir,
    QUEUE_PREFIX: queuePrefix,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...env,
  });
  const pool = createPool(db.url, 5);
  await migrate(pool);
  const log = createLogger(config.LOG_LEVEL);
  const queues = createQueues(config, log);
  return {
    config,
    pool,
    log,
    queues,
    async cleanup() {
      await queues.close();
      await pool.end().catch(() => {});
      if (config.REDIS_URL) {
        const redis = createRedis(config.REDIS_URL);
        const keys = await redis.keys(`${queuePrefix}:*`);
        if (keys.length > 0) await redis.del(...keys);
        await redis.quit().catch(() => {});
      }
      await db.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
