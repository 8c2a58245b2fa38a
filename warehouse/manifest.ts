import { access, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import type { PoolClient } from '../core/db.js';
import type { Logger } from '../core/log.js';
import path from 'node:path';
import { TABLE_NAMES, TABLES } from '../core/tables.js';
import { duckType } from './duck.js';
import { liveFiles, type Ledger } from './ledger.js';
import { baseGlob, type WarehouseLayout } from './layout.js';

/**
 * parquet/manifest.json: what each Parquet file holds and how to combine them, for engines that
 * read the files directly (Spark, Polars, pandas, DuckDB). Rewritten (atomically) from the ledger
 * in PostgreSQL after every export and compaction.
 */
export async function writeManifest(layout: WarehouseLayout, ledger: Ledger): Promise<void> {
  const manifest = {
    generatedAt: new Date().toISOString(),
    format: 'Parquet, ZSTD',
    howToRead:
      'Current rows of a table = rows of its base whose id appears in none of its deltas, plus, for each id in the deltas, ' +
      'the row with the highest _batch unless that row has _deleted = true. Timestamps are UTC wall time (TIMESTAMP without zone). ' +
      'hired_employees bases are Hive-partitioned by UTC year (year=YYYY folders). Paths are relative to this file.',
    tables: Object.fromEntries(
      TABLE_NAMES.map((t) => {
        const e = ledger[t];
        return [
          t,
          {
            columns: TABLES[t].columns.map((c) => ({ name: c.name, type: duckType(c), description: c.description })),
            base: e.base && {
              batch: e.base.batch,
              path: e.base.path,
              glob: path.relative(layout.parquet, baseGlob(layout.parquet, e.base.path)),
              rows: e.base.rows,
              partitionedBy: t === 'hired_employees' ? ['year'] : [],
              createdAt: e.base.createdAt,
            },
            deltas: e.deltas.map((d) => ({ batch: d.batch, path: d.path, rows: d.rows, deleted: d.deleted, createdAt: d.createdAt })),
          },
        ];
      }),
    ),
  };
  await mkdir(layout.parquet, { recursive: true });
  const tmp = `${layout.manifest}.tmp`;
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(tmp, layout.manifest);
}

/**
 * Deletes what an interrupted refresh left behind: Parquet files no ledger row names (an export
 * that rolled back), half-built DuckDB files and CSV scratch. Only called under the refresh lock.
 */
export async function removeOrphans(layout: WarehouseLayout, ledger: Ledger): Promise<number> {
  const live = new Set(liveFiles(ledger).map((f) => f.path));
  let removed = 0;
  for (const table of TABLE_NAMES) {
    const dir = path.join(layout.parquet, table);
    const entries = await readdir(dir).catch(() => [] as string[]);
    for (const name of entries) {
      if (live.has(`${table}/${name}`)) continue;
      await rm(path.join(dir, name), { recursive: true, force: true });
      removed++;
    }
  }
  await rm(layout.tmp, { recursive: true, force: true });
  return removed;
}

/**
 * When files the ledger names are gone (DATA_DIR wiped or moved, the database kept), forgets that
 * table's files so the next export takes a fresh base of it from PostgreSQL. Returns the tables.
 */
export async function forgetMissingFiles(client: PoolClient, layout: WarehouseLayout, ledger: Ledger, log: Logger): Promise<string[]> {
  const lost: string[] = [];
  for (const table of TABLE_NAMES) {
    const files = liveFiles(ledger).filter((f) => f.table === table && f.rows > 0);
    const exists = await Promise.all(files.map((f) => access(path.join(layout.parquet, f.path)).then(() => true, () => false)));
    if (exists.every(Boolean)) continue;
    await client.query('DELETE FROM warehouse_batches WHERE table_name = $1', [table]);
    log.warn({ table }, 'warehouse Parquet files are missing; the next export takes the whole table again');
    lost.push(table);
  }
  return lost;
}
