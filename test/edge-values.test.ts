import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { queryRows } from '../warehouse/duck.js';
import { layoutOf } from '../warehouse/layout.js';
import { WarehouseReader } from '../warehouse/reader.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { postCsv, postJson } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';
import { duckHires, pgHires } from './support/warehouse.js';

/**
 * "Whatever the rules accept, every part of the service can export, analyse, back up and
 * restore": rows at each edge of the rules go in through POST /ingest (JSON and CSV), out to an
 * Avro backup, back through a restore, and into the warehouse, and come back identical.
 */
let s: TestServices;
let workers: Workers;
let app: ReturnType<typeof createApp>;
let reader: WarehouseReader;

beforeAll(async () => {
  s = await createTestServices({ WAREHOUSE_REFRESH_DEBOUNCE_MS: '100' });
  workers = await startWorkers(s);
  app = createApp(s);
  reader = new WarehouseReader(layoutOf(s.config.dirs.warehouse).duckdb);
});
afterAll(async () => {
  reader?.close();
  await workers?.close();
  await s?.cleanup();
});

const MAX_ID = 2147483647;
/** 16384 astral-plane characters: 65536 bytes of UTF-8, exactly FIELD_MAX_BYTES. */
const NAME_64K = '𝒜'.repeat(16384);

async function digest(table: string): Promise<string> {
  const { rows } = await s.pool.query(`SELECT count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) AS d FROM ${table} x`);
  return rows[0].d as string;
}

async function ok(res: Response, received: number): Promise<void> {
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ received, rejected: 0 });
}

test('rows at every edge of the rules: ingested, backed up, restored and exported to the warehouse unchanged', async () => {
  expect(Buffer.byteLength(NAME_64K)).toBe(65536);
  await ok(await postJson(app, '/ingest/departments', [{ id: MAX_ID, department: NAME_64K }, { id: 1, department: 'Zoë 名前 😀' }]), 2);
  await ok(await postCsv(app, '/ingest/jobs', `${MAX_ID},${NAME_64K}\n1,"Job, with ""quotes"" 𝄞"\n`), 2);
  await ok(
    await postJson(app, '/ingest/hired_employees', [
      { id: 1, name: 'First instant 😀', datetime: '1900-01-01T00:00:00Z', department_id: MAX_ID, job_id: MAX_ID },
      { id: MAX_ID, name: NAME_64K, datetime: '2100-12-31T23:59:59.999999Z', department_id: MAX_ID, job_id: MAX_ID },
      // The UTC instant decides, not the local date: 1899 here is 1900 in UTC, 2101 is 2100.
      { id: 2, name: 'Local 1899', datetime: '1899-12-31T23:30:00-00:45', department_id: 1, job_id: 1 },
      { id: 3, name: 'Local 2101', datetime: '2101-01-01T01:00:00+02:00', department_id: 1, job_id: 1 },
    ]),
    4,
  );
  // A fraction past microseconds is cut, never rounded: this hire stays in March, in Q1.
  await ok(await postCsv(app, '/ingest/hired_employees', `4,${NAME_64K},2021-03-31T23:59:59.9999999Z,1,${MAX_ID}\n`), 1);

  expect(await pgHires(s.pool)).toEqual([
    { id: 1, name: 'First instant 😀', at: '1900-01-01 00:00:00.000000', department_id: MAX_ID, job_id: MAX_ID },
    { id: 2, name: 'Local 1899', at: '1900-01-01 00:15:00.000000', department_id: 1, job_id: 1 },
    { id: 3, name: 'Local 2101', at: '2100-12-31 23:00:00.000000', department_id: 1, job_id: 1 },
    { id: 4, name: NAME_64K, at: '2021-03-31 23:59:59.999999', department_id: 1, job_id: MAX_ID },
    { id: MAX_ID, name: NAME_64K, at: '2100-12-31 23:59:59.999999', department_id: MAX_ID, job_id: MAX_ID },
  ]);
  const before = { departments: await digest('departments'), jobs: await digest('jobs'), hired_employees: await digest('hired_employees') };

  // Backed up, the hires deleted, and restored: every table exactly as it was.
  const backup = await app.request('/backups?wait=true', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  expect(backup.status).toBe(200);
  const set = ((await backup.json()) as { id: string }[])[0]!.id;
  await s.pool.query('DELETE FROM hired_employees');
  for (const table of ['departments', 'jobs', 'hired_employees']) {
    const res = await postJson(app, `/backups/${table}/restore`, { backup: set, mode: 'replace' });
    expect(res.status).toBe(200);
    expect(await digest(table)).toBe(before[table as keyof typeof before]);
  }

  // The warehouse holds the same values, and counts each hire in its UTC year and quarter.
  expect((await app.request('/warehouse/refresh?wait=true', { method: 'POST' })).status).toBe(200);
  expect(await duckHires(reader)).toEqual(await pgHires(s.pool));
  const dims = await reader.use((conn) =>
    queryRows<{ id: number; name: string }>(
      conn,
      `SELECT department_id AS id, department AS name FROM dim_department UNION ALL SELECT job_id, job FROM dim_job ORDER BY ALL`,
    ),
  );
  expect(dims).toEqual([
    { id: 1, name: 'Job, with "quotes" 𝄞' },
    { id: 1, name: 'Zoë 名前 😀' },
    { id: MAX_ID, name: NAME_64K },
    { id: MAX_ID, name: NAME_64K },
  ]);
  const quarters = async (year: number) =>
    ((await (await app.request(`/analytics/hires-by-quarter?year=${year}`)).json()) as { q1: number; q2: number; q3: number; q4: number }[]).map(
      (r) => [r.q1, r.q2, r.q3, r.q4],
    );
  expect(await quarters(1900)).toEqual([[1, 0, 0, 0], [1, 0, 0, 0]]);
  expect(await quarters(2100)).toEqual([[0, 0, 0, 1], [0, 0, 0, 1]]);
  expect(await quarters(2021)).toEqual([[1, 0, 0, 0]]);
});

test('values just past each edge are rejects, and the batch around them is written', async () => {
  const res = await postJson(app, '/ingest/hired_employees', [
    { id: 10, name: 'ok', datetime: '2021-06-01T00:00:00Z', department_id: 1, job_id: 1 },
    { id: 11, name: 'Before 1900 in UTC', datetime: '1900-01-01T00:30:00+01:00', department_id: 1, job_id: 1 },
    { id: 12, name: 'After 2100 in UTC', datetime: '2100-12-31T23:00:00-02:00', department_id: 1, job_id: 1 },
    { id: 13, name: 'Year 1', datetime: '0001-01-01T00:00:00+01:00', department_id: 1, job_id: 1 },
    { id: 14, name: 'Year 10000 in UTC', datetime: '9999-12-31T23:00:00-12:00', department_id: 1, job_id: 1 },
    { id: 15, name: NAME_64K + 'x', datetime: '2021-06-01T00:00:00Z', department_id: 1, job_id: 1 },
    { id: 2147483648, name: 'id too big', datetime: '2021-06-01T00:00:00Z', department_id: 1, job_id: 1 },
    { id: 16, name: 'lone \ud83d surrogate', datetime: '2021-06-01T00:00:00Z', department_id: 1, job_id: 1 },
  ]);
  expect(res.status).toBe(200);
  const out = (await res.json()) as { inserted: number; rejects: { row: number; errors: { field: string; message: string }[] }[] };
  expect(out.inserted).toBe(1);
  expect(out.rejects).toEqual([
    { row: 1, errors: [{ field: 'datetime', message: 'must lie in the years 1900..2100 (UTC)' }] },
    { row: 2, errors: [{ field: 'datetime', message: 'must lie in the years 1900..2100 (UTC)' }] },
    { row: 3, errors: [{ field: 'datetime', message: 'must lie in the years 1900..2100 (UTC)' }] },
    { row: 4, errors: [{ field: 'datetime', message: 'must lie in the years 1900..2100 (UTC)' }] },
    { row: 5, errors: [{ field: 'name', message: 'is 65537 bytes long; at most 65536 are allowed' }] },
    { row: 6, errors: [{ field: 'id', message: 'must be in 1..2147483647' }] },
    { row: 7, errors: [{ field: 'name', message: 'must be valid Unicode text (it holds a lone surrogate)' }] },
  ]);
  const { rows } = await s.pool.query(`SELECT count(*)::int AS n FROM hired_employees WHERE name LIKE '%\ufffd%'`);
  expect(rows[0].n).toBe(0);
  // Nothing the rules let through can fail the next refresh.
  expect((await app.request('/warehouse/refresh?wait=true', { method: 'POST' })).status).toBe(200);
});
