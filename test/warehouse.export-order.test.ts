import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { exportChanges } from '../warehouse/export.js';
import { queryRows, withMemoryDuck } from '../warehouse/duck.js';
import { layoutOf } from '../warehouse/layout.js';
import { createTestServices, type TestServices } from './support/services.js';

// PostgreSQL sorts what an export sends and DuckDB writes the rows in the order they come: the
// Parquet files other engines read keep their documented order (bases of hires by time within
// each year, other files by id), whatever order the rows were stored in.

let s: TestServices;

beforeAll(async () => {
  s = await createTestServices();
  await s.pool.query(`INSERT INTO departments SELECT i, 'Dept ' || i FROM generate_series(1, 3) i`);
  await s.pool.query(`INSERT INTO jobs SELECT i, 'Job ' || i FROM generate_series(1, 3) i`);
  // Stored out of order: ids descending, times scattered over three years.
  await s.pool.query(
    `INSERT INTO hired_employees
     SELECT i, 'Person ' || i, timestamptz '2020-01-01 00:00:00+00' + ((i * 7919) % 1000) * interval '1 day', 1 + i % 3, 1 + i % 3
       FROM generate_series(400, 1, -1) i`,
  );
});
afterAll(async () => {
  await s.cleanup();
});

async function exportNow() {
  const client = await s.pool.connect();
  try {
    return await exportChanges(client, layoutOf(s.config.dirs.warehouse), s.log);
  } finally {
    client.release();
  }
}

type Row = { file: string; id: number; at: string };

async function parquetRows(glob: string): Promise<Row[]> {
  return withMemoryDuck((conn) =>
    queryRows<Row>(
      conn,
      `SELECT filename AS file, id, strftime(datetime, '%Y-%m-%d %H:%M:%S') AS at
         FROM read_parquet('${glob}', filename = true, hive_partitioning = false)`,
    ),
  );
}

test('a base of hired_employees lists each year file in time order, then id; a delta lists ids in order', async () => {
  const parquet = layoutOf(s.config.dirs.warehouse).parquet;
  const first = await exportNow();
  const base = first.tables.find((t) => t.table === 'hired_employees')!;
  expect(base).toMatchObject({ kind: 'base', rows: 400 });
  const rows = await parquetRows(path.join(parquet, base.path, '**', '*.parquet'));
  expect(rows).toHaveLength(400);
  const files = [...new Set(rows.map((r) => r.file))];
  expect(files.length).toBeGreaterThanOrEqual(3); // one per year
  for (const file of files) {
    const inFile = rows.filter((r) => r.file === file);
    const sorted = [...inFile].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.id - b.id));
    expect(inFile.map((r) => r.id)).toEqual(sorted.map((r) => r.id));
  }

  // Changes made in descending id order, in two far-apart ranges.
  await s.pool.query(`UPDATE hired_employees SET name = name || ' (moved)' WHERE id IN (390, 350, 20, 5)`);
  await s.pool.query(`DELETE FROM hired_employees WHERE id = 200`);
  const second = await exportNow();
  const delta = second.tables.find((t) => t.table === 'hired_employees')!;
  expect(delta).toMatchObject({ kind: 'delta', rows: 5, deleted: 1 });
  const changed = await parquetRows(path.join(parquet, delta.path));
  expect(changed.map((r) => r.id)).toEqual([5, 20, 200, 350, 390]);
});
