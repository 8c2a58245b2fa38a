import type { Pool, PoolClient } from '../core/db.js';
import { TABLE_NAMES, type TableName } from '../core/tables.js';

/** One Parquet file (or partitioned folder) registered in `warehouse_batches`. */
export interface BatchFile {
  batch: number;
  table: TableName;
  kind: 'base' | 'delta';
  path: string;
  rows: number;
  deleted: number;
  createdAt: string;
}

/** What makes up each table now: its newest base and the deltas after it, oldest first. */
export type Ledger = Record<TableName, { base: BatchFile | null; deltas: BatchFile[] }>;

export async function readLedger(db: Pool | PoolClient): Promise<Ledger> {
  const { rows } = await db.query<{
    batch: number;
    table_name: TableName;
    kind: 'base' | 'delta';
    path: string;
    rows: number;
    deleted: number;
    created_at: Date;
  }>("SELECT batch, table_name, kind, path, rows, deleted, created_at FROM warehouse_batches ORDER BY batch, kind = 'base'");
  const ledger: Ledger = {
    departments: { base: null, deltas: [] },
    jobs: { base: null, deltas: [] },
    hired_employees: { base: null, deltas: [] },
  };
  for (const r of rows) {
    const file: BatchFile = {
      batch: r.batch,
      table: r.table_name,
      kind: r.kind,
      path: r.path,
      rows: r.rows,
      deleted: r.deleted,
      createdAt: r.created_at.toISOString(),
    };
    const entry = ledger[r.table_name];
    if (!entry) continue;
    if (file.kind === 'base') {
      entry.base = file;
      entry.deltas = [];
    } else {
      entry.deltas.push(file);
    }
  }
  return ledger;
}

/** The highest batch number any current file carries (0 before the first export). */
export function lastBatch(ledger: Ledger): number {
  let max = 0;
  for (const t of TABLE_NAMES) {
    const e = ledger[t];
    if (e.base) max = Math.max(max, e.base.batch);
    for (const d of e.deltas) max = Math.max(max, d.batch);
  }
  return max;
}

export function liveFiles(ledger: Ledger): BatchFile[] {
  return TABLE_NAMES.flatMap((t) => [...(ledger[t].base ? [ledger[t].base!] : []), ...ledger[t].deltas]);
}
