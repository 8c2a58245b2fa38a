import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { PoolClient } from '../core/db.js';
import type { Logger } from '../core/log.js';
import { TABLE_NAMES, type TableName } from '../core/tables.js';
import { columnNames, withMemoryDuck } from './duck.js';
import type { Ledger } from './ledger.js';
import { baseRelPath, sqlString, type WarehouseLayout } from './layout.js';
import { currentRowsSql } from './sources.js';

/**
 * Compaction: once a table has `after` deltas, merge its base and deltas into a new base that
 * carries the batch number of the last delta it merged, register it in place of them (one
 * transaction), then delete the old files. The published DuckDB file already holds that state,
 * so it is not rebuilt. Runs under the refresh lock, so no export adds deltas meanwhile.
 */
export async function compact(client: PoolClient, layout: WarehouseLayout, ledger: Ledger, after: number, log: Logger): Promise<TableName[]> {
  const done: TableName[] = [];
  for (const table of TABLE_NAMES) {
    const entry = ledger[table];
    if (entry.deltas.length < after) continue;
    const covers = entry.deltas.at(-1)!.batch;
    const rel = baseRelPath(table, covers);
    const target = path.join(layout.parquet, rel);
    await rm(target, { recursive: true, force: true });
    await mkdir(path.dirname(target), { recursive: true });
    const names = columnNames(table).map((n) => `"${n}"`).join(', ');
    const rows = await withMemoryDuck(async (conn) => {
      await conn.run(`CREATE TEMP VIEW cur AS ${currentRowsSql(layout.parquet, table, entry)}`);
      const n = (await conn.runAndReadAll('SELECT count(*)::INTEGER FROM cur')).getRowsJS()[0]![0] as number;
      if (table === 'hired_employees') {
        if (n > 0) {
          await conn.run(`COPY (SELECT ${names}, year(datetime) AS year FROM cur ORDER BY datetime, id)
                          TO ${sqlString(target)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (year), OVERWRITE_OR_IGNORE)`);
        }
      } else {
        await conn.run(`COPY (SELECT ${names} FROM cur ORDER BY id) TO ${sqlString(target)} (FORMAT parquet, COMPRESSION zstd)`);
      }
      return n;
    });
    try {
      await client.query('BEGIN');
      await client.query('DELETE FROM warehouse_batches WHERE table_name = $1 AND batch <= $2', [table, covers]);
      await client.query(
        `INSERT INTO warehouse_batches (batch, table_name, kind, path, rows, deleted) VALUES ($1, $2, 'base', $3, $4, 0)`,
        [covers, table, rel, rows],
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      await rm(target, { recursive: true, force: true });
      throw err;
    }
    const old = [...(entry.base ? [entry.base] : []), ...entry.deltas];
    await Promise.all(old.map((f) => rm(path.join(layout.parquet, f.path), { recursive: true, force: true })));
    log.info({ table, batch: covers, rows, merged: old.length }, 'warehouse compaction');
    done.push(table);
  }
  return done;
}
