import { afterAll, beforeAll, expect, test } from 'vitest';
import { queryRows } from '../warehouse/duck.js';
import { layoutOf } from '../warehouse/layout.js';
import { WarehouseReader } from '../warehouse/reader.js';
import { refreshWarehouse } from '../warehouse/refresh.js';
import { aggMatches, duckHires, pgHires, seed } from './support/warehouse.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * fact_hires is fact_hires_base with fact_hires_changes laid over it (warehouse/apply.ts): a
 * refresh writes only the changes table, which is folded into the base once it is large.
 */
let s: TestServices;
let reader: WarehouseReader;

beforeAll(async () => {
  s = await createTestServices();
  reader = new WarehouseReader(layoutOf(s.config.dirs.warehouse).duckdb);
  await seed(s.pool, 50_000);
  expect((await refreshWarehouse(s)).build).toBe('full');
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

const counts = () =>
  reader.use(async (conn) => {
    const [row] = await queryRows<{ base: number; changes: number; deleted: number }>(
      conn,
      `SELECT (SELECT count(*) FROM fact_hires_base)::INTEGER AS base, (SELECT count(*) FROM fact_hires_changes)::INTEGER AS changes,
              (SELECT count(*) FROM fact_hires_changes WHERE deleted)::INTEGER AS deleted`,
    );
    return row!;
  });

test('a refresh leaves the base alone and records the changed hires, deletions as markers', async () => {
  await s.pool.query(`UPDATE hired_employees SET department_id = 1 + department_id % 5 WHERE id IN (7, 8, 9)`);
  await s.pool.query(`DELETE FROM hired_employees WHERE id IN (10, 11)`);
  await s.pool.query(`INSERT INTO hired_employees VALUES (60000, 'Overlay New', '2022-02-02T00:00:00Z', 1, 1)`);
  // The first incremental refresh copies the one file there is; from then on two are used in turn.
  expect(await refreshWarehouse(s)).toMatchObject({ build: 'incremental', via: 'copy' });
  expect(await counts()).toEqual({ base: 50_000, changes: 6, deleted: 2 });
  await expectInStep();
  // A hire changed again replaces its row among the changes; a deleted one that comes back too.
  await s.pool.query(`UPDATE hired_employees SET name = 'Twice' WHERE id = 7`);
  await s.pool.query(`INSERT INTO hired_employees VALUES (10, 'Back Again', '2021-01-01T00:00:00Z', 2, 2)`);
  expect(await refreshWarehouse(s)).toMatchObject({ build: 'incremental', via: 'in-place' });
  expect(await counts()).toEqual({ base: 50_000, changes: 6, deleted: 1 });
  await expectInStep();
});

test('once the changes outgrow their share of the base they are folded into it', async () => {
  // 12,000 changed hires: under the quarter of the table that makes a refresh build in full,
  // over the 10,000 rows (and 1% of the base) that make it fold.
  await s.pool.query(`UPDATE hired_employees SET job_id = 1 + job_id % 7 WHERE id % 4 = 1 AND id <= 48000`);
  const r = await refreshWarehouse(s);
  expect(r.build).toBe('incremental');
  const c = await counts();
  expect(c.changes).toBe(0);
  expect(c.base).toBe((await pgHires(s.pool)).length);
  await expectInStep();
  // The file published before catches up the same way on the next refresh.
  await s.pool.query(`DELETE FROM hired_employees WHERE id = 12`);
  expect((await refreshWarehouse(s)).via).toBe('in-place');
  await expectInStep();
});

test('notebooks see fact_hires as a described view over the two tables', async () => {
  const views = await reader.use((conn) =>
    queryRows<{ view_name: string; comment: string }>(conn, `SELECT view_name, comment FROM duckdb_views() WHERE NOT internal`),
  );
  expect(views).toEqual([{ view_name: 'fact_hires', comment: expect.stringMatching(/^View: one row per current hire/) }]);
  const described = await reader.use((conn) =>
    queryRows<{ n: number }>(conn, `SELECT count(*)::INTEGER AS n FROM duckdb_columns() WHERE table_name = 'fact_hires' AND comment IS NOT NULL`),
  );
  expect(described[0]!.n).toBe(6);
});
