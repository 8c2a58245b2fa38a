import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { queryRows, withMemoryDuck } from '../warehouse/duck.js';
import { readLedger } from '../warehouse/ledger.js';
import { layoutOf } from '../warehouse/layout.js';
import { WarehouseReader } from '../warehouse/reader.js';
import { refreshWarehouse } from '../warehouse/refresh.js';
import { currentRowsSql } from '../warehouse/sources.js';
import { aggMatches, duckHires, pgHires, seed } from './support/warehouse.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * Compaction (warehouse/compact.ts): small deltas are merged into one delta, so a big table's
 * base is not rewritten for a few changed rows, and the DuckDB files still catch up in place.
 */
let s: TestServices;
let reader: WarehouseReader;

beforeAll(async () => {
  s = await createTestServices({ WAREHOUSE_COMPACT_AFTER: '3' });
  reader = new WarehouseReader(layoutOf(s.config.dirs.warehouse).duckdb);
  await seed(s.pool, 20_000);
  await refreshWarehouse(s);
  await change(1);
  await refreshWarehouse(s); // the second file
});
afterAll(async () => {
  reader.close();
  await s.cleanup();
});

async function change(i: number): Promise<void> {
  await s.pool.query(`UPDATE hired_employees SET name = name || '+' WHERE id = $1`, [100 + i]);
  await s.pool.query(`DELETE FROM hired_employees WHERE id = $1`, [200 + i]);
  await s.pool.query(`INSERT INTO hired_employees VALUES ($1, 'Compaction', '2023-03-03T00:00:00Z', 1, 1)`, [30_000 + i]);
}

async function expectInStep(): Promise<void> {
  expect(await duckHires(reader)).toEqual(await pgHires(s.pool));
  const agg = await aggMatches(s.pool, reader);
  expect(agg.duck).toEqual(agg.pg);
}

/** The current rows by the manifest's rule, from the Parquet files alone. */
async function parquetIds(): Promise<number[]> {
  const ledger = await readLedger(s.pool);
  const sql = currentRowsSql(layoutOf(s.config.dirs.warehouse).parquet, 'hired_employees', ledger.hired_employees);
  return withMemoryDuck(async (conn) => (await queryRows<{ id: number }>(conn, `SELECT id FROM (${sql}) ORDER BY id`)).map((r) => r.id));
}

const hireFiles = async () => (await readdir(path.join(layoutOf(s.config.dirs.warehouse).parquet, 'hired_employees'))).sort();

test('small deltas are merged into one delta; the base stays, and both DuckDB files keep catching up in place', async () => {
  const base = (await hireFiles()).find((f) => f.startsWith('base-'));
  for (let i = 2; i <= 3; i++) {
    await change(i);
    expect((await refreshWarehouse(s)).via).toBe('in-place');
  }
  // Three deltas: the third refresh merged them.
  const files = await hireFiles();
  expect(files).toEqual([base, expect.stringMatching(/^delta-\d{10}-\d{10}\.parquet$/)]);
  expect(await parquetIds()).toEqual((await pgHires(s.pool)).map((h) => h.id));
  await expectInStep();
  // The file published before the merge is two batches behind; the merged delta holds them.
  for (let i = 4; i <= 5; i++) {
    await change(i);
    expect((await refreshWarehouse(s)).via).toBe('in-place');
    await expectInStep();
  }
});

test('deltas that outweigh a tenth of the base are compacted into a new base', async () => {
  await s.pool.query(`UPDATE hired_employees SET job_id = 1 + job_id % 7 WHERE id % 5 = 0 AND id <= 12000`); // 2,400 rows
  await refreshWarehouse(s);
  await change(6);
  const r = await refreshWarehouse(s);
  expect(r.compacted).toEqual(['hired_employees']);
  expect(await hireFiles()).toEqual([expect.stringMatching(/^base-\d{10}$/)]);
  expect(await parquetIds()).toEqual((await pgHires(s.pool)).map((h) => h.id));
  await expectInStep();
  // The older DuckDB file cannot catch up from a new base: the next refresh copies instead.
  await change(7);
  expect((await refreshWarehouse(s)).via).toBe('copy');
  await expectInStep();
});
