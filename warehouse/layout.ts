import path from 'node:path';
import type { TableName } from '../core/tables.js';

/**
 * Where the warehouse keeps its files, all under `config.dirs.warehouse`:
 *
 *   hr.duckdb                          link to the published star schema, one file of versions/
 *   versions/hr-<n>.duckdb             the published file and the one before it, used in turn
 *   parquet/manifest.json              which Parquet files make up each table, and how to read them
 *   parquet/<table>/base-<batch>...    a full copy of the table as of that batch
 *   parquet/<table>/delta-<batch>.parquet  the ids changed since, with `_deleted` and `_batch`
 *   parquet/<table>/delta-<first>-<last>.parquet  deltas first..last merged by compaction
 *   tmp/                               scratch (CSV from PostgreSQL, DuckDB files being built)
 *
 * hired_employees bases are Hive-partitioned by UTC year: base-<batch>/year=2021/data_0.parquet.
 */
export interface WarehouseLayout {
  root: string;
  duckdb: string;
  versions: string;
  parquet: string;
  manifest: string;
  tmp: string;
}

export function layoutOf(warehouseDir: string): WarehouseLayout {
  return {
    root: warehouseDir,
    duckdb: path.join(warehouseDir, 'hr.duckdb'),
    versions: path.join(warehouseDir, 'versions'),
    parquet: path.join(warehouseDir, 'parquet'),
    manifest: path.join(warehouseDir, 'parquet', 'manifest.json'),
    tmp: path.join(warehouseDir, 'tmp'),
  };
}

const pad = (batch: number) => String(batch).padStart(10, '0');

/** Relative to the Parquet folder. A partitioned base is a folder, the others are files. */
export function baseRelPath(table: TableName, batch: number): string {
  return table === 'hired_employees' ? `${table}/base-${pad(batch)}` : `${table}/base-${pad(batch)}.parquet`;
}

export function deltaRelPath(table: TableName, batch: number): string {
  return `${table}/delta-${pad(batch)}.parquet`;
}

/** Deltas `first`..`last` merged by compaction into one (registered under batch `last`). */
export function mergedDeltaRelPath(table: TableName, first: number, last: number): string {
  return `${table}/delta-${pad(first)}-${pad(last)}.parquet`;
}

/** A DuckDB string literal; our paths never come from input, this only guards quoting. */
export function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** The read_parquet() source of a base: the whole partition tree for a partitioned one. */
export function baseGlob(parquetDir: string, relPath: string): string {
  const full = path.join(parquetDir, relPath);
  return relPath.endsWith('.parquet') ? full : path.join(full, '*', '*.parquet');
}
