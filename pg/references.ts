import pg from 'pg';
import type { Pool, PoolClient } from '../core/db.js';
import { TABLE_NAMES, TABLES, type FieldIssue, type TableDef, type TableName } from '../core/tables.js';

/**
 * The one builder of reference checks ("does the department / job this row names exist?"),
 * derived from the data dictionary's `ref` columns. The batch API and restores check rows
 * set-based inside their own statements (`missingReference`); CSV loads look the distinct ids up
 * once per chunk and lock them (`findMissingReferences`). All of them reject with the same issue.
 */

const q = pg.escapeIdentifier;

/** One `ref` column: the reference a row must satisfy to be written. */
export interface ReferenceCheck {
  /** The column (e.g. `department_id`) and its position among the table's columns. */
  readonly column: string;
  readonly index: number;
  /** The table whose `id` it names. */
  readonly references: TableName;
  /** The name of the boolean `missingFlag` returns: `missing_department_id`. */
  readonly flag: `missing_${string}`;
}

const cache = new Map<TableDef, readonly ReferenceCheck[]>();

/** The reference checks of a table's rows, in column order; none for a table without `ref` columns. */
export function referenceChecks(table: TableDef): readonly ReferenceCheck[] {
  let checks = cache.get(table);
  if (!checks) {
    checks = table.columns.flatMap((c, index) =>
      c.references ? [{ column: c.name, index, references: c.references, flag: `missing_${c.name}` as const }] : [],
    );
    cache.set(table, checks);
  }
  return checks;
}

/** The other way round: the reference checks of every table (`child`) whose rows name ids of `table`. */
export function referencesTo(table: TableName): { child: TableDef; check: ReferenceCheck }[] {
  return TABLE_NAMES.flatMap((name) =>
    referenceChecks(TABLES[name])
      .filter((check) => check.references === table)
      .map((check) => ({ child: TABLES[name], check })),
  );
}

/** SQL: row `alias` names an id its referenced table does not hold. */
export function missingReference(check: ReferenceCheck, alias: string): string {
  return `NOT EXISTS (SELECT 1 FROM ${q(check.references)} p WHERE p.id = ${alias}.${q(check.column)})`;
}

/** SQL select-list item: `missingReference` as the boolean column `check.flag`. */
export function missingFlag(check: ReferenceCheck, alias: string): string {
  return `${missingReference(check, alias)} AS ${q(check.flag)}`;
}

/** What a row naming a missing id is rejected with: `unknown department_id 200`. */
export function unknownReference(check: ReferenceCheck, value: unknown): FieldIssue {
  return { field: check.column, message: `unknown ${check.column} ${String(value)}` };
}

/**
 * The ids among `ids` that `check.references` does not hold. With `lock`, the ones it holds are
 * locked FOR KEY SHARE, as PostgreSQL's foreign-key trigger would lock them, so nobody deletes
 * them before the transaction ends; in id order, so writers locking overlapping sets cannot deadlock.
 */
export async function findMissingReferences(
  db: Pool | PoolClient,
  check: ReferenceCheck,
  ids: Iterable<number>,
  { lock = false }: { lock?: boolean } = {},
): Promise<Set<number>> {
  const wanted = [...new Set(ids)].sort((a, b) => a - b);
  const { rows } = await db.query<{ id: number }>(
    `SELECT id FROM ${q(check.references)} WHERE id = ANY($1::integer[]) ORDER BY id${lock ? ' FOR KEY SHARE' : ''}`,
    [wanted],
  );
  const found = new Set(rows.map((r) => r.id));
  return new Set(wanted.filter((id) => !found.has(id)));
}
