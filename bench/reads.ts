/**
 * npm run bench:reads — reading the tables back over HTTP at 10,000,000 hires.
 *
 *  1. Generates the hires in PostgreSQL with generate_series (the same data as bench:analytics),
 *     in its own database `hr_bench_reads`, reused on the next run unless --fresh.
 *  2. Starts a real server process (`main.ts --api`) on it.
 *  3. p50/p99 of the first, a middle and the last page (limit 100), BENCH_PAGE_REQUESTS each
 *     (default 200) after 20 warm-up requests, without a filter and with ?department_id=.
 *  4. The full CSV export (GET /hired_employees?format=csv, read by curl) in rows/s, beside
 *     `psql -c "\copy (SELECT …) to stdout"` of the same SELECT, same run, both into `wc -l`
 *     (the row counts must agree); the better of BENCH_CSV_RUNS (default 2) runs each. Also with
 *     the department filter, and psql's copy of the bare table for scale. The server's peak RSS.
 *
 * Goals: every page p99 < 20 ms; CSV export >= 0.5x psql. Settings: BENCH_PG_URL, BENCH_REDIS_URL,
 * BENCH_ROWS (default 10000000), BENCH_PAGE_REQUESTS, BENCH_CSV_RUNS, BENCH_DEPARTMENT (default 7).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createPool, ensureDatabase } from '../core/db.js';
import { migrate } from '../core/migrate.js';
import { TABLES } from '../core/tables.js';
import { createRedis } from '../jobs/redis.js';
import { exportSelect, type Selection } from '../tables/index.js';
import { dbUrl, percentile, REDIS_URL, startServer, type Server } from './support.js';

const env = process.env;
const ROWS = Number(env.BENCH_ROWS ?? 10_000_000);
const PAGE_REQUESTS = Number(env.BENCH_PAGE_REQUESTS ?? 200);
const CSV_RUNS = Number(env.BENCH_CSV_RUNS ?? 2);
const DEPARTMENT = Number(env.BENCH_DEPARTMENT ?? 7);
const FRESH = process.argv.includes('--fresh');
const LIMIT = 100;
const QUEUE_PREFIX = `bench-reads-${process.pid}`;
const URL_ = dbUrl('hr_bench_reads');
const HIRES = TABLES.hired_employees;

const say = (s: string) => process.stdout.write(`${s}\n`);
const ms = (v: number) => `${v.toFixed(v < 10 ? 2 : 1)} ms`;
const n = (v: number) => Math.round(v).toLocaleString('en-US');

async function generate(pool: pg.Pool): Promise<void> {
  await pool.query('CREATE TABLE IF NOT EXISTS bench_generated (rows bigint NOT NULL)');
  const { rows } = await pool.query<{ rows: number }>('SELECT rows FROM bench_generated');
  if (!FRESH && rows[0]?.rows === ROWS) {
    say(`reusing ${n(ROWS)} hires already in hr_bench_reads (pass --fresh to regenerate)`);
    return;
  }
  const t = performance.now();
  const c = await pool.connect();
  try {
    // No FK checks and no change capture: this is bench data, written once.
    await c.query('SET session_replication_role = replica');
    await c.query('TRUNCATE hired_employees, departments, jobs');
    await c.query(`INSERT INTO departments SELECT i, (ARRAY['Support','Engineering','Human Resources','Services','Business Development',
      'Research and Development','Marketing','Sales','Legal','Accounting','Training','Product Management'])[i] FROM generate_series(1, 12) i`);
    await c.query(`INSERT INTO jobs SELECT i, 'Job title ' || i FROM generate_series(1, 183) i`);
    // As bench:analytics: spread over 2019..2023 (UTC), every 10th with microseconds; departments
    // skewed (low ids hire more), jobs spread.
    await c.query(
      `INSERT INTO hired_employees
       SELECT i, 'Employee ' || i,
              timestamptz '2019-01-01 00:00:00+00' + ((i::bigint * 7919) % (5 * 365 * 86400)) * interval '1 second'
                + CASE WHEN i % 10 = 0 THEN (i % 999983) * interval '1 microsecond' ELSE interval '0' END,
              1 + floor(12 * power(((i::bigint * 2654435761) % 1000003) / 1000003.0, 1.6))::int, 1 + ((i * 17) % 211) % 183
         FROM generate_series(1, $1) i`,
      [ROWS],
    );
    await c.query('TRUNCATE warehouse_changes');
    await c.query('DELETE FROM bench_generated');
    await c.query('INSERT INTO bench_generated VALUES ($1)', [ROWS]);
  } finally {
    await c.query('RESET session_replication_role').catch(() => {});
    c.release();
  }
  await pool.query('VACUUM ANALYZE hired_employees');
  say(`generated ${n(ROWS)} hires in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}

interface PageBody {
  rows: { id: number }[];
  next: string | null;
}

async function pageLatency(url: string): Promise<{ sorted: number[]; body: PageBody }> {
  let body = (await (await fetch(url)).json()) as PageBody;
  for (let i = 0; i < 19; i++) await (await fetch(url)).arrayBuffer(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < PAGE_REQUESTS; i++) {
    const t = performance.now();
    const res = await fetch(url);
    body = (await res.json()) as PageBody;
    times.push(performance.now() - t);
    if (res.status !== 200) throw new Error(`${url} answered ${res.status}`);
  }
  return { sorted: times.sort((a, b) => a - b), body };
}

/**
 * Runs a command whose stdout is CSV with a header line into `wc -l`: seconds and data rows.
 * Both sides of the comparison are read the same way, by a native client into a line count,
 * so neither pays for a Node process parsing on the same two cores.
 */
async function timeRows(cmd: string, args: string[]): Promise<{ seconds: number; rows: number }> {
  const started = performance.now();
  const source = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const wc = spawn('wc', ['-l'], { stdio: [source.stdout, 'pipe', 'inherit'] });
  let out = '';
  wc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [[code]] = await Promise.all([once(source, 'exit'), once(wc, 'exit')]);
  if (code !== 0) throw new Error(`${cmd} exited with ${String(code)}`);
  return { seconds: (performance.now() - started) / 1000, rows: Number(out.trim()) - 1 };
}

const httpExport = (url: string) => timeRows('curl', ['-sS', '--fail', url]);
const psqlExport = (select: string) =>
  timeRows('psql', [URL_, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', `\\copy (${select}) to stdout with (format csv, header)`]);

async function lastCursor(pool: pg.Pool, filter: string, values: number[]): Promise<number> {
  const { rows } = await pool.query<{ id: number }>(
    `SELECT id FROM hired_employees ${filter} ORDER BY id DESC LIMIT 1 OFFSET ${LIMIT}`,
    values,
  );
  return rows[0]!.id;
}

async function pages(server: Server, pool: pg.Pool): Promise<boolean> {
  let ok = true;
  say(`\npages of ${LIMIT} over HTTP, ${PAGE_REQUESTS} requests each (goal p99 < 20 ms):`);
  const cases = [
    { label: 'no filter', query: '', filter: '', values: [] as number[] },
    { label: `department_id=${DEPARTMENT}`, query: `department_id=${DEPARTMENT}&`, filter: 'WHERE department_id = $1', values: [DEPARTMENT] },
  ];
  for (const c of cases) {
    const positions = [
      { name: 'first', after: undefined as number | undefined },
      { name: 'middle', after: Math.floor(ROWS / 2) },
      { name: 'last', after: await lastCursor(pool, c.filter, c.values) },
    ];
    for (const p of positions) {
      const url = `${server.base}/hired_employees?${c.query}limit=${LIMIT}${p.after === undefined ? '' : `&after=${p.after}`}`;
      const { sorted, body } = await pageLatency(url);
      const p99 = percentile(sorted, 99);
      const shapeOk = body.rows.length === LIMIT && (p.name === 'last' ? body.next === null : body.next !== null);
      if (!shapeOk) ok = false;
      say(`  ${c.label.padEnd(16)} ${p.name.padEnd(6)}  p50 ${ms(percentile(sorted, 50)).padStart(8)}  p99 ${ms(p99).padStart(8)}` +
        `${p99 < 20 ? '' : '  (over the goal)'}${shapeOk ? '' : '  WRONG PAGE SHAPE'}`);
    }
  }
  return ok;
}

async function exports(server: Server): Promise<void> {
  say(`\nCSV export over HTTP vs psql \\copy of the same SELECT (best of ${CSV_RUNS}; goal >= 0.5x):`);
  const cases: { label: string; query: string; sel: Selection }[] = [
    { label: 'all hires', query: '', sel: {} },
    { label: `department_id=${DEPARTMENT}`, query: `&department_id=${DEPARTMENT}`, sel: { filter: { departmentId: DEPARTMENT } } },
  ];
  for (const c of cases) {
    const select = exportSelect(HIRES, c.sel);
    let http = Infinity;
    let psql = Infinity;
    let rows = 0;
    for (let i = 0; i < CSV_RUNS; i++) {
      const h = await httpExport(`${server.base}/hired_employees?format=csv${c.query}`);
      const p = await psqlExport(select);
      if (h.rows !== p.rows) throw new Error(`the export gave ${h.rows} rows, psql ${p.rows}`);
      http = Math.min(http, h.seconds);
      psql = Math.min(psql, p.seconds);
      rows = h.rows;
    }
    say(`  ${c.label.padEnd(16)} ${n(rows)} rows  HTTP ${http.toFixed(2)} s = ${n(rows / http)} rows/s` +
      `  psql ${psql.toFixed(2)} s = ${n(rows / psql)} rows/s  => ${(psql / http).toFixed(2)}x`);
    if (c.label === 'all hires') {
      // For scale: the table as PostgreSQL prints it, without the ISO 8601 UTC rendering of datetime.
      const raw = await timeRows('psql', [URL_, '-X', '-q', '-c', '\\copy hired_employees to stdout with (format csv, header)']);
      say(`  ${''.padEnd(16)} (psql \\copy of the bare table, datetime as PostgreSQL prints it: ${raw.seconds.toFixed(2)} s` +
        ` = ${n(raw.rows / raw.seconds)} rows/s; the HTTP export => ${(raw.seconds / http).toFixed(2)}x)`);
    }
  }
  say(`  server peak RSS ${server.peakRssMb().toFixed(0)} MB`);
}

async function main(): Promise<void> {
  await ensureDatabase(URL_);
  const pool = createPool(URL_, 2, 'bench-reads');
  const dataDir = await mkdtemp(path.join(tmpdir(), 'hr-bench-reads-'));
  let server: Server | undefined;
  try {
    await migrate(pool);
    say(`bench:reads — ${n(ROWS)} hires; the machine may be shared, so read the ratios of one run together\n`);
    await generate(pool);
    server = await startServer(
      { DATABASE_URL: URL_, REDIS_URL, DATA_DIR: dataDir, QUEUE_PREFIX, API_KEY: '' },
      ['--api'],
    );
    // Timings are reported against their goals; only a wrong answer fails the run.
    if (!(await pages(server, pool))) process.exitCode = 1;
    say(`  server peak RSS after the pages ${server.peakRssMb().toFixed(0)} MB`);
    await exports(server);
  } finally {
    await server?.stop();
    await pool.end();
    await rm(dataDir, { recursive: true, force: true });
    const redis = createRedis(REDIS_URL);
    const keys = await redis.keys(`${QUEUE_PREFIX}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
