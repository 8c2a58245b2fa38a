import type { DuckDBConnection } from '@duckdb/node-api';
import { TABLE_NAMES } from '../core/tables.js';
import { queryRows } from './duck.js';
import type { Ledger } from './ledger.js';
import { AGG_SELECT, calendarSql, FACT_SELECT, SCHEMA_VERSION } from './schema.js';
import { latestChangesSql } from './sources.js';
import type { VersionInfo } from './versions.js';

/**
 * The changes table is folded into the base once it holds this share of the base's rows (and at
 * least FOLD_MIN_ROWS): readers of fact_hires pay an anti-join against it, and a fold costs about
 * one scan of the base plus a checkpoint of its touched row groups.
 */
const FOLD_SHARE = 0.01;
const FOLD_MIN_ROWS = 10_000;

/** What a DuckDB file says it holds (its warehouse_info row). */
export async function readFileInfo(conn: DuckDBConnection): Promise<VersionInfo | null> {
  const [row] = await queryRows<{ schema_version: number; last_batch: number; refreshed_at: string }>(
    conn,
    `SELECT schema_version, last_batch::DOUBLE AS last_batch, refreshed_at::VARCHAR AS refreshed_at FROM warehouse_info`,
  );
  return row ? { schemaVersion: row.schema_version, lastBatch: row.last_batch, refreshedAt: row.refreshed_at } : null;
}

export async function describeFile(
  conn: DuckDBConnection,
  row: { target: number; refreshedAt: string; build: 'full' | 'incremental'; ms: number },
): Promise<void> {
  await conn.run('DELETE FROM warehouse_info');
  await conn.run(`INSERT INTO warehouse_info VALUES ($1, $2, $2, $3::TIMESTAMPTZ, $4, $5)`, [
    SCHEMA_VERSION,
    row.target,
    row.refreshedAt,
    row.build,
    row.ms,
  ]);
}

/**
 * Catches an open file up from batch `after` to the ledger: the newest change per id of the later
 * deltas, applied and described (`describe` writes warehouse_info) in one transaction, so a crash
 * before COMMIT leaves the file as it was. Returns whether the changes were folded into the base.
 */
export async function catchUp(
  conn: DuckDBConnection,
  parquetDir: string,
  ledger: Ledger,
  after: number,
  describe: (conn: DuckDBConnection) => Promise<void>,
): Promise<boolean> {
  await conn.run('BEGIN TRANSACTION');
  const changed = new Set<string>();
  for (const table of TABLE_NAMES) {
    const deltas = ledger[table].deltas.filter((d) => d.batch > after);
    if (deltas.length === 0) continue;
    await conn.run(`CREATE TEMP TABLE chg_${table} AS ${latestChangesSql(parquetDir, deltas, table, after)}`);
    changed.add(table);
  }
  const folded = await applyChanges(conn, changed);
  await describe(conn);
  // This commit checkpoints straight into the file instead of writing the WAL, fsyncing it, and
  // checkpointing after (auto_checkpoint_skip_wal_threshold is 0 on the build instance, see
  // duck.ts): a crash before the checkpoint's header is written leaves the file as it was.
  await conn.run(`SET GLOBAL checkpoint_threshold = '0b'`);
  try {
    await conn.run('COMMIT');
  } finally {
    await conn.run('RESET GLOBAL checkpoint_threshold');
  }
  return folded;
}

/**
 * The incremental build, applied to a file that is not published (the older version, or a
 * copy): `chg_<table>` temp tables hold the newest change per id (with `_deleted`). The
 * aggregate is adjusted by difference (minus the old version of each changed hire, plus the new
 * one). fact_hires_base is only read, once, for the old versions of changed hires that have no
 * row in fact_hires_changes yet; new versions and deletion markers go to fact_hires_changes. So
 * the writes, and the checkpoint after, follow the change, not the size of the warehouse.
 * Returns whether the changes were folded into the base.
 */
async function applyChanges(conn: DuckDBConnection, changed: Set<string>): Promise<boolean> {
  if (changed.has('departments')) {
    await conn.run(`DELETE FROM dim_department WHERE department_id IN (SELECT id FROM chg_departments)`);
    await conn.run(`INSERT INTO dim_department SELECT id, department FROM chg_departments WHERE NOT _deleted`);
  }
  if (changed.has('jobs')) {
    await conn.run(`DELETE FROM dim_job WHERE job_id IN (SELECT id FROM chg_jobs)`);
    await conn.run(`INSERT INTO dim_job SELECT id, job FROM chg_jobs WHERE NOT _deleted`);
  }
  if (!changed.has('hired_employees')) return false;

  // The old version of each changed hire: its row in fact_hires_changes if it has one (none when
  // that row is a deletion marker), else its base row. Minus the old versions, plus the new ones:
  // what the aggregate gains.
  //
  // Finding base rows is the one read of the base: four narrow columns, joined to the ids. No
  // index: an ART index on 10M rows takes seconds to build and is rewritten by every checkpoint.
  // An inner join with a temp table of the ids ran 10-30% faster than the semi-join with EXCEPT
  // it replaces (same run, loaded machine).
  await conn.run(`CREATE TEMP TABLE base_ids AS
    SELECT id FROM chg_hired_employees WHERE id NOT IN (SELECT hire_id FROM fact_hires_changes)`);
  const oldHires = `(SELECT date_key, department_id, job_id FROM fact_hires_changes
                      WHERE hire_id IN (SELECT id FROM chg_hired_employees) AND NOT deleted
    UNION ALL
    SELECT b.date_key, b.department_id, b.job_id FROM fact_hires_base b JOIN base_ids c ON b.hire_id = c.id)`;
  await conn.run(`CREATE TEMP TABLE agg_diff AS
    SELECT year, quarter, department_id, job_id, sum(hires)::INTEGER AS hires FROM (
      SELECT year, quarter, department_id, job_id, -hires AS hires FROM (${AGG_SELECT(oldHires)})
      UNION ALL ${AGG_SELECT(`(${FACT_SELECT} FROM chg_hired_employees WHERE NOT _deleted)`)}
    ) GROUP BY ALL HAVING sum(hires) <> 0`);

  // The new version of each changed hire, or for a deleted one a marker (the export's row of a
  // deleted id holds only the id), which hides its base row (if it has one) from fact_hires.
  await conn.run(`DELETE FROM fact_hires_changes WHERE hire_id IN (SELECT id FROM chg_hired_employees)`);
  await conn.run(`INSERT INTO fact_hires_changes ${FACT_SELECT}, _deleted FROM chg_hired_employees`);

  await conn.run(`MERGE INTO agg_hires_by_quarter a USING agg_diff d
      ON a.year = d.year AND a.quarter = d.quarter AND a.department_id = d.department_id AND a.job_id = d.job_id
    WHEN MATCHED AND a.hires + d.hires <= 0 THEN DELETE
    WHEN MATCHED THEN UPDATE SET hires = a.hires + d.hires
    WHEN NOT MATCHED AND d.hires > 0 THEN INSERT VALUES (d.year, d.quarter, d.department_id, d.job_id, d.hires)`);
  // A new year can only come with a cell that gained hires.
  await conn.run(`INSERT INTO dim_date ${calendarSql('(SELECT DISTINCT year FROM agg_diff WHERE hires > 0 AND year NOT IN (SELECT year FROM dim_date))')}`);
  return foldIfLarge(conn);
}

/**
 * Moves fact_hires_changes into fact_hires_base once it has grown past FOLD_SHARE of it. The base's
 * size comes from the catalog (rows stored, a fold's deleted ones included until they are vacuumed):
 * close enough for a threshold, where count(*) took ~17 ms per refresh at 10M hires.
 */
async function foldIfLarge(conn: DuckDBConnection): Promise<boolean> {
  const [{ changes, base }] = (await queryRows<{ changes: number; base: number }>(
    conn,
    `SELECT (SELECT count(*) FROM fact_hires_changes)::DOUBLE AS changes, (SELECT estimated_size FROM duckdb_tables()
      WHERE database_name = current_database() AND schema_name = 'main' AND table_name = 'fact_hires_base')::DOUBLE AS base`,
  )) as [{ changes: number; base: number }];
  if (changes < Math.max(FOLD_MIN_ROWS, FOLD_SHARE * base)) return false;
  await conn.run(`DELETE FROM fact_hires_base WHERE hire_id IN (SELECT hire_id FROM fact_hires_changes)`);
  await conn.run(`INSERT INTO fact_hires_base SELECT * EXCLUDE (deleted) FROM fact_hires_changes WHERE NOT deleted ORDER BY hire_id`);
  await conn.run(`DELETE FROM fact_hires_changes`);
  return true;
}
