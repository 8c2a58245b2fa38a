import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { generate } from '../loads/sample.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * Embedded, a load into an empty table drops the table's plain indexes in its first chunk and
 * builds them again in its last (loads/writer.ts): the store must end with the same indexes, the
 * same rows and nothing recorded as deferred, and indexes left dropped by a load that died are
 * built by the next load.
 */
let s: TestServices;
let workers: Workers;
let app: ReturnType<typeof createApp>;
let dir: string;

beforeAll(async () => {
  s = await createTestServices({ LOAD_CHUNK_ROWS: '500' }, { embedded: true });
  workers = await startWorkers(s);
  app = createApp(s);
  dir = await mkdtemp(path.join(tmpdir(), 'hrtest-indexes-'));
  await generate({ rows: 3000, out: dir, badShare: 0.02, seed: 7 });
});
afterAll(async () => {
  await workers?.close();
  await s?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function load(table: string) {
  const res = await app.request(`/loads?table=${table}&wait=true`, {
    method: 'POST',
    headers: { 'content-type': 'text/csv' },
    body: new Uint8Array(await readFile(path.join(dir, `${table}.csv`))),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { status: string; inserted: number; rejected: number };
  expect(body.status).toBe('succeeded');
  return body;
}

/** The table's indexes: name → [definition, oid] (a rebuilt index has a new oid). */
async function indexes(table: string): Promise<Map<string, [string, number]>> {
  const { rows } = await s.pool.query<{ name: string; def: string; oid: number }>(
    `SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def, i.indexrelid::integer AS oid
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass`,
    [table],
  );
  return new Map(rows.map((r) => [r.name, [r.def, r.oid]]));
}

const definitions = (m: Map<string, [string, number]>) => [...m].map(([n, [d]]) => `${n}: ${d}`).sort();

test('a load into an empty table ends with the same indexes and rows, built once at the end', async () => {
  const before = await indexes('hired_employees');
  expect(before.size).toBeGreaterThanOrEqual(3); // the primary key and the two read indexes
  await load('departments');
  await load('jobs');
  const first = await load('hired_employees');
  expect(first.inserted).toBeGreaterThan(2800);
  expect(first.inserted + first.rejected).toBe(3000);

  const after = await indexes('hired_employees');
  expect(definitions(after)).toEqual(definitions(before));
  // The plain indexes were built anew; the primary key stayed (it checks ids as rows arrive).
  expect(after.get('hired_employees_pkey')![1]).toBe(before.get('hired_employees_pkey')![1]);
  expect(after.get('hired_employees_department_id_id_idx')![1]).not.toBe(before.get('hired_employees_department_id_id_idx')![1]);
  const { rows } = await s.pool.query('SELECT count(*)::integer AS n FROM loads WHERE deferred_indexes IS NOT NULL');
  expect(rows[0].n).toBe(0);
  // The rebuilt indexes hold every row: an index-only count by department agrees with the table.
  const { rows: counts } = await s.pool.query(
    `SELECT (SELECT count(*) FROM hired_employees)::integer AS n,
            (SELECT count(*) FROM hired_employees WHERE department_id BETWEEN 1 AND 1000)::integer AS by_dep`,
  );
  expect(counts[0]).toEqual({ n: first.inserted, by_dep: first.inserted });

  // Loading again: the table holds rows, nothing is deferred, the indexes stay as they are.
  const again = await load('hired_employees');
  expect(again.inserted).toBe(0);
  expect(await indexes('hired_employees')).toEqual(after);
});

test('indexes a load deferred and never built (the process died, the load ended since) are built by the next load', async () => {
  const before = await indexes('hired_employees');
  const def = before.get('hired_employees_job_id_id_idx')![0];
  const id = randomUUID();
  await s.pool.query('DROP INDEX hired_employees_job_id_id_idx');
  await s.pool.query(
    `INSERT INTO loads (id, table_name, file, bytes, status, error, deferred_indexes)
     VALUES ($1, 'hired_employees', '/gone.csv', 0, 'failed', 'the process died', $2)`,
    [id, [def]],
  );
  expect((await indexes('hired_employees')).has('hired_employees_job_id_id_idx')).toBe(false);

  await load('jobs');
  expect(definitions(await indexes('hired_employees'))).toEqual(definitions(before));
  const { rows } = await s.pool.query('SELECT deferred_indexes FROM loads WHERE id = $1', [id]);
  expect(rows[0].deferred_indexes).toBeNull();
});
