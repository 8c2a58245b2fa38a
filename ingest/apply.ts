import pg from 'pg';
import type { Pool, PoolClient } from '../core/db.js';
import type { RowBatch, TableDef, TableName } from '../core/tables.js';
import { missingFlag, referenceChecks, unknownReference, upsertIfDifferent, type Reject } from '../pg/index.js';

export interface ApplyResult {
  inserted: number;
  updated: number;
  /** Rows whose id already held exactly these values: nothing was written for them. */
  unchanged: number;
  /** Rows that passed the field rules but named a department or job that does not exist. */
  rejects: Reject[];
}

const q = pg.escapeIdentifier;
const statements = new Map<TableName, string>();

/**
 * One statement per table, derived from the data dictionary: unnest the column arrays, flag rows
 * whose references do not exist (set-based), keep the last valid row per id (rows apply in order,
 * so the later one wins), upsert those, and return what happened. Rows whose values equal the
 * stored ones are not rewritten, so a retried batch changes nothing at all.
 */
export function upsertStatement(table: TableDef): string {
  const cached = statements.get(table.name);
  if (cached) return cached;
  const cols = table.columns;
  const names = cols.map((c) => q(c.name));
  const refs = referenceChecks(table);
  const unnest = cols.map((c, i) => `$${i + 1}::${c.pgType}[]`).join(', ');
  const flags = refs.map((r) => q(r.flag));
  const valid = refs.length ? flags.map((f) => `NOT ${f}`).join(' AND ') : 'true';
  const sql = `
WITH input AS (
  SELECT * FROM unnest(${unnest}, $${cols.length + 1}::integer[]) AS i(${names.join(', ')}, pos)
), checked AS (
  SELECT i.*${refs.map((r) => `, ${missingFlag(r, 'i')}`).join('')} FROM input i
), upserted AS (
  ${upsertIfDifferent(table, { from: 'checked', where: valid, lastBy: 'pos' })}
)
SELECT id, inserted, NULL::integer AS pos${flags.map((f) => `, NULL::boolean AS ${f}`).join('')}
  FROM upserted
UNION ALL
SELECT NULL, NULL, pos${flags.map((f) => `, ${f}`).join('')}
  FROM checked WHERE NOT (${valid})`;
  statements.set(table.name, sql);
  return sql;
}

interface UpsertRow {
  id: number | null;
  inserted: boolean | null;
  pos: number | null;
  [missing: `missing_${string}`]: boolean | null;
}

/**
 * Counts rows as if they had been applied one by one, in order: the first row of each id takes
 * what the database did with that id; each later row of the same id is an update, or unchanged
 * when it repeats the row before it.
 */
function countRows(
  columns: readonly unknown[][],
  skip: ReadonlySet<number>,
  written: ReadonlyMap<number, boolean>,
  into: ApplyResult,
): void {
  const ids = columns[0] as number[];
  const last = new Map<number, number>();
  for (let i = 0; i < ids.length; i++) {
    if (skip.has(i)) continue;
    const id = ids[i]!;
    const prev = last.get(id);
    last.set(id, i);
    if (prev !== undefined) {
      if (columns.every((col) => col[i] === col[prev])) into.unchanged++;
      else into.updated++;
      continue;
    }
    const inserted = written.get(id);
    if (inserted === undefined) into.unchanged++;
    else if (inserted) into.inserted++;
    else into.updated++;
  }
}

/**
 * Applies a validated batch in one statement, on the caller's connection and transaction (which
 * retries the whole transaction on a deadlock or a reference deleted under it). `rawOf` gives the
 * original text of a row for the rejects it produces (unknown references).
 */
export async function applyBatch(
  db: Pool | PoolClient,
  batch: RowBatch,
  rawOf: (index: number) => { raw: string; truncated: boolean },
): Promise<ApplyResult> {
  const result: ApplyResult = { inserted: 0, updated: 0, unchanged: 0, rejects: [] };
  if (batch.length === 0) return result;
  const table = batch.table;
  const positions = batch.positions.map((_, i) => i);
  const { rows } = await db.query<UpsertRow>(upsertStatement(table), [...batch.columns, positions]);

  const refs = referenceChecks(table);
  const rejected = new Set<number>();
  const written = new Map<number, boolean>();
  for (const row of rows) {
    if (row.pos === null) {
      written.set(row.id!, row.inserted!);
      continue;
    }
    const pos = row.pos;
    rejected.add(pos);
    result.rejects.push({
      position: batch.positions[pos]!,
      ...rawOf(pos),
      errors: refs.filter((r) => row[r.flag]).map((r) => unknownReference(r, batch.columns[r.index]![pos])),
    });
  }
  result.rejects.sort((a, b) => a.position - b.position);

  countRows(batch.columns, rejected, written, result);
  return result;
}
