import { TABLES, type TableName } from '../core/tables.js';
import { columnNames, duckType } from './duck.js';
import type { BatchFile, Ledger } from './ledger.js';
import { baseGlob, sqlString } from './layout.js';
import path from 'node:path';

/**
 * SQL that reads a table's current rows from its Parquet files. This is also the rule the
 * manifest states for other engines: the base rows whose id is in no later delta, plus the newest
 * delta row of each id unless that row says `_deleted`.
 */
export function currentRowsSql(parquetDir: string, table: TableName, entry: Ledger[TableName]): string {
  const names = columnNames(table).map((n) => `"${n}"`).join(', ');
  const base = entry.base && entry.base.rows > 0 ? baseSql(parquetDir, table, entry.base) : null;
  const deltas = entry.deltas.length > 0 ? latestChangesSql(parquetDir, entry.deltas, table) : null;
  if (base && deltas) {
    return `SELECT ${names} FROM (${base}) b WHERE b.id NOT IN (SELECT id FROM (${deltas}))
            UNION ALL SELECT ${names} FROM (${deltas}) WHERE NOT _deleted`;
  }
  if (base) return base;
  if (deltas) return `SELECT ${names} FROM (${deltas}) WHERE NOT _deleted`;
  return emptySql(table);
}

function baseSql(parquetDir: string, table: TableName, base: BatchFile): string {
  const names = columnNames(table).map((n) => `"${n}"`).join(', ');
  return `SELECT ${names} FROM read_parquet(${sqlString(baseGlob(parquetDir, base.path))}, hive_partitioning = false)`;
}

/**
 * The newest change of each id among `deltas`, with its `_deleted` flag; with `after`, only
 * changes of later batches (a delta merged by compaction also holds older ones).
 */
export function latestChangesSql(parquetDir: string, deltas: readonly BatchFile[], table: TableName, after?: number): string {
  const names = columnNames(table).map((n) => `"${n}"`).join(', ');
  const files = deltas.map((d) => sqlString(path.join(parquetDir, d.path))).join(', ');
  return `SELECT ${names}, _deleted FROM read_parquet([${files}])${after === undefined ? '' : ` WHERE _batch > ${Number(after)}`}
          QUALIFY row_number() OVER (PARTITION BY id ORDER BY _batch DESC) = 1`;
}

function emptySql(table: TableName): string {
  return `SELECT ${TABLES[table].columns.map((c) => `NULL::${duckType(c)} AS "${c.name}"`).join(', ')} WHERE false`;
}
