import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { ConfigError, loadConfig, urlLabel } from '../core/config.js';
import { createPool } from '../core/db.js';
import { migrate } from '../core/migrate.js';
import { createQueues } from '../jobs/index.js';
import { createTestServices, databaseUrl, EMBEDDED, freshDatabase, REDIS_URL, uniqueName, type TestServices } from './support/services.js';

const ROOT = path.resolve(import.meta.dirname, '..');

/** What `fn` throws; undefined when it returns. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('config', () => {
  test('a missing or bad setting stops the start naming it', () => {
    expect(() => loadConfig({ PORT: 'abc' })).toThrow(ConfigError);
    // Caught here, not asserted inside a catch: a start that no longer throws fails the test.
    const err = thrown(() => loadConfig({ DATABASE_URL: 'mysql://x', REDIS_URL: 'http://x', PORT: 'abc' }));
    expect(err).toBeInstanceOf(ConfigError);
    const text = (err as ConfigError).problems.join('\n');
    expect(text).toMatch(/DATABASE_URL must be a URL starting with postgres:\/\//);
    expect(text).toMatch(/REDIS_URL must be a URL starting with redis:\/\//);
    expect(text).toMatch(/PORT/);
  });

  test('defaults are sane', () => {
    const c = loadConfig({ DATABASE_URL: 'postgres://localhost/hr', REDIS_URL: 'redis://localhost:6379' });
    expect(c.PORT).toBe(3000);
    expect(c.QUEUE_PREFIX).toBe('hr');
    expect(c.API_KEY).toBeUndefined();
    expect(path.isAbsolute(c.dirs.landing)).toBe(true);
  });

  test('REDIS_URL unset or empty means in-process jobs', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://localhost/hr' }).REDIS_URL).toBeUndefined();
    expect(loadConfig({ DATABASE_URL: 'postgres://localhost/hr', REDIS_URL: '' }).REDIS_URL).toBeUndefined();
  });

  test('a Redis URL is logged without its user or password', () => {
    expect(urlLabel('redis://admin:s3cret@cache.internal:6380/2')).toBe('redis://cache.internal:6380/2');
    expect(urlLabel('rediss://:s3cret@cache.internal')).toBe('rediss://cache.internal');
  });
});

describe('migrations', () => {
  test('run twice (and concurrently) apply once, recorded in the ledger', async () => {
    const db = await freshDatabase();
    const pools = [createPool(db.url, 2), createPool(db.url, 2)];
    try {
      const [a, b] = await Promise.all(pools.map((p) => migrate(p)));
      expect([...a!, ...b!].sort((x, y) => Number(x) - Number(y))).toEqual(a!.length ? a : b);
      expect(await migrate(pools[0]!)).toEqual([]);
      const ledger = await pools[0]!.query('SELECT version FROM schema_migrations ORDER BY version');
      expect(ledger.rows.map((r) => r.version)).toEqual((a!.length ? a : b)!);
      const tables = await pools[0]!.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`,
      );
      expect(tables.rows.map((r) => r.table_name)).toEqual(
        expect.arrayContaining(['departments', 'hired_employees', 'jobs', 'rejects', 'schema_migrations']),
      );
    } finally {
      await Promise.all(pools.map((p) => p.end()));
      await db.drop();
    }
  });
});

describe('health', () => {
  let s: TestServices;
  beforeAll(async () => {
    s = await createTestServices();
  });
  afterAll(() => s.cleanup());

  test('without Redis, the in-process jobs answer for it and are never down', async () => {
    const t = await createTestServices({}, { embedded: true });
    try {
      const res = await createApp(t).request('/health');
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({
        status: 'ok',
        redis: { status: 'ok', embedded: true, detail: 'in-process jobs (REDIS_URL unset)' },
      });
    } finally {
      await t.cleanup();
    }
  });

  test('503 naming Redis when it is down', async () => {
    const deadRedis = createQueues({ ...s.config, REDIS_URL: 'redis://127.0.0.1:1' }, s.log);
    try {
      const res = await createApp({ ...s, queues: deadRedis }).request('/health');
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'degraded', down: ['redis'], postgres: { status: 'ok' } });
    } finally {
      await deadRedis.close();
    }
  });

  test('503 naming PostgreSQL when it is down', async () => {
    const deadPool = createPool('postgres://postgres@127.0.0.1:1/none', 1);
    try {
      const res = await createApp({ ...s, pool: deadPool }).request('/health');
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ down: ['postgres'], redis: { status: 'ok' } });
    } finally {
      await deadPool.end();
    }
  });
});

describe('the real server process', () => {
  test('creates its database, migrates, serves, ingests, and stops cleanly on SIGTERM', async () => {
    const dbName = uniqueName('hrtest');
    const dataDir = await mkdtemp(path.join(tmpdir(), 'hre2e-'));
    const queuePrefix = uniqueName('hrq');
    const child = spawn(process.execPath, ['--import', 'tsx', 'main.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: databaseUrl(dbName),
        // Empty means unset: the jobs then run in the server process.
        REDIS_URL: EMBEDDED ? '' : REDIS_URL,
        DATA_DIR: dataDir,
        QUEUE_PREFIX: queuePrefix,
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening" line; stderr: ${stderr}`)), 20_000);
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        for (const line of chunk.split('\n').filter(Boolean)) {
          lines.push(line);
          const entry = JSON.parse(line) as { port?: number; msg: string };
          if (entry.msg.startsWith('listening')) {
            clearTimeout(timer);
            resolve(entry.port!);
          }
        }
      });
    });
    try {
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/health`)).status).toBe(200);
      const res = await fetch(`${base}/ingest/departments`, {
        method: 'POST',
        headers: { 'content-type': 'text/csv' },
        body: '1,Sales\n2,\n',
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBeTruthy();
      expect(await res.json()).toMatchObject({ inserted: 1, rejected: 1 });
      // A job runs: on the BullMQ worker, or in this one process without Redis.
      const refresh = await fetch(`${base}/warehouse/refresh?wait=true`, { method: 'POST' });
      expect(refresh.status).toBe(200);
      expect(await refresh.json()).toMatchObject({ status: 'completed' });

      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
      const msgs = lines.map((l) => JSON.parse(l) as { msg: string; errors?: unknown });
      expect(msgs.map((m) => m.msg)).toEqual(
        expect.arrayContaining(['created database', 'applied migration', 'row rejected', 'request', 'stopped']),
      );
      expect(msgs.map((m) => m.msg)).toContain(
        EMBEDDED ? 'jobs: in-process (REDIS_URL unset)' : `jobs: BullMQ on ${urlLabel(REDIS_URL)}, prefix ${queuePrefix}`,
      );
      expect(msgs.find((m) => m.msg === 'row rejected')).toMatchObject({
        errors: [{ field: 'department', message: 'is required' }],
      });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      const admin = createPool(databaseUrl('postgres'), 1);
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await admin.end();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('a bad setting exits with code 2 and names it', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'main.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, DATABASE_URL: 'mysql://127.0.0.1/hr', REDIS_URL: 'redis://127.0.0.1:6379' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(stderr).toMatch(/DATABASE_URL must be a URL starting with postgres:\/\//);
  });

  test.each([
    ['--api', /--api without REDIS_URL: the jobs it queues .* would stay in this process and never run/],
    ['--worker', /--worker without REDIS_URL: no other process could give this one any jobs/],
    ['--api', /--api without DATABASE_URL: the embedded PostgreSQL lives inside one process/, { REDIS_URL: 'redis://127.0.0.1:1' }],
    ['--worker', /--worker without DATABASE_URL: the embedded PostgreSQL lives inside one process/, { REDIS_URL: 'redis://127.0.0.1:1' }],
  ])('%s alone without the shared server exits with code 2 saying why: %s', async (flag, message, env: Record<string, string> = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'main.ts', flag], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });
});
