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
const statements = new Map<string, string>();

/**
 * One statement per table, derived from the data dictionary: unnest the column arrays, flag rows
 * whose references do not exist (set-based), keep the last valid row per id (rows apply in order,
 * so the later one wins), upsert those in ascending id order, and return what happened. Rows whose
 * values equal the stored ones are not rewritten, so a retried batch changes nothing at all.
 *
 * Ascending id order is the lock order: two batches with overlapping ids wait for each other
 * instead of deadlocking. With `allOrNothing`, no row is written when any row names a missing
 * reference (the rows flagged are still returned): the statement can then run on its own,
 * committing by itself, and the caller redoes the batch in a transaction with its rejects.
 */
export function upsertStatement(table: TableDef, { allOrNothing = false } = {}): string {
  const key = `${table.name}:${allOrNothing}`;
  const cached = statements.get(key);
  if (cached) return cached;
  const cols = table.columns;
  const names = cols.map((c) => q(c.name));
  const refs = referenceChecks(table);
  const unnest = cols.map((c, i) => `$${i + 1}::${c.pgType}[]`).join(', ');
  const flags = refs.map((r) => q(r.flag));
  const valid = refs.length ? flags.map((f) => `NOT ${f}`).join(' AND ') : 'true';
  const where = refs.length && allOrNothing ? `${valid} AND NOT EXISTS (SELECT 1 FROM checked c WHERE NOT (${valid}))` : valid;
  const sql = `
WITH input AS (
  SELECT * FROM unnest(${unnest}, $${cols.length + 1}::integer[]) AS i(${names.join(', ')}, pos)
), checked AS (
  SELECT i.*${refs.map((r) => `, ${missingFlag(r, 'i')}`).join('')} FROM input i
), upserted AS (
  ${upsertIfDifferent(table, { from: 'checked', where, lastBy: 'pos' })}
)
SELECT id, inserted, NULL::integer AS pos${flags.map((f) => `, NULL::boolean AS ${f}`).join('')}
  FROM upserted
UNION ALL
SELECT NULL, NULL, pos${flags.map((f) => `, ${f}`).join('')}
  FROM checked WHERE NOT (${valid})`;
  statements.set(key, sql);
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
 * A column as a PostgreSQL array literal (text), built here in one pass rather than element by
 * element by the driver. Integers are written as they are; text is always quoted, with `"` and
 * `\` escaped, so nothing in a value can read as array syntax. Values are the rules' output: no
 * NULL, no NUL character.
 */
export function arrayLiteral(values: readonly unknown[], pgType: TableDef['columns'][number]['pgType']): string {
  if (pgType === 'integer') {
    for (const v of values) if (!Number.isSafeInteger(v)) throw new TypeError(`not an integer: ${String(v)}`);
    return `{${values.join(',')}}`;
  }
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'string') throw new TypeError(`not a string: ${String(v)}`);
    if (i > 0) out += ',';
    out += NEEDS_ESCAPE.test(v) ? `"${v.replace(ESCAPES, '\\$&')}"` : `"${v}"`;
  }
  return out + '}';
}
const NEEDS_ESCAPE = /["\\]/;
const ESCAPES = /["\\]/g;

/**
 * Applies a validated batch in one statement, on the caller's connection and transaction (which
 * retries the whole transaction on a deadlock or a reference deleted under it). `rawOf` gives the
 * original text of a row for the rejects it produces (unknown references).
 *
 * With `allOrNothing` (see upsertStatement) the statement may run outside a transaction; it
 * answers null, having written nothing, when some row names a missing reference.
 */
export async function applyBatch(
  db: Pool | PoolClient,
  batch: RowBatch,
  rawOf: (index: number) => { raw: string; truncated: boolean },
  opts: { allOrNothing: true },
): Promise<ApplyResult | null>;
export async function applyBatch(
  db: Pool | PoolClient,
  batch: RowBatch,
  rawOf: (index: number) => { raw: string; truncated: boolean },
  opts?: { allOrNothing?: false },
): Promise<ApplyResult>;
export async function applyBatch(
  db: Pool | PoolClient,
  batch: RowBatch,
  rawOf: (index: number) => { raw: string; truncated: boolean },
  { allOrNothing = false }: { allOrNothing?: boolean } = {},
): Promise<ApplyResult | null> {
  const result: ApplyResult = { inserted: 0, updated: 0, unchanged: 0, rejects: [] };
  if (batch.length === 0) return result;
  const table = batch.table;
  const params = batch.columns.map((col, i) => arrayLiteral(col, table.columns[i]!.pgType));
  params.push(arrayLiteral(batch.positions.map((_, i) => i), 'integer'));
  const { rows } = await db.query<UpsertRow>(upsertStatement(table, { allOrNothing }), params);
  if (allOrNothing && rows.some((row) => row.pos !== null)) return null;

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
