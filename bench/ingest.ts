/**
 * POST /ingest throughput against the real server, side by side with psql \copy of the same rows
 * into the same schema (foreign keys and change capture included), in one run.
 *
 *   npm run bench:ingest -- --rows 500000 --clients 4
 *   npm run bench:ingest -- --overlap --rows 100000 [--clients 16]
 *
 * Default mode: each 1000-row JSON batch holds new ids, posted by --clients concurrent clients.
 * --overlap: every client posts batches covering the whole id range 1..rows, each starting a
 * quarter batch after the previous client's, rows shuffled within a batch and values differing
 * by client, so concurrent batches insert and update the same ids. Checks: no 5xx, no deadlock
 * (40P01 in answers or the server log, and PostgreSQL's own deadlock count for the database), and
 * a final row count equal to the distinct ids posted.
 *
 * Prints rows/s for both, the ratio, p50/p99 latency of the batches, and the CPU time the server
 * and its PostgreSQL connections spent per 1000 rows (steadier than wall time on a busy machine).
 */
import { readFileSync } from 'node:fs';
import { writeFile, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { adminQuery, arg, dbUrl, fmt, path, percentile, REDIS_URL, rng, startServer, timePsql } from './support.js';

const OVERLAP = process.argv.includes('--overlap');
const ROWS = arg('rows', OVERLAP ? 100_000 : 500_000);
const CLIENTS = arg('clients', OVERLAP ? 16 : 4);
const BATCH = 1000;
const DEPARTMENTS = 12;
const JOBS = 183;
const P99_TARGET = OVERLAP ? 250 : 100;

const dbName = `bench_ingest_${Date.now()}`;
const url = dbUrl(dbName);
const work = await mkdtemp(path.join(tmpdir(), 'bench-ingest-'));
await adminQuery(`CREATE DATABASE ${dbName}`);
const server = await startServer({ DATABASE_URL: url, REDIS_URL, DATA_DIR: work, QUEUE_PREFIX: dbName }, ['--api']);
let deadlocksLogged = 0;
server.child.stdout!.on('data', (d: Buffer | string) => {
  deadlocksLogged += String(d).match(/40P01|deadlock detected/g)?.length ?? 0;
});
const db = new pg.Client({ connectionString: url });
await db.connect();

/** CPU seconds (user + system) of a process so far, from /proc; 0 once it has gone. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/** CPU seconds of the server and of the database's other PostgreSQL connections so far. */
async function cpuSample(): Promise<{ server: number; pg: Map<number, number> }> {
  const { rows } = await db.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
  return { server: cpuSeconds(server.child.pid!), pg: new Map(rows.map((r) => [r.pid, cpuSeconds(r.pid)])) };
}

function cpuSpent(before: Awaited<ReturnType<typeof cpuSample>>, after: Awaited<ReturnType<typeof cpuSample>>) {
  let pgSeconds = 0;
  for (const [pid, s] of after.pg) pgSeconds += s - (before.pg.get(pid) ?? 0);
  return { server: after.server - before.server, pg: pgSeconds };
}

try {
  // Reference data through the API.
  const post = (table: string, body: string) =>
    fetch(`${server.base}/ingest/${table}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  await post('departments', JSON.stringify(Array.from({ length: DEPARTMENTS }, (_, i) => ({ id: i + 1, department: `Dept ${i + 1}` }))));
  await post('jobs', JSON.stringify(Array.from({ length: JOBS }, (_, i) => ({ id: i + 1, job: `Job ${i + 1}` }))));

  // The rows as JSON batches per client (serialized before timing) and the distinct ids as one CSV file for \copy.
  const rand = rng(7);
  const rowOf = (id: number, version: number) => {
    const r = rng(id * 64 + version); // the same row for the same id and version, in the API and the CSV
    return {
      id,
      name: version === 0 ? `Employee ${id}` : `Employee ${id} v${version}`,
      datetime: new Date(Date.UTC(2020, 0, 1) + Math.floor(r() * 730 * 86400) * 1000).toISOString().slice(0, 19) + 'Z',
      department_id: 1 + Math.floor(r() * DEPARTMENTS),
      job_id: 1 + Math.floor(r() * JOBS),
    };
  };
  const queues: string[][] = Array.from({ length: CLIENTS }, () => []);
  const csv: string[] = [];
  let posted = 0;
  if (!OVERLAP) {
    // One shared queue: each client takes the next batch as soon as its last one answered.
    for (let start = 1; start <= ROWS; start += BATCH) {
      const rows = [];
      for (let id = start; id < start + BATCH && id <= ROWS; id++) rows.push(rowOf(id, 0));
      queues[0]!.push(JSON.stringify(rows));
      posted += rows.length;
    }
  } else {
    for (let c = 0; c < CLIENTS; c++) {
      const offset = Math.floor((c * BATCH) / 4) % ROWS;
      for (let start = 0; start < ROWS; start += BATCH) {
        const rows = [];
        for (let k = start; k < Math.min(start + BATCH, ROWS); k++) rows.push(rowOf(1 + ((k + offset) % ROWS), c + 1));
        for (let k = rows.length - 1; k > 0; k--) {
          const j = Math.floor(rand() * (k + 1));
          [rows[k], rows[j]] = [rows[j]!, rows[k]!];
        }
        queues[c]!.push(JSON.stringify(rows));
        posted += rows.length;
      }
    }
  }
  for (let id = 1; id <= ROWS; id++) {
    const r = rowOf(id, 0);
    csv.push(`${id},${r.name},${r.datetime},${r.department_id},${r.job_id}`);
  }
  const csvPath = path.join(work, 'hired_employees.csv');
  await writeFile(csvPath, csv.join('\n') + '\n');

  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let deadlockAnswers = 0;
  let written = 0;
  const deadlocksBefore = await pgDeadlocks();
  const cpuBefore = await cpuSample();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      const queue = OVERLAP ? queues[c]! : queues[0]!;
      for (let body = queue.shift(); body !== undefined; body = queue.shift()) {
        const t0 = performance.now();
        const res = await post('hired_employees', body);
        const text = await res.text();
        latencies.push(performance.now() - t0);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (/40P01|deadlock/.test(text)) deadlockAnswers++;
        if (res.status !== 200) {
          if (res.status < 500) throw new Error(`batch refused: ${res.status} ${text.slice(0, 500)}`);
          continue; // counted; the run goes on so the report shows how many
        }
        const out = JSON.parse(text) as { inserted: number; updated: number; rejected: number };
        if (out.rejected > 0) throw new Error(`batch had rejects: ${text.slice(0, 500)}`);
        written += out.inserted + out.updated;
      }
    }),
  );
  const apiSeconds = (performance.now() - started) / 1000;
  const cpu = cpuSpent(cpuBefore, await cpuSample());
  latencies.sort((a, b) => a - b);
  const { rows: countRows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM hired_employees');
  const finalCount = Number(countRows[0]!.n);
  await new Promise((r) => setTimeout(r, 1500)); // PostgreSQL publishes its statistics within a second
  const deadlocks = (await pgDeadlocks()) - deadlocksBefore;

  // Reference: psql \copy of the distinct rows into the same table, emptied first.
  await db.query('TRUNCATE hired_employees');
  await db.query('CHECKPOINT');
  const copySeconds = await timePsql(url, `\\copy hired_employees FROM '${csvPath}' WITH (FORMAT csv)`);

  const apiRate = posted / apiSeconds;
  const copyRate = ROWS / copySeconds;
  const per1000 = (s: number) => ((s * 1000 * 1000) / posted).toFixed(1);
  const fivexx = [...statuses].filter(([s]) => s >= 500).reduce((n, [, k]) => n + k, 0);
  console.log(
    OVERLAP
      ? `rows: ${fmt(posted)} hired_employees posted over ${fmt(ROWS)} distinct ids, ${fmt(posted / BATCH)} JSON batches of ${BATCH} (shuffled, overlapping), ${CLIENTS} clients`
      : `rows: ${fmt(ROWS)} hired_employees, ${fmt(posted / BATCH)} JSON batches of ${BATCH}, ${CLIENTS} clients`,
  );
  console.log(`API  POST /ingest: ${apiSeconds.toFixed(2)} s, ${fmt(apiRate)} rows/s (${fmt(written)} inserted or updated)`);
  console.log(`psql \\copy:        ${copySeconds.toFixed(2)} s, ${fmt(copyRate)} rows/s (${fmt(ROWS)} rows)`);
  console.log(`ratio API / \\copy: ${(apiRate / copyRate).toFixed(2)}x (target >= ${OVERLAP ? '—' : '0.8x'})`);
  console.log(
    `batch latency: p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms (target p99 < ${P99_TARGET} ms)`,
  );
  console.log(`CPU per 1000 rows posted: server ${per1000(cpu.server)} ms, its PostgreSQL connections ${per1000(cpu.pg)} ms`);
  console.log(`answers: ${[...statuses].map(([s, n]) => `${s} x${n}`).join(', ')}; 5xx: ${fivexx}`);
  console.log(`deadlocks: PostgreSQL counted ${deadlocks}, in answers ${deadlockAnswers}, in the server log ${deadlocksLogged}`);
  console.log(`final row count ${fmt(finalCount)}, distinct ids posted ${fmt(ROWS)}: ${finalCount === ROWS ? 'equal' : 'DIFFERENT'}`);
  console.log(`server peak RSS: ${server.peakRssMb().toFixed(0)} MB`);
  if (fivexx > 0 || deadlocks > 0 || deadlockAnswers > 0 || deadlocksLogged > 0 || finalCount !== ROWS) process.exitCode = 1;
} finally {
  await db.end();
  await server.stop();
  await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await rm(work, { recursive: true, force: true });
}

async function pgDeadlocks(): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT deadlocks AS n FROM pg_stat_database WHERE datname = current_database()');
  return Number(rows[0]?.n ?? 0);
}
