import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { PoolClient } from '../core/db.js';
import type { Logger } from '../core/log.js';
import { TABLE_NAMES, type TableName } from '../core/tables.js';
import { columnNames, withMemoryDuck } from './duck.js';
import type { BatchFile, Ledger } from './ledger.js';
import { baseRelPath, mergedDeltaRelPath, sqlString, type WarehouseLayout } from './layout.js';
import { currentRowsSql, latestChangesSql } from './sources.js';

/**
 * Deltas of a table reach this share of its base's rows before compaction rewrites the base;
 * below it they are merged into one delta, which costs what the deltas weigh, not the table.
 */
const REBASE_SHARE = 0.1;

/**
 * Compaction, once a table has `after` deltas. While they are small next to the base they are
 * merged into one delta (the newest row of each id, with its `_batch`), so compaction does not
 * rewrite millions of rows for a few thousand changed ones; past REBASE_SHARE, base and deltas
 * become a new base. Either way the new file carries the batch of the last delta it merged and is
 * registered in place of the old ones in one transaction; then the old files are deleted. The
 * DuckDB files need no rebuild: a merged delta still says which batch each row came from, so a
 * file caught up to any batch among them takes only the rows after it.
 * Runs under the refresh lock, so no export adds deltas meanwhile.
 */
export async function compact(client: PoolClient, layout: WarehouseLayout, ledger: Ledger, after: number, log: Logger): Promise<TableName[]> {
  const done: TableName[] = [];
  for (const table of TABLE_NAMES) {
    const entry = ledger[table];
    if (entry.deltas.length < after) continue;
    const changed = entry.deltas.reduce((n, d) => n + d.rows, 0);
    const into = entry.base && entry.base.rows > 0 && changed < REBASE_SHARE * entry.base.rows ? 'delta' : 'base';
    const first = entry.deltas[0]!.batch;
    const covers = entry.deltas.at(-1)!.batch;
    const rel = into === 'base' ? baseRelPath(table, covers) : mergedDeltaRelPath(table, first, covers);
    const target = path.join(layout.parquet, rel);
    await rm(target, { recursive: true, force: true });
    await mkdir(path.dirname(target), { recursive: true });
    const counts = await withMemoryDuck((conn) =>
      into === 'base' ? writeBase(conn, layout, table, entry, target) : writeMergedDelta(conn, layout, table, entry.deltas, target),
    );
    try {
      await client.query('BEGIN');
      if (into === 'base') {
        await client.query('DELETE FROM warehouse_batches WHERE table_name = $1 AND batch <= $2', [table, covers]);
      } else {
        await client.query(`DELETE FROM warehouse_batches WHERE table_name = $1 AND kind = 'delta' AND batch <= $2`, [table, covers]);
      }
      await client.query(
        `INSERT INTO warehouse_batches (batch, table_name, kind, path, rows, deleted) VALUES ($1, $2, $3, $4, $5, $6)`,
        [covers, table, into, rel, counts.rows, counts.deleted],
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      await rm(target, { recursive: true, force: true });
      throw err;
    }
    const old = [...(into === 'base' && entry.base ? [entry.base] : []), ...entry.deltas];
    await Promise.all(old.map((f) => rm(path.join(layout.parquet, f.path), { recursive: true, force: true })));
    log.info({ table, batch: covers, into, rows: counts.rows, merged: old.length }, 'warehouse compaction');
    done.push(table);
  }
  return done;
}

type Conn = Parameters<Parameters<typeof withMemoryDuck>[0]>[0];

async function writeBase(conn: Conn, layout: WarehouseLayout, table: TableName, entry: Ledger[TableName], target: string) {
  const names = columnNames(table).map((n) => `"${n}"`).join(', ');
  await conn.run(`CREATE TEMP VIEW cur AS ${currentRowsSql(layout.parquet, table, entry)}`);
  const rows = (await conn.runAndReadAll('SELECT count(*)::INTEGER FROM cur')).getRowsJS()[0]![0] as number;
  if (table === 'hired_employees') {
    if (rows > 0) {
      await conn.run(`COPY (SELECT ${names}, year(datetime) AS year FROM cur ORDER BY datetime, id)
                      TO ${sqlString(target)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (year), OVERWRITE_OR_IGNORE)`);
    }
  } else {
    await conn.run(`COPY (SELECT ${names} FROM cur ORDER BY id) TO ${sqlString(target)} (FORMAT parquet, COMPRESSION zstd)`);
  }
  return { rows, deleted: 0 };
}

/** The newest row of each id among `deltas`, `_deleted` and `_batch` kept, as one delta file. */
async function writeMergedDelta(conn: Conn, layout: WarehouseLayout, table: TableName, deltas: BatchFile[], target: string) {
  const names = columnNames(table).map((n) => `"${n}"`).join(', ');
  const files = deltas.map((d) => sqlString(path.join(layout.parquet, d.path))).join(', ');
  await conn.run(`COPY (SELECT ${names}, _deleted, _batch FROM read_parquet([${files}])
                        QUALIFY row_number() OVER (PARTITION BY id ORDER BY _batch DESC) = 1 ORDER BY id)
                  TO ${sqlString(target)} (FORMAT parquet, COMPRESSION zstd)`);
  const [row] = (await conn.runAndReadAll(`SELECT count(*)::INTEGER, count(*) FILTER (WHERE _deleted)::INTEGER FROM read_parquet(${sqlString(target)})`)).getRowsJS();
  return { rows: row![0] as number, deleted: row![1] as number };
}
