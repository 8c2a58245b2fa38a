import pg from 'pg';
import type { TableDef } from '../core/tables.js';

/**
 * The one builder of "write only what differs" SQL, derived from the data dictionary: the batch
 * API, the CSV loads and restores all decide what changed with the same predicate. Identifiers are
 * the dictionary's (or the caller's fixed staging names), always quoted; values travel as `$n`.
 * Aliases passed in (`t`, `s`, `EXCLUDED`) are fixed words of the calling code, never input.
 */

const q = pg.escapeIdentifier;

/** Quoted column names: all of them, and those an upsert compares and sets (all but `id`). */
function columns(table: TableDef): { all: string[]; rest: string[] } {
  return {
    all: table.columns.map((c) => q(c.name)),
    rest: table.columns.filter((c) => c.name !== 'id').map((c) => q(c.name)),
  };
}

/**
 * SQL: the row under alias `a` holds other values than the row under alias `b` (ids aside; NULL
 * equals NULL). `false` for a table of ids only.
 */
export function rowDiffers(table: TableDef, a: string, b: string): string {
  const { rest } = columns(table);
  if (rest.length === 0) return 'false';
  return `(${rest.map((n) => `${a}.${n}`).join(', ')}) IS DISTINCT FROM (${rest.map((n) => `${b}.${n}`).join(', ')})`;
}

/** Where an upsert's rows come from: a relation holding the table's columns by name. */
export interface UpsertSource {
  /** A table, or a WITH query of the same statement. */
  from: string;
  /** SQL condition on `from`'s rows (e.g. "its references exist"). */
  where?: string;
  /** Several rows may share an id: keep the one with the highest value of this column (rows apply in order, the later one wins). */
  lastBy?: string;
  /** Rows already come in ascending id order, one per id; otherwise they are sorted (the lock order). */
  sorted?: boolean;
  /**
   * Leave rows equal to the stored ones out before the INSERT, by one primary-key probe per row:
   * ON CONFLICT would still lock (and so write) each of them. Pays off for large repeats (loads);
   * the caller keeps the planner to nested loops, as the source has no statistics.
   */
  skipEqual?: boolean;
}

function sourceSelect(table: TableDef, source: UpsertSource): string {
  const cols = columns(table).all.join(', ');
  const from = `${q(source.from)}${source.where ? ` WHERE ${source.where}` : ''}`;
  if (source.lastBy) return `SELECT DISTINCT ON (id) ${cols} FROM ${from} ORDER BY id, ${q(source.lastBy)} DESC`;
  return `SELECT ${cols} FROM ${from}${source.sorted ? '' : ' ORDER BY id'}`;
}

/**
 * `INSERT … ON CONFLICT (id) DO UPDATE … WHERE <row differs>`: writes the source's rows in id order,
 * inserting new ids and updating only rows whose values differ; identical rows are not rewritten.
 * Returns `id integer, inserted boolean` for each row written. Meant for a WITH query of the
 * caller's statement.
 */
export function upsertIfDifferent(table: TableDef, source: UpsertSource): string {
  const t = q(table.name);
  const { all, rest } = columns(table);
  const src = `(${sourceSelect(table, source)}) src`;
  const select = source.skipEqual
    ? `SELECT ${all.map((n) => `src.${n}`).join(', ')} FROM ${src} LEFT JOIN ${t} cur ON cur.id = src.id
       WHERE cur.id IS NULL OR ${rowDiffers(table, 'cur', 'src')}`
    : `SELECT ${all.join(', ')} FROM ${src}`;
  const onConflict = rest.length
    ? `DO UPDATE SET ${rest.map((n) => `${n} = EXCLUDED.${n}`).join(', ')} WHERE ${rowDiffers(table, 't', 'EXCLUDED')}`
    : 'DO NOTHING';
  return `INSERT INTO ${t} AS t (${all.join(', ')})
       ${select}
       ON CONFLICT (id) ${onConflict}
       RETURNING t.id, (t.xmax = 0) AS inserted`;
}

/**
 * Restore's diff: `CREATE TEMP TABLE into ON COMMIT DROP AS` the staged rows (`staged`, one per id,
 * alias `s`) that the table (`t`) lacks (op `i`) or holds with other values (op `u`); when
 * replacing, also the ids only the table holds (op `d`). Unchanged rows are left out.
 */
export function diffStatement(table: TableDef, staged: string, into: string, mode: 'replace' | 'merge'): string {
  const t = q(table.name);
  const values = columns(table).rest.map((n) => `s.${n}, `).join('');
  const differs = rowDiffers(table, 't', 's');
  return mode === 'replace'
    ? `CREATE TEMP TABLE ${q(into)} ON COMMIT DROP AS
       SELECT coalesce(s.id, t.id) AS id, ${values}
              CASE WHEN s.id IS NULL THEN 'd' WHEN t.id IS NULL THEN 'i' ELSE 'u' END AS op
         FROM ${q(staged)} s FULL JOIN ${t} t ON t.id = s.id
        WHERE s.id IS NULL OR t.id IS NULL OR ${differs}`
    : `CREATE TEMP TABLE ${q(into)} ON COMMIT DROP AS
       SELECT s.id, ${values}CASE WHEN t.id IS NULL THEN 'i' ELSE 'u' END AS op
         FROM ${q(staged)} s LEFT JOIN ${t} t ON t.id = s.id
        WHERE t.id IS NULL OR ${differs}`;
}
