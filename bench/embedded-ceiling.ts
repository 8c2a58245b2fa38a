/**
 * `npm run bench:embedded-ceiling -- [--rows 1000000] [--chunk 100000] [--param k=v ...] [--setup SQL] [--only bare,constrained,upsert]`
 *
 * The ceiling of an embedded load: PGlite opened as the service opens it (a database folder on
 * disk, the same start parameters), 1M generated hired_employees rows as COPY text, written
 * through /dev/blob in transactions of --chunk rows into
 *   constrained  the service's table (migrations applied: PK, CHECKs, FKs skipped with replica
 *                as the loads do, two plain indexes, the statement-level change-capture trigger):
 *                indexes kept at work_mem 4 MB (before) and 32 MB, then the loads' path for an
 *                empty table (plain indexes dropped, built after; the build is timed too)
 *   bare         a table of the same columns without constraints, indexes or triggers
 *   upsert       the loads' second path: COPY into a temporary staging table, then INSERT … ON
 *                CONFLICT … WHERE IS DISTINCT FROM, into the constrained table (empty, then full)
 * No Node-side parsing is timed: the COPY text is built before the clock starts.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir, loadavg } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { upsertIfDifferent } from '../pg/upsert.js';
import { TABLES } from '../core/tables.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    chunk: { type: 'string', default: '100000' },
    blob: { type: 'string', default: String(8 * 2 ** 20) },
    param: { type: 'string', multiple: true, default: [] },
    only: { type: 'string', default: 'constrained,bare,upsert' },
    setup: { type: 'string', default: '' },
  },
});
const rows = Number(values.rows);
const chunkRows = Number(values.chunk);
const blobBytes = Number(values.blob);
const only = new Set(values.only.split(','));
const extra = values.param.flatMap((p) => ['-c', p]);
const START_PARAMS = [...PGlite.defaultStartParams, '-c', 'shared_buffers=32MB', ...extra];

const dir = await mkdtemp(path.join(tmpdir(), 'ceiling-'));
try {
  // initdb in this process is fine here (RSS is not what is measured).
  const db = await PGlite.create({ dataDir: path.join(dir, 'pg'), startParams: START_PARAMS });
  const migrations = path.join(import.meta.dirname, '..', 'sql', 'migrations');
  for (const f of (await readdir(migrations)).filter((f) => f.endsWith('.sql')).sort()) {
    await db.exec(await readFile(path.join(migrations, f), 'utf8'));
  }
  await db.exec(`INSERT INTO departments SELECT g, 'd' || g FROM generate_series(1, 12) g;
                 INSERT INTO jobs SELECT g, 'j' || g FROM generate_series(1, 183) g;
                 CREATE TABLE bare (id integer, name text, datetime timestamptz, department_id integer, job_id integer);`);
  if (values.setup) await db.exec(values.setup);

  // COPY text per chunk, built before timing.
  const chunks: Buffer[] = [];
  for (let start = 1; start <= rows; start += chunkRows) {
    let s = '';
    for (let i = start; i < Math.min(start + chunkRows, rows + 1); i++) {
      const d = new Date(Date.UTC(2020, 0, 1) + ((i * 7919) % (3 * 365 * 86400)) * 1000).toISOString();
      s += `${i}\tName ${i % 997} Surname${i % 89}\t${d}\t${1 + (i % 12)}\t${1 + (i % 183)}\n`;
    }
    chunks.push(Buffer.from(s));
  }
  const bytes = chunks.reduce((a, b) => a + b.length, 0);

  async function copy(table: string, data: Buffer): Promise<void> {
    const sql = `COPY ${table} (id, name, datetime, department_id, job_id) FROM '/dev/blob'`;
    for (let off = 0; off < data.length; ) {
      let end = data.length;
      if (end - off > blobBytes) end = data.lastIndexOf(10, off + blobBytes - 1) + 1;
      await db.query(sql, [], { blob: new Blob([data.subarray(off, end) as Uint8Array<ArrayBuffer>]) });
      off = end;
    }
  }

  const say = (s: string) => process.stdout.write(`${s}\n`);
  say(`rows ${rows}, chunk ${chunkRows}, blob ${blobBytes}, COPY text ${(bytes / 2 ** 20).toFixed(1)} MiB, params ${extra.join(' ') || '(service)'}; load ${loadavg().map((n) => n.toFixed(2)).join(' ')}`);

  async function run(label: string, each: (data: Buffer) => Promise<void>, before = ''): Promise<void> {
    await db.exec('CHECKPOINT');
    const t0 = performance.now();
    for (const data of chunks) {
      await db.exec(`BEGIN; ${before}`);
      await each(data);
      await db.exec('COMMIT');
    }
    const s = (performance.now() - t0) / 1000;
    say(`${label.padEnd(44)} ${(rows / s).toFixed(0).padStart(8)} rows/s  (${s.toFixed(2)} s)`);
  }

  if (only.has('bare')) {
    await run('bare table', (d) => copy('bare', d));
    await db.exec('TRUNCATE bare');
  }
  const replica = 'SET LOCAL session_replication_role = replica;';
  const fresh = 'TRUNCATE hired_employees; DELETE FROM warehouse_changes;';
  const secondary = ['hired_employees_department_id_id_idx', 'hired_employees_job_id_id_idx'];
  const dropSecondary = secondary.map((i) => `DROP INDEX IF EXISTS ${i};`).join(' ');
  const createSecondary = `CREATE INDEX IF NOT EXISTS hired_employees_department_id_id_idx ON hired_employees (department_id, id);
                           CREATE INDEX IF NOT EXISTS hired_employees_job_id_id_idx ON hired_employees (job_id, id);`;
  const work = `SET LOCAL work_mem = '32MB';`;
  if (only.has('constrained')) {
    await run('service table, indexes kept, work_mem 4MB', (d) => copy('hired_employees', d), replica);
    await db.exec(fresh);
    await run('service table, indexes kept, work_mem 32MB', (d) => copy('hired_employees', d), replica + work);
    await db.exec(fresh + dropSecondary);
    const t0 = performance.now();
    await run('service table, plain indexes dropped', (d) => copy('hired_employees', d), replica + work);
    const t1 = performance.now();
    await db.exec(`BEGIN; SET LOCAL maintenance_work_mem = '64MB'; ${createSecondary} COMMIT;`);
    const s = (performance.now() - t0) / 1000;
    say(`${`  + built after (${((performance.now() - t1) / 1000).toFixed(2)} s): the loads' path`.padEnd(44)} ${(rows / s).toFixed(0).padStart(8)} rows/s  (${s.toFixed(2)} s)`);
  }
  if (only.has('upsert')) {
    const table = TABLES.hired_employees;
    await db.exec(`CREATE TEMP TABLE stage (seq bigint GENERATED ALWAYS AS IDENTITY, id integer, name text, datetime timestamptz,
                   department_id integer, job_id integer) ON COMMIT DELETE ROWS`);
    const sql = `WITH up AS (${upsertIfDifferent(table, { from: 'stage', sorted: true, skipEqual: true })})
       SELECT count(*) FILTER (WHERE inserted)::integer AS inserted, count(*) FILTER (WHERE NOT inserted)::integer AS updated FROM up`;
    const upsert = async (d: Buffer) => {
      await copy('stage', d);
      await db.exec('SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;');
      await db.query(sql);
    };
    if (only.has('constrained')) {
      await run('upsert, table full (all rows unchanged)', upsert, replica + work);
      await db.exec(fresh);
    }
    await run('upsert, table empty (indexes kept)', upsert, replica + work);
  }
  await db.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
