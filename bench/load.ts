/**
 * `npm run bench:load -- [--rows 1000000] [--phases empty,same,changed,copy] [--chunk N] [--heap-mb N] [--tsx]`
 *
 * Loads a generated hired_employees file (and its departments and jobs) through the real service:
 * the HTTP app in this process, one worker process doing the work, a fresh database. The worker
 * runs compiled (`dist/main.js --worker`, rebuilt first when stale), as `npm start` runs it;
 * `--tsx` runs the sources instead. Phases, each timed from the load's own startedAt/finishedAt:
 *   empty    into the empty table (inserts)
 *   same     the same file again (upsert path; every row unchanged, nothing rewritten)
 *   changed  a file with the same ids and other values (upsert path; every row updated)
 *   copy     `psql \copy` of the same file into a fresh database with the same PK+FK schema
 * then waits for the warehouse refresh the loads asked for (it runs in the worker too), and prints
 * rows/s, ratios to \copy, and the worker's peak RSS (VmHWM).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createApp } from '../api/app.js';
import { loadConfig, serverDatabaseUrl } from '../core/config.js';
import { createPool } from '../core/db.js';
import { createLogger } from '../core/log.js';
import { migrate } from '../core/migrate.js';
import { createQueues } from '../jobs/index.js';
import { generate } from '../loads/sample.js';
// @ts-expect-error plain JavaScript, no declarations
import { build, isStale } from '../scripts/build.mjs';
import { adminQuery, dbUrl as sharedDbUrl } from './support.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    phases: { type: 'string', default: 'empty,same,changed,copy' },
    chunk: { type: 'string' },
    'bad-share': { type: 'string', default: '0' },
    /** Caps the worker's V8 heap (MB): a load that finishes under a small cap needs no more memory, whatever RSS V8 lets itself grow to without one. */
    'heap-mb': { type: 'string' },
    /** Runs the worker from the TypeScript sources under tsx instead of compiled dist/ (as `npm start` runs it). */
    tsx: { type: 'boolean', default: false },
    pg: { type: 'string', default: process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    redis: { type: 'string', default: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' },
  },
});
const rows = Number(values.rows);
const badShare = Number(values['bad-share']);
const phases = new Set(values.phases.split(','));
const root = path.resolve(import.meta.dirname, '..');
const stamp = Date.now().toString(36);

const dbUrl = (name: string) => sharedDbUrl(name, values.pg);
const admin = (sql: string) => adminQuery(sql, values.pg);

const dataDir = await mkdtemp(path.join(tmpdir(), 'bench-load-'));
const dbName = `bench_load_${stamp}`;
const copyDb = `bench_copy_${stamp}`;

type Load = {
  status: string;
  rowsRead: number;
  inserted: number;
  updated: number;
  unchanged: number;
  rejected: number;
  startedAt: string;
  finishedAt: string;
  error: string | null;
};

try {
  const gen = path.join(dataDir, 'landing', 'gen');
  let t = performance.now();
  await generate({ rows, out: gen, seed: 1, badShare });
  if (phases.has('changed')) await generate({ rows, out: path.join(gen, 'changed'), seed: 2, badShare });
  console.log(`generated ${rows} rows (bad share ${badShare}) in ${((performance.now() - t) / 1000).toFixed(1)} s under ${gen}`);

  await admin(`CREATE DATABASE ${dbName}`);
  const env = {
    DATABASE_URL: dbUrl(dbName),
    REDIS_URL: values.redis,
    DATA_DIR: dataDir,
    QUEUE_PREFIX: `bench_${stamp}`,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    ...(values.chunk ? { LOAD_CHUNK_ROWS: values.chunk } : {}),
    // The refresh's DuckDB settings, when set for the bench.
    ...Object.fromEntries(['WAREHOUSE_MEMORY_LIMIT', 'WAREHOUSE_THREADS'].flatMap((k) => (process.env[k] ? [[k, process.env[k]]] : []))),
  };
  const config = loadConfig(env);
  const pool = createPool(serverDatabaseUrl(config), 4);
  await migrate(pool);
  const log = createLogger('silent');
  const queues = createQueues(config, log);
  const app = createApp({ config, pool, queues, log });

  const heapCap = values['heap-mb'] ? [`--max-old-space-size=${Number(values['heap-mb'])}`] : [];
  if (!values.tsx && (isStale as () => boolean)()) {
    console.log('building dist/ (npm run build) ...');
    (build as () => void)();
  }
  const entry = values.tsx ? ['--import', 'tsx', 'main.ts'] : ['dist/main.js'];
  const worker = spawn(process.execPath, [...heapCap, ...entry, '--worker'], {
    cwd: root,
    // NODE_OPTIONS passes through, e.g. a preload that samples the worker's memory.
    env: { PATH: process.env.PATH, ...(process.env.NODE_OPTIONS ? { NODE_OPTIONS: process.env.NODE_OPTIONS } : {}), ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const peakRss = async () => {
    const status = await readFile(`/proc/${worker.pid}/status`, 'utf8');
    return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  };
  const load = async (table: string, file: string): Promise<Load & { seconds: number }> => {
    const res = await app.request('/loads?wait=true', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ table, path: file }),
    });
    const l = (await res.json()) as Load;
    if (l.status !== 'succeeded') throw new Error(`load of ${file} ended ${l.status}: ${l.error}`);
    return { ...l, seconds: (Date.parse(l.finishedAt) - Date.parse(l.startedAt)) / 1000 };
  };

  await sleep(1500); // the worker process starting
  await load('departments', 'gen/departments.csv');
  await load('jobs', 'gen/jobs.csv');
  const rates: Record<string, number> = {};
  const run = async (name: string, file: string) => {
    const l = await load('hired_employees', file);
    rates[name] = rows / l.seconds;
    console.log(
      `${name.padEnd(8)} ${l.seconds.toFixed(2).padStart(7)} s ${Math.round(rates[name]!).toLocaleString('en').padStart(10)} rows/s` +
        `  (read ${l.rowsRead}, inserted ${l.inserted}, updated ${l.updated}, unchanged ${l.unchanged}, rejected ${l.rejected})` +
        `  worker peak RSS so far ${(await peakRss()).toFixed(0)} MB`,
    );
  };
  if (phases.has('empty') || phases.has('same') || phases.has('changed')) await run('empty', 'gen/hired_employees.csv');
  if (phases.has('same')) await run('same', 'gen/hired_employees.csv');
  if (phases.has('changed')) await run('changed', 'gen/changed/hired_employees.csv');
  // The refresh a load asks for runs in the worker too: its memory belongs to the load's peak.
  t = performance.now();
  const refresh = await app.request('/warehouse/refresh?wait=true', { method: 'POST' });
  if (refresh.status !== 200) throw new Error(`refresh answered ${refresh.status}: ${await refresh.text()}`);
  console.log(`refresh after the last phase ${((performance.now() - t) / 1000).toFixed(2)} s; worker peak RSS ${(await peakRss()).toFixed(0)} MB`);
  const rss = await peakRss();
  worker.kill('SIGTERM');
  await new Promise((r) => worker.once('exit', r));
  await queues.close();
  await pool.end();

  if (phases.has('copy')) {
    if (badShare > 0) throw new Error('\\copy needs a clean file: use --bad-share 0 with the copy phase');
    await admin(`CREATE DATABASE ${copyDb}`);
    const copyPool = createPool(dbUrl(copyDb), 1);
    await migrate(copyPool);
    await copyPool.end();
    const psql = (cmd: string) =>
      execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', dbUrl(copyDb), '-c', cmd], { stdio: 'inherit' });
    psql(`\\copy departments FROM '${path.join(gen, 'departments.csv')}' csv`);
    psql(`\\copy jobs FROM '${path.join(gen, 'jobs.csv')}' csv`);
    t = performance.now();
    psql(`\\copy hired_employees FROM '${path.join(gen, 'hired_employees.csv')}' csv`);
    const s = (performance.now() - t) / 1000;
    rates.copy = rows / s;
    console.log(
      `\\copy+FK ${s.toFixed(2).padStart(7)} s ${Math.round(rates.copy).toLocaleString('en').padStart(10)} rows/s  (same file, same PK+FK schema, fresh database)`,
    );
    for (const k of ['empty', 'same', 'changed']) {
      if (rates[k]) console.log(`ratio ${k} / \\copy+FK: ${(rates[k]! / rates.copy).toFixed(2)}x`);
    }
  }
  console.log(`worker peak RSS (VmHWM): ${rss.toFixed(0)} MB for ${rows} rows${values['heap-mb'] ? ` (V8 heap capped at ${values['heap-mb']} MB)` : ''}`);
} finally {
  await admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
  await admin(`DROP DATABASE IF EXISTS ${copyDb} WITH (FORCE)`).catch(() => {});
  await rm(dataDir, { recursive: true, force: true });
}
