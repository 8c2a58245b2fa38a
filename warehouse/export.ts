import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { PoolClient } from '../core/db.js';
import type { Logger } from '../core/log.js';
import { TABLE_NAMES, TABLES, type TableName } from '../core/tables.js';
import { columnNames, duckType, withMemoryDuck } from './duck.js';
import { baseRelPath, deltaRelPath, sqlString, type WarehouseLayout } from './layout.js';

export interface ExportedTable {
  table: TableName;
  kind: 'base' | 'delta';
  path: string;
  rows: number;
  deleted: number;
}

export interface ExportResult {
  /** The batch number of this export, or null when nothing had changed. */
  batch: number | null;
  tables: ExportedTable[];
}

const q = pg.escapeIdentifier;

/** The SELECT list PostgreSQL sends for a table: timestamps as UTC wall time (see duck.ts). */
function selectList(table: TableName, alias: string, withId = true): string {
  return TABLES[table].columns
    .filter((c) => withId || c.name !== 'id')
    .map((c) => (c.pgType === 'timestamptz' ? `(${alias}.${q(c.name)} AT TIME ZONE 'UTC')` : `${alias}.${q(c.name)}`))
    .join(', ');
}

/**
 * One export: moves what changed since the last export from PostgreSQL into Parquet.
 *
 * In one REPEATABLE READ transaction (one snapshot for all three tables, so every hire's
 * department and job are in the same export or an earlier one):
 *  1. DELETE the visible rows of `warehouse_changes` (the id ranges the triggers logged) into a
 *     temp table. Rows of transactions still running stay in the log for the next export.
 *  2. Per table with changes, COPY the current version of every changed id (LEFT JOIN: a missing
 *     row is a deletion) to a CSV file, and have DuckDB turn it into a ZSTD Parquet delta.
 *     A table without a base yet, or one that was TRUNCATEd, is exported whole as a new base.
 *  3. Register the files in `warehouse_batches` and COMMIT: the files become part of the
 *     warehouse exactly when their changes leave the log. A crash before COMMIT leaves the log as
 *     it was and orphan files that the next refresh deletes.
 */
export async function exportChanges(client: PoolClient, layout: WarehouseLayout, log: Logger): Promise<ExportResult> {
  await mkdir(layout.tmp, { recursive: true });
  const csvFiles: string[] = [];
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await client.query(`CREATE TEMP TABLE wh_ranges (table_name text, lo integer, hi integer) ON COMMIT DROP`);
    await client.query(`WITH d AS (DELETE FROM warehouse_changes RETURNING table_name, lo, hi)
                        INSERT INTO wh_ranges SELECT table_name, lo, hi FROM d`);
    const { rows: pending } = await client.query<{ table_name: TableName; ranges: number; whole: boolean }>(
      `SELECT table_name, count(*)::int AS ranges, bool_or(lo IS NULL) AS whole FROM wh_ranges GROUP BY table_name`,
    );
    const { rows: based } = await client.query<{ table_name: TableName }>(
      `SELECT DISTINCT table_name FROM warehouse_batches WHERE kind = 'base'`,
    );
    const hasBase = new Set(based.map((r) => r.table_name));
    const plan: { table: TableName; kind: 'base' | 'delta' }[] = [];
    for (const table of TABLE_NAMES) {
      const p = pending.find((r) => r.table_name === table);
      if (!hasBase.has(table) || p?.whole) plan.push({ table, kind: 'base' });
      else if (p) plan.push({ table, kind: 'delta' });
    }
    if (plan.length === 0) {
      await client.query('COMMIT');
      return { batch: null, tables: [] };
    }

    const { rows: seq } = await client.query<{ batch: number }>(`SELECT nextval('warehouse_batch_seq') AS batch`);
    const batch = seq[0]!.batch;
    const exported: ExportedTable[] = [];
    for (const { table, kind } of plan) {
      const csv = path.join(layout.tmp, `export-${batch}-${table}.csv`);
      csvFiles.push(csv);
      // PostgreSQL sorts (spilling to its own disk past work_mem), so DuckDB only converts the rows
      // in the order they come: sorting millions of rows in DuckDB held them in this process.
      const sql =
        kind === 'base'
          ? `SELECT ${selectList(table, 't')} FROM ${q(table)} t ORDER BY ${baseOrder(table, 't')}`
          : `SELECT g.id, ${selectList(table, 't', false)}, (t.id IS NULL)::int
               FROM (SELECT DISTINCT generate_series(lo, hi) AS id FROM wh_ranges WHERE table_name = ${pg.escapeLiteral(table)}) g
               LEFT JOIN ${q(table)} t ON t.id = g.id ORDER BY g.id`;
      const copy = client.query(copyTo(`COPY (${sql}) TO STDOUT (FORMAT csv)`));
      await pipeline(copy, createWriteStream(csv));
      const rel = kind === 'base' ? baseRelPath(table, batch) : deltaRelPath(table, batch);
      const deleted = await csvToParquet(layout, table, kind, batch, csv, rel);
      exported.push({ table, kind, path: rel, rows: copy.rowCount, deleted });
    }
    const superseded: string[] = [];
    for (const e of exported) {
      await client.query(
        `INSERT INTO warehouse_batches (batch, table_name, kind, path, rows, deleted) VALUES ($1, $2, $3, $4, $5, $6)`,
        [batch, e.table, e.kind, e.path, e.rows, e.deleted],
      );
      if (e.kind === 'base') {
        // A new base replaces everything before it for that table.
        const { rows } = await client.query<{ path: string }>(
          'DELETE FROM warehouse_batches WHERE table_name = $1 AND batch < $2 RETURNING path',
          [e.table, batch],
        );
        superseded.push(...rows.map((r) => r.path));
      }
    }
    await client.query('COMMIT');
    await Promise.all(superseded.map((p) => rm(path.join(layout.parquet, p), { recursive: true, force: true })));
    log.info({ batch, tables: exported }, 'warehouse export');
    return { batch, tables: exported };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await Promise.all(csvFiles.map((f) => rm(f, { force: true })));
  }
}

/** A base's row order: hires by time (row groups then prune well on date filters), the rest by id. */
function baseOrder(table: TableName, alias: string): string {
  return table === 'hired_employees' ? `${alias}."datetime", ${alias}."id"` : `${alias}."id"`;
}

/**
 * Writes the CSV (already in its file's row order, see exportChanges) as Parquet; answers how many
 * of a delta's rows are deletions. DuckDB streams it, rows going out in the order they come (it
 * keeps insertion order); with one thread (WAREHOUSE_THREADS' default), a 5M-row delta peaked at
 * 179 MB in a bare process, 250 MB with two threads, 566 MB when DuckDB also sorted the rows.
 */
async function csvToParquet(
  layout: WarehouseLayout,
  table: TableName,
  kind: 'base' | 'delta',
  batch: number,
  csv: string,
  rel: string,
): Promise<number> {
  const cols = TABLES[table].columns;
  const types = cols.map((c) => `${sqlString(c.name)}: ${sqlString(duckType(c))}`);
  if (kind === 'delta') types.push(`'_deleted': 'INTEGER'`);
  const source = `read_csv(${sqlString(csv)}, columns = {${types.join(', ')}}, header = false, auto_detect = false,
    delim = ',', quote = '"', escape = '"', allow_quoted_nulls = false)`;
  const names = columnNames(table).map((n) => `"${n}"`).join(', ');
  const target = path.join(layout.parquet, rel);
  await mkdir(path.dirname(target), { recursive: true });
  return withMemoryDuck(async (conn) => {
    if (kind === 'delta') {
      await conn.run(`COPY (SELECT ${names}, _deleted = 1 AS _deleted, ${batch}::BIGINT AS _batch FROM ${source})
                      TO ${sqlString(target)} (FORMAT parquet, COMPRESSION zstd)`);
      const r = await conn.runAndReadAll(`SELECT count(*)::INTEGER FROM read_parquet(${sqlString(target)}) WHERE _deleted`);
      return r.getRowsJS()[0]![0] as number;
    }
    if (table === 'hired_employees') {
      // Hive partitions by UTC year, each file's rows in time order.
      await conn.run(`COPY (SELECT ${names}, year(datetime) AS year FROM ${source})
                      TO ${sqlString(target)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (year), OVERWRITE_OR_IGNORE)`);
    } else {
      await conn.run(`COPY (SELECT ${names} FROM ${source}) TO ${sqlString(target)} (FORMAT parquet, COMPRESSION zstd)`);
    }
    return 0;
  });
}
