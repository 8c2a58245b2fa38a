import pg from 'pg';
import type { PoolClient } from '../core/db.js';
import { ConflictError } from '../core/errors.js';
import type { TableDef } from '../core/tables.js';

/** Tables in the one order locks on several are taken: the data dictionary's (referenced tables first). */
function lockOrder(tables: readonly TableName[]): TableName[] {
  return TABLE_NAMES.filter((n) => tables.includes(n));
}
import { diffStatement, referenceChecks } from '../pg/index.js';
import { TABLE_NAMES, type TableName } from '../core/tables.js';
import { STAGE } from './avro-to-copy.js';

/**
 * Set-based restore: one join of the staging table against the live table finds what differs
 * (`i`nsert, `u`pdate, `d`elete — the last only when replacing) into a small `restore_diff`;
 * the checks and the writes then touch only those rows. Unchanged rows cost one hash-join probe.
 */

const q = pg.escapeIdentifier;
export const DIFF = 'restore_diff';

export interface DiffCounts {
  inserted: number;
  updated: number;
  deleted: number;
  unchanged: number;
}

/** Builds `restore_diff` and counts it. `unchanged` = staged rows that match the table already. */
export async function buildDiff(client: PoolClient, table: TableDef, mode: 'replace' | 'merge'): Promise<DiffCounts> {
  const sql = diffStatement(table, STAGE, DIFF, mode);
  await client.query(sql);
  await client.query(`ANALYZE ${DIFF}`);
  const { rows } = await client.query<{ i: number; u: number; d: number; staged: number }>(
    `SELECT count(*) FILTER (WHERE op = 'i')::int AS i, count(*) FILTER (WHERE op = 'u')::int AS u,
            count(*) FILTER (WHERE op = 'd')::int AS d, (SELECT count(*) FROM ${STAGE})::int AS staged
       FROM ${DIFF}`,
  );
  const r = rows[0]!;
  return { inserted: r.i, updated: r.u, deleted: r.d, unchanged: r.staged - r.i - r.u };
}

/**
 * From `bulkMinRows` changed rows (RESTORE_BULK_ROWS) that are a tenth of the table, writing row by row through the
 * secondary indexes and foreign-key triggers costs more than dropping them, writing, and building
 * them again in one pass each, which is what pg_restore does. Drop and rebuild happen inside the
 * restore's transaction, under an ACCESS EXCLUSIVE lock, so nobody ever sees the table without them.
 */
export async function applyDiff(client: PoolClient, table: TableDef, counts: DiffCounts, bulkMinRows: number): Promise<boolean> {
  const t = q(table.name);
  const cols = table.columns.map((c) => q(c.name));
  const rest = cols.filter((n) => n !== '"id"');
  const changed = counts.inserted + counts.updated + counts.deleted;
  const size = counts.unchanged + counts.updated + counts.deleted;
  const bulk = changed >= bulkMinRows && changed * 10 >= size;
  const rebuild = bulk ? await dropIndexesAndForeignKeys(client, table) : [];
  try {
    if (counts.deleted > 0) await client.query(`DELETE FROM ${t} t USING ${DIFF} d WHERE d.op = 'd' AND t.id = d.id`);
    if (counts.updated > 0) {
      await client.query(
        `UPDATE ${t} t SET ${rest.map((n) => `${n} = d.${n}`).join(', ')} FROM ${DIFF} d WHERE d.op = 'u' AND t.id = d.id`,
      );
    }
    if (counts.inserted > 0) {
      // In id order the primary key's B-tree grows at its right edge; without indexes order is moot.
      const order = bulk ? '' : ' ORDER BY d.id';
      await client.query(`INSERT INTO ${t} (${cols.join(', ')}) SELECT ${cols.map((n) => `d.${n}`).join(', ')} FROM ${DIFF} d WHERE d.op = 'i'${order}`);
    }
    for (const statement of rebuild) await client.query(statement);
    return bulk;
  } catch (err) {
    // A writer slipped a reference in between our checks and the delete (or the rebuilt key).
    if ((err as { code?: string }).code === '23503') {
      // The driver's text names constraints and values of other tables: the answer says what happened instead.
      throw new ConflictError(
        `restoring ${table.name} would break a foreign key: rows written meanwhile and the backup's rows no longer fit together. Nothing was restored; try again`,
        { table: table.name },
      );
    }
    throw err;
  }
}

/**
 * Drops the table's own foreign keys, indexes and (when nothing references it) primary key; returns
 * the statements that rebuild them exactly. With `keepForeignKeys` the foreign keys stay (the
 * caller checks the references itself and writes past their triggers); the locks are the same.
 */
export async function dropIndexesAndForeignKeys(client: PoolClient, table: TableDef, { keepForeignKeys = false } = {}): Promise<string[]> {
  const t = q(table.name);
  // Dropping a foreign key takes ACCESS EXCLUSIVE on the table it references too. The referenced
  // tables go first, then this one (upgraded from the restore's SHARE ROW EXCLUSIVE): a refresh
  // reading the parents before the children, or a load waiting for this table, then never holds
  // what this waits for while waiting for what this holds.
  for (const parent of lockOrder(referenceChecks(table).map((r) => r.references))) {
    await client.query(`LOCK TABLE ${q(parent)} IN ACCESS EXCLUSIVE MODE`);
  }
  await client.query(`LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE`);
  const fks = keepForeignKeys
    ? { rows: [] }
    : await client.query<{ name: string; def: string }>(
        `SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'`,
        [table.name],
      );
  const indexes = await client.query<{ name: string; def: string }>(
    `SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = $1::regclass
        AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)`,
    [table.name],
  );
  // The primary key too, unless another table's foreign key depends on it (departments, jobs).
  const pk = await client.query<{ name: string; def: string }>(
    `SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint k
      WHERE conrelid = $1::regclass AND contype = 'p'
        AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = k.conindid)`,
    [table.name],
  );
  for (const fk of fks.rows) await client.query(`ALTER TABLE ${t} DROP CONSTRAINT ${q(fk.name)}`);
  for (const ix of indexes.rows) await client.query(`DROP INDEX ${q(ix.name)}`);
  for (const k of pk.rows) await client.query(`ALTER TABLE ${t} DROP CONSTRAINT ${q(k.name)}`);
  return [
    ...pk.rows.map((k) => `ALTER TABLE ${t} ADD CONSTRAINT ${q(k.name)} ${k.def}`),
    ...indexes.rows.map((ix) => ix.def),
    ...fks.rows.map((fk) => `ALTER TABLE ${t} ADD CONSTRAINT ${q(fk.name)} ${fk.def}`),
  ];
}
