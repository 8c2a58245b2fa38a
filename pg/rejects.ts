import type { Pool, PoolClient } from '../core/db.js';
import type { FieldIssue, TableName } from '../core/tables.js';

/** A row that broke a rule, as every write path reports it and the `rejects` table keeps it. */
export interface Reject {
  /** 0-based position in a batch, or 1-based line in a file. */
  position: number;
  raw: string;
  errors: FieldIssue[];
}

export type RejectSource = 'ingest' | 'load' | 'restore';

/** Keeps rejects in the rejects table; a no-op for none. */
export async function storeRejects(
  db: Pool | PoolClient,
  source: RejectSource,
  sourceId: string,
  table: TableName,
  rejects: readonly Reject[],
): Promise<void> {
  if (rejects.length === 0) return;
  await db.query(
    `INSERT INTO rejects (source, source_id, table_name, position, raw, errors)
     SELECT $1, $2, $3, r.position, r.raw, r.errors
       FROM unnest($4::bigint[], $5::text[], $6::jsonb[]) AS r(position, raw, errors)`,
    [
      source,
      sourceId,
      table,
      rejects.map((r) => r.position),
      rejects.map((r) => r.raw),
      rejects.map((r) => JSON.stringify(r.errors)),
    ],
  );
}
