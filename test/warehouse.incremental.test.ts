import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { queryRows, withMemoryDuck } from '../warehouse/duck.js';
import { layoutOf } from '../warehouse/layout.js';
import { WarehouseReader } from '../warehouse/reader.js';
import { refreshWarehouse } from '../warehouse/refresh.js';
import { aggMatches, duckHires, pgHires, seed } from './support/warehouse.js';
import { createTestServices, EMBEDDED, type TestServices } from './support/services.js';

let s: TestServices;
let reader: WarehouseReader;

beforeAll(async () => {
  s = await createTestServices({ WAREHOUSE_COMPACT_AFTER: '4' });
  reader = new WarehouseReader(layoutOf(s.config.dirs.warehouse).duckdb);
  await seed(s.pool, 60);
});
afterAll(async () => {
  reader.close();
  await s.cleanup();
});

async function expectInStep(): Promise<void> {
  expect(await duckHires(reader)).toEqual(await pgHires(s.pool));
  const agg = await aggMatches(s.pool, reader);
  expect(agg.duck).toEqual(agg.pg);
}

test('the first refresh exports whole tables and builds in full', async () => {
  const r = await refreshWarehouse(s);
  expect(r.build).toBe('full');
  expect(r.exported.map((e) => [e.table, e.kind, e.rows])).toEqual([
    ['departments', 'base', 5],
    ['jobs', 'base', 7],
    ['hired_employees', 'base', 60],
  ]);
  await expectInStep();
});

test('a refresh with no change exports nothing and keeps the published file', async () => {
  const r = await refreshWarehouse(s);
  expect(r).toMatchObject({ batch: null, exported: [], build: 'none' });
});

test('inserts, updates and deletes reach the warehouse as a delta of only the changed ids', async () => {
  await s.pool.query(`INSERT INTO hired_employees VALUES (1000, 'New Person', '2021-03-01T00:30:00+02:00', 2, 3)`); // 2021-02-28 UTC, Q1
  await s.pool.query(`UPDATE hired_employees SET datetime = '2019-06-01T00:00:00Z', department_id = 4 WHERE id IN (5, 6)`);
  await s.pool.query(`DELETE FROM hired_employees WHERE id BETWEEN 10 AND 12`);
  // The API's upsert (INSERT ... ON CONFLICT DO UPDATE) is seen by the UPDATE trigger.
  await s.pool.query(`INSERT INTO hired_employees VALUES (15, 'Upserted Name', '2021-01-15T00:00:00Z', 1, 1)
                      ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`);
  // An upsert that changes nothing writes nothing, and so logs nothing.
  await s.pool.query(`INSERT INTO hired_employees SELECT * FROM hired_employees WHERE id = 20
                      ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name WHERE false`);
  const r = await refreshWarehouse(s);
  expect(r.build).toBe('incremental');
  expect(r.exported).toEqual([
    { table: 'hired_employees', kind: 'delta', path: expect.stringMatching(/delta-\d+\.parquet$/), rows: 7, deleted: 3 },
  ]);
  await expectInStep();
  const fact = await duckHires(reader);
  expect(fact.find((h) => h.id === 1000)?.at).toBe('2021-02-28 22:30:00.000000');
  expect(fact.find((h) => h.id === 15)?.name).toBe('Upserted Name');
});

// Needs two transactions open at once; the embedded PostgreSQL runs one at a time, so a late
// commit cannot overlap an export there.
test.skipIf(EMBEDDED)('a transaction that commits after an export is picked up by the next one', async () => {
  const late = await s.pool.connect();
  try {
    await late.query('BEGIN');
    await late.query(`INSERT INTO hired_employees VALUES (2000, 'Late Writer', '2021-07-01T00:00:00Z', 1, 1)`);
    await late.query(`UPDATE hired_employees SET name = 'Renamed Late' WHERE id = 30`);
    // Meanwhile another transaction commits, and an export runs and takes its changes.
    await s.pool.query(`INSERT INTO hired_employees VALUES (2001, 'Early Writer', '2021-07-02T00:00:00Z', 1, 1)`);
    const first = await refreshWarehouse(s);
    expect(first.exported.map((e) => e.rows)).toEqual([1]);
    let ids = (await duckHires(reader)).map((h) => h.id);
    expect(ids).toContain(2001);
    expect(ids).not.toContain(2000);
    await late.query('COMMIT');
  } finally {
    late.release();
  }
  const second = await refreshWarehouse(s);
  expect(second.build).toBe('incremental');
  const ids = (await duckHires(reader)).map((h) => h.id);
  expect(ids).toContain(2000);
  await expectInStep();
});

test('renaming a department changes the analytics without touching hires', async () => {
  await s.pool.query(`UPDATE departments SET department = 'aardvarks' WHERE id = 3`);
  const r = await refreshWarehouse(s);
  expect(r.exported.map((e) => [e.table, e.rows])).toEqual([['departments', 1]]);
  const res = await createApp(s).request('/analytics/hires-by-quarter?year=2021');
  const rows = (await res.json()) as { department: string }[];
  expect(rows[0]!.department).toBe('aardvarks');
});

test('TRUNCATE and a bulk reload are exported as a new base', async () => {
  const before = await pgHires(s.pool);
  await s.pool.query('BEGIN; CREATE TEMP TABLE keep ON COMMIT DROP AS SELECT * FROM hired_employees; TRUNCATE hired_employees; INSERT INTO hired_employees SELECT * FROM keep WHERE id % 2 = 0; COMMIT');
  const r = await refreshWarehouse(s);
  expect(r.exported.map((e) => [e.table, e.kind])).toEqual([['hired_employees', 'base']]);
  expect(r.build).toBe('full');
  expect((await pgHires(s.pool)).length).toBeLessThan(before.length);
  // The new base replaces the older files of that table, on disk too.
  const files = await readdir(path.join(layoutOf(s.config.dirs.warehouse).parquet, 'hired_employees'));
  expect(files).toEqual([expect.stringMatching(/^base-\d+$/)]);
  await expectInStep();
});

test('deltas that pile up are compacted into a new base, and the Parquet files alone give the current rows', async () => {
  for (let i = 0; i < 4; i++) {
    await s.pool.query(`UPDATE hired_employees SET name = name || '+' WHERE id = $1`, [2 * (i + 1)]);
    await s.pool.query(`DELETE FROM hired_employees WHERE id = $1`, [40 + 2 * i]);
    await refreshWarehouse(s);
  }
  const layout = layoutOf(s.config.dirs.warehouse);
  const manifest = JSON.parse(await readFile(layout.manifest, 'utf8')) as {
    tables: Record<string, { base: { glob: string; rows: number }; deltas: unknown[] }>;
  };
  const hires = manifest.tables.hired_employees!;
  expect(hires.deltas).toHaveLength(0);
  expect(hires.base.rows).toBe((await pgHires(s.pool)).length);
  // Another engine reading the files by the manifest: here, DuckDB on the Parquet alone.
  const fromParquet = await withMemoryDuck((conn) =>
    queryRows<{ id: number }>(conn, `SELECT id FROM read_parquet('${path.join(layout.parquet, hires.base.glob)}', hive_partitioning = true) ORDER BY id`),
  );
  expect(fromParquet.map((r) => r.id)).toEqual((await pgHires(s.pool)).map((h) => h.id));
  await expectInStep();

  // A full rebuild from the compacted Parquet gives the same warehouse as the incremental path.
  const full = await refreshWarehouse(s, { full: true });
  expect(full.build).toBe('full');
  await expectInStep();
});

test('a wiped warehouse folder is rebuilt from PostgreSQL on the next refresh', async () => {
  await rm(s.config.dirs.warehouse, { recursive: true, force: true });
  await s.pool.query(`UPDATE hired_employees SET name = 'After wipe' WHERE id = 4`);
  const r = await refreshWarehouse(s);
  expect(r.exported.map((e) => [e.table, e.kind])).toEqual([
    ['departments', 'base'],
    ['jobs', 'base'],
    ['hired_employees', 'base'],
  ]);
  expect(r.build).toBe('full');
  await expectInStep();
});
