/**
 * POST /ingest throughput against the real server, side by side with psql \copy of the same rows
 * into the same schema, in one run. `npm run bench:ingest -- --rows 500000 --clients 4`
 *
 * Prints rows/s for both, the ratio, and p50/p99 latency of the 1000-row JSON batches.
 */
import { writeFile, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { adminQuery, arg, dbUrl, fmt, path, percentile, REDIS_URL, rng, startServer, timePsql } from './support.js';

const ROWS = arg('rows', 500_000);
const CLIENTS = arg('clients', 4);
const BATCH = 1000;
const DEPARTMENTS = 12;
const JOBS = 183;

const dbName = `bench_ingest_${Date.now()}`;
const url = dbUrl(dbName);
const work = await mkdtemp(path.join(tmpdir(), 'bench-ingest-'));
await adminQuery(`CREATE DATABASE ${dbName}`);
const server = await startServer({ DATABASE_URL: url, REDIS_URL, DATA_DIR: work, QUEUE_PREFIX: dbName }, ['--api']);

try {
  // Reference data through the API.
  const post = (table: string, body: string) =>
    fetch(`${server.base}/ingest/${table}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  await post('departments', JSON.stringify(Array.from({ length: DEPARTMENTS }, (_, i) => ({ id: i + 1, department: `Dept ${i + 1}` }))));
  await post('jobs', JSON.stringify(Array.from({ length: JOBS }, (_, i) => ({ id: i + 1, job: `Job ${i + 1}` }))));

  // The same rows as JSON batches (serialized before timing) and as one CSV file for \copy.
  const rand = rng(7);
  const bodies: string[] = [];
  const csv: string[] = [];
  for (let start = 1; start <= ROWS; start += BATCH) {
    const rows = [];
    for (let id = start; id < start + BATCH && id <= ROWS; id++) {
      const datetime = new Date(Date.UTC(2020, 0, 1) + Math.floor(rand() * 730 * 86400) * 1000).toISOString().slice(0, 19) + 'Z';
      const row = { id, name: `Employee ${id}`, datetime, department_id: 1 + Math.floor(rand() * DEPARTMENTS), job_id: 1 + Math.floor(rand() * JOBS) };
      rows.push(row);
      csv.push(`${id},${row.name},${datetime},${row.department_id},${row.job_id}`);
    }
    bodies.push(JSON.stringify(rows));
  }
  const csvPath = path.join(work, 'hired_employees.csv');
  await writeFile(csvPath, csv.join('\n') + '\n');

  // API: CLIENTS concurrent clients, each posting the next batch as soon as its last one answered.
  const latencies: number[] = [];
  let next = 0;
  let written = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++]!;
        const t0 = performance.now();
        const res = await post('hired_employees', body);
        const out = (await res.json()) as { inserted: number; rejected: number };
        latencies.push(performance.now() - t0);
        if (res.status !== 200 || out.rejected > 0) throw new Error(`batch failed: ${res.status} ${JSON.stringify(out)}`);
        written += out.inserted;
      }
    }),
  );
  const apiSeconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);

  // Reference: psql \copy of the same rows into the same table, emptied first.
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('TRUNCATE hired_employees');
  await c.query('CHECKPOINT');
  await c.end();
  const copySeconds = await timePsql(url, `\\copy hired_employees FROM '${csvPath}' WITH (FORMAT csv)`);

  const apiRate = ROWS / apiSeconds;
  const copyRate = ROWS / copySeconds;
  console.log(`rows: ${fmt(ROWS)} hired_employees, ${bodies.length} JSON batches of ${BATCH}, ${CLIENTS} clients`);
  console.log(`API  POST /ingest: ${apiSeconds.toFixed(2)} s, ${fmt(apiRate)} rows/s (${fmt(written)} inserted)`);
  console.log(`psql \\copy:        ${copySeconds.toFixed(2)} s, ${fmt(copyRate)} rows/s`);
  console.log(`ratio API / \\copy: ${(apiRate / copyRate).toFixed(2)}x (target >= 0.5x)`);
  console.log(`batch latency: p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms (target p99 < 100 ms)`);
  console.log(`server peak RSS: ${server.peakRssMb().toFixed(0)} MB`);
} finally {
  await server.stop();
  await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await rm(work, { recursive: true, force: true });
}
