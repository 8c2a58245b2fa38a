/**
 * npm run bench:analytics — the warehouse against PostgreSQL on 10,000,000 hires.
 *
 *  1. Generates the hires directly in PostgreSQL (generate_series; reused on the next run when the
 *     bench database already holds them, unless --fresh). Generation runs with
 *     session_replication_role = replica: no FK checks and no change capture, since the first
 *     export snapshots whole tables anyway.
 *  2. Full refresh: export all three tables to Parquet, build the DuckDB star schema, publish.
 *     Then a full rebuild of the DuckDB file from the Parquet files alone.
 *  3. Refresh after 1,000 changed rows (500 updates, 400 inserts, 100 deletes), BENCH_REFRESH_ROUNDS
 *     times: the median against the full refresh is the ratio of issue 14 (< 0.3 s, >= 50x). Then
 *     the fallback once: a reader in another process holds the older file, so the refresh copies.
 *  4. p50/p99 latency of both analytics endpoints over HTTP against a real server process
 *     (`tsx main.ts --api`), beside the same metric computed by PostgreSQL directly, same run.
 *     The answers of both are compared.
 *
 * Settings: BENCH_PG_URL (admin URL, default postgres://postgres@127.0.0.1:5432/postgres),
 * BENCH_REDIS_URL, BENCH_ROWS (default 10000000), BENCH_HTTP_REQUESTS (default 300), BENCH_PG_RUNS (default 10),
 * BENCH_REFRESH_ROUNDS (default 5).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../core/config.js';
import { createPool, ensureDatabase } from '../core/db.js';
import { createLogger } from '../core/log.js';
import { migrate } from '../core/migrate.js';
import { createRedis } from '../jobs/redis.js';
import { layoutOf } from '../warehouse/layout.js';
import { refreshWarehouse, type RefreshResult } from '../warehouse/refresh.js';
import { PG_DEPARTMENTS_ABOVE_MEAN, PG_HIRES_BY_QUARTER } from './pg-metrics.js';

const env = process.env;
const ADMIN = env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS = env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROWS = Number(env.BENCH_ROWS ?? 10_000_000);
const HTTP_REQUESTS = Number(env.BENCH_HTTP_REQUESTS ?? 300);
const PG_RUNS = Number(env.BENCH_PG_RUNS ?? 10);
const ROUNDS = Number(env.BENCH_REFRESH_ROUNDS ?? 5);
const FRESH = process.argv.includes('--fresh');
const QUEUE_PREFIX = `bench-analytics-${process.pid}`;
const YEAR = 2021;

const dbUrl = (() => {
  const u = new URL(ADMIN);
  u.pathname = '/hr_bench_analytics';
  return u.toString();
})();

const fmt = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`);
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const say = (s: string) => process.stdout.write(`${s}\n`);
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;

async function du(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(path.join(e.parentPath, e.name))).size;
  }
  return total;
}

async function generate(pool: pg.Pool): Promise<void> {
  await pool.query('CREATE TABLE IF NOT EXISTS bench_generated (rows bigint NOT NULL)');
  const { rows } = await pool.query<{ rows: number }>('SELECT rows FROM bench_generated');
  if (!FRESH && rows[0]?.rows === ROWS) {
    say(`reusing ${ROWS.toLocaleString()} hires already in hr_bench_analytics (pass --fresh to regenerate)`);
    // This run has a new, empty DATA_DIR: forget the previous run's Parquet files and change log.
    await pool.query('DELETE FROM warehouse_batches');
    await pool.query('DELETE FROM warehouse_changes');
    return;
  }
  const t = performance.now();
  const c = await pool.connect();
  try {
    await c.query(`SET session_replication_role = replica`);
    await c.query('TRUNCATE hired_employees, departments, jobs');
    await c.query(`INSERT INTO departments SELECT i, (ARRAY['Support','Engineering','Human Resources','Services','Business Development',
      'Research and Development','Marketing','Sales','Legal','Accounting','Training','Product Management'])[i] FROM generate_series(1, 12) i`);
    await c.query(`INSERT INTO jobs SELECT i, 'Job title ' || i FROM generate_series(1, 183) i`);
    // Deterministic spread over 2019..2023 (UTC); departments skewed (low ids hire more), jobs spread.
    await c.query(
      `INSERT INTO hired_employees
       SELECT i, 'Employee ' || i,
              timestamptz '2019-01-01 00:00:00+00' + ((i::bigint * 7919) % (5 * 365 * 86400)) * interval '1 second',
              1 + floor(12 * power(((i::bigint * 2654435761) % 1000003) / 1000003.0, 1.6))::int, 1 + ((i * 17) % 211) % 183
         FROM generate_series(1, $1) i`,
      [ROWS],
    );
    await c.query('DELETE FROM warehouse_changes');
    await c.query('DELETE FROM warehouse_batches');
    await c.query('DELETE FROM bench_generated');
    await c.query('INSERT INTO bench_generated VALUES ($1)', [ROWS]);
  } finally {
    await c.query('RESET session_replication_role').catch(() => {});
    c.release();
  }
  await pool.query('VACUUM ANALYZE hired_employees');
  say(`generated ${ROWS.toLocaleString()} hires in PostgreSQL in ${fmt(performance.now() - t)}`);
}

/** 1,000 changed rows: 500 updates, 400 inserts, 100 deletes, spread over the table. */
async function change1000(pool: pg.Pool, round: number): Promise<void> {
  // Ids differ from run to run (the bench database is reused), so every round changes 1,000 rows.
  round += Date.now() % 1_000_000;
  const base = (await pool.query<{ m: number }>('SELECT max(id) AS m FROM hired_employees')).rows[0]!.m + 1;
  await pool.query(
    `UPDATE hired_employees SET department_id = 1 + (department_id % 12), datetime = datetime + interval '40 days'
      WHERE id IN (SELECT id FROM hired_employees WHERE id IN (SELECT 1 + ((g * 104729 + $1 * 7) % $2) FROM generate_series(1, 600) g) LIMIT 500)`,
    [round, ROWS],
  );
  await pool.query(
    `INSERT INTO hired_employees SELECT $1 + g, 'New hire ' || g, timestamptz '2021-06-15 12:00:00+00' + g * interval '1 hour', 1 + g % 12, 1 + g % 183
       FROM generate_series(0, 399) g`,
    [base],
  );
  await pool.query(
    `DELETE FROM hired_employees
      WHERE id IN (SELECT id FROM hired_employees WHERE id IN (SELECT 1 + ((g * 1299709 + $1 * 13) % $2) FROM generate_series(1, 150) g) LIMIT 100)`,
    [round, ROWS],
  );
}

async function startServer(config: { DATA_DIR: string }, port: number): Promise<() => void> {
  const tsx = path.join(process.cwd(), 'node_modules', '.bin', 'tsx');
  const child = spawn(tsx, ['main.ts', '--api'], {
    env: { ...env, PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: dbUrl, REDIS_URL: REDIS, DATA_DIR: config.DATA_DIR,
      QUEUE_PREFIX, LOG_LEVEL: 'warn', API_KEY: '' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return () => child.kill('SIGTERM');
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGTERM');
  throw new Error('the API server did not start');
}

/** A process that opens `file` read-only and keeps it open until the returned function is called. */
async function holdOpen(file: string): Promise<() => void> {
  const script = `const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(process.argv[1], { access_mode: 'READ_ONLY' });
    await (await db.connect()).run('SELECT count(*) FROM warehouse_info');
    console.log('held'); process.stdin.on('end', () => process.exit(0)).resume();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, file], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the reader process exited with ${code}`)));
  });
  return () => child.stdin.end();
}

async function httpLatency(url: string, n: number): Promise<{ ms: number[]; body: unknown }> {
  let body: unknown;
  for (let i = 0; i < 20; i++) body = await (await fetch(url)).json(); // warm-up
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const res = await fetch(url);
    body = await res.json();
    ms.push(performance.now() - t);
  }
  return { ms, body };
}

async function pgLatency(pool: pg.Pool, sql: string, n: number): Promise<{ ms: number[]; rows: unknown[] }> {
  let rows: unknown[] = (await pool.query(sql, [YEAR])).rows; // warm-up
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    rows = (await pool.query(sql, [YEAR])).rows;
    ms.push(performance.now() - t);
  }
  return { ms, rows };
}

async function main(): Promise<void> {
  await ensureDatabase(dbUrl);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'hr-bench-analytics-'));
  const config = loadConfig({ DATABASE_URL: dbUrl, REDIS_URL: REDIS, DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
  const pool = createPool(dbUrl, 4, 'bench-analytics');
  const log = createLogger('warn');
  await migrate(pool);
  const deps = { config, pool, log };
  say(`bench:analytics — ${ROWS.toLocaleString()} hires; machine shared with other benchmarks, so compare ratios of the same run\n`);
  try {
    await generate(pool);

    const full = await refreshWarehouse(deps);
    say(`full refresh (export 3 tables to Parquet + build DuckDB + publish): ${fmt(full.ms.total)}` +
      `  [export ${fmt(full.ms.export)}, build+publish ${fmt(full.ms.publish)}]`);
    const rebuild = await refreshWarehouse(deps, { full: true });
    say(`full DuckDB rebuild from Parquet only: ${fmt(rebuild.ms.total)}`);
    const layout = layoutOf(config.dirs.warehouse);
    say(`sizes: hr.duckdb ${mb((await stat(layout.duckdb)).size)}, Parquet ${mb(await du(layout.parquet))}`);

    const incr: RefreshResult[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await change1000(pool, round);
      const r = await refreshWarehouse(deps);
      if (r.build !== 'incremental') throw new Error(`expected an incremental build, got ${r.build}`);
      incr.push(r);
      say(`refresh after 1,000 changed rows #${round + 1}: ${fmt(r.ms.total)}  [export ${fmt(r.ms.export)}` +
        ` (${r.exported.map((e) => `${e.rows} rows, ${e.deleted} deleted`).join('; ')}), publish ${fmt(r.ms.publish)} (${r.via})]`);
    }
    const incrMedian = pct(incr.map((r) => r.ms.total), 50);
    const ratio = full.ms.total / incrMedian;
    say(`=> refresh after 1,000 changes ${fmt(incrMedian)} (median of ${ROUNDS}) vs full refresh ${fmt(full.ms.total)}: ${ratio.toFixed(1)}x faster` +
      ` (vs DuckDB-only rebuild ${fmt(rebuild.ms.total)}: ${(rebuild.ms.total / incrMedian).toFixed(1)}x)`);
    say(`   target < 0.3 s and >= 50x: ${incrMedian < 300 && ratio >= 50 ? 'met' : 'NOT met'}`);

    // The fallback: a reader in another process still holds the file the next refresh would
    // rewrite, so that refresh copies the published file instead (what every refresh did before).
    const holder = await holdOpen(layout.duckdb);
    try {
      await change1000(pool, ROUNDS);
      const moved = await refreshWarehouse(deps);
      await change1000(pool, ROUNDS + 1);
      const copied = await refreshWarehouse(deps);
      say(`refresh while a reader holds the older file: ${fmt(copied.ms.total)} (${copied.via}; publish ${fmt(copied.ms.publish)})` +
        ` — the one before it ${fmt(moved.ms.total)} (${moved.via})\n`);
    } finally {
      holder();
    }

    const port = 20_000 + (process.pid % 20_000);
    const stop = await startServer(config, port);
    try {
      const endpoints = [
        { name: 'hires-by-quarter', sql: PG_HIRES_BY_QUARTER },
        { name: 'departments-above-mean', sql: PG_DEPARTMENTS_ABOVE_MEAN },
      ];
      for (const e of endpoints) {
        const http = await httpLatency(`http://127.0.0.1:${port}/analytics/${e.name}?year=${YEAR}`, HTTP_REQUESTS);
        const direct = await pgLatency(pool, e.sql, PG_RUNS);
        const same = JSON.stringify(http.body) === JSON.stringify(direct.rows);
        const h50 = pct(http.ms, 50);
        const p50 = pct(direct.ms, 50);
        say(`${e.name} (year ${YEAR}, ${(http.body as unknown[]).length} rows, answers ${same ? 'identical' : 'DIFFER'}):`);
        say(`  warehouse over HTTP  p50 ${fmt(h50)}  p99 ${fmt(pct(http.ms, 99))}  (${HTTP_REQUESTS} requests)`);
        say(`  PostgreSQL directly  p50 ${fmt(p50)}  p99 ${fmt(pct(direct.ms, 99))}  (${PG_RUNS} runs)`);
        say(`  => ${(p50 / h50).toFixed(0)}x faster at p50 (target >= 20x)`);
        if (!same) process.exitCode = 1;
      }
    } finally {
      stop();
      const redis = createRedis(REDIS);
      const keys = await redis.keys(`${QUEUE_PREFIX}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
  } finally {
    await pool.end();
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
