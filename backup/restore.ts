import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { storeRejects, type Reject } from '../pg/index.js';
import { copyIn } from '../pg/index.js';
import { findMissingReferences, missingFlag, missingReference, referenceChecks, referencesTo, unknownReference } from '../pg/index.js';
import type { Services } from '../jobs/index.js';
import { withTransaction, type PoolClient } from '../core/db.js';
import { AppError, BusyError, ConflictError, UnprocessableError } from '../core/errors.js';
import { TABLES, type TableDef, type TableName } from '../core/tables.js';
import { avroReading, BackupFileError, readBackupFile } from './read.js';
import { applyDiff, buildDiff, DIFF, dropIndexesAndForeignKeys, type DiffCounts } from './diff.js';
import { AvroToCopy, createStageSql, STAGE, type ValidateToCopy } from './avro-to-copy.js';
import type { Storage } from '../storage/index.js';
import { backupStorage, fileKey, findBackup } from './sets.js';

export type RestoreMode = 'replace' | 'merge';

export interface RestoreRequest {
  table: TableName;
  /** A backup set id; the newest set holding the table when absent. */
  backup?: string;
  mode?: RestoreMode;
}

export interface RestoreResult {
  table: TableName;
  backup: string;
  mode: RestoreMode;
  /** Records in the backup file. */
  rows: number;
  inserted: number;
  updated: number;
  deleted: number;
  /** Rows already equal to the backup's: nothing was written for them. */
  unchanged: number;
}

const q = pg.escapeIdentifier;
/** Rejects kept in the rejects table per refused restore; the count in the answer is exact. */
const MAX_STORED_REJECTS = 10_000;

/**
 * Restores one table from a backup, in one transaction: the file streams through the data rules
 * into a temporary staging table (COPY), is verified against its manifest, and the table is then
 * brought to the backup's state with three set-based statements. Nothing is committed unless all
 * of it worked:
 * - a damaged file, another table's file, or a row breaking a data rule → 422 (`UnprocessableError`);
 *   rule breakers are kept in the rejects table (source `restore`, the backup id);
 * - a row naming a department or job that does not exist, or (replace) removing ids that other
 *   tables still use → 409 (`ConflictError`) naming the count.
 */
export async function restoreTable(services: Services, req: RestoreRequest): Promise<RestoreResult> {
  const { config, pool, log } = services;
  const table = TABLES[req.table];
  const mode = req.mode ?? 'replace';
  const store = await backupStorage(config);
  const { manifest, entry } = await findBackup(store, req.table, req.backup);
  const file = fileKey(manifest.id, entry.file);
  const rejects: Reject[] = [];
  const started = performance.now();
  const phases: Record<string, number> = {};
  const lap = (name: string) => {
    phases[name] = Math.round(performance.now() - started);
  };

  let result: RestoreResult;
  try {
    result = await withTableLocks(services, table, () => { rejects.length = 0; }, () => withTransaction(pool, async (client) => {
      // Every wait for a lock below is bounded: past it the whole transaction rolls back and is
      // tried again (withTableLocks), so a restore never sits in a lock queue holding locks.
      await client.query(`SET LOCAL lock_timeout = ${Math.trunc(config.RESTORE_LOCK_TIMEOUT_MS)}`);
      // One restore at a time over every process: two restores never wait for each other's tables.
      await client.query('SELECT pg_advisory_xact_lock($1)', [RESTORE_LOCK]);
      // Writers wait until we are done; readers go on seeing the old rows until the commit. The
      // table restored is locked first, the tables it references after (backup/diff.ts), the
      // order loads keep too.
      await client.query(`LOCK TABLE ${q(table.name)} IN SHARE ROW EXCLUSIVE MODE`);
      // The joins below hash up to a whole table; the default 4 MB spills them to disk.
      await client.query(`SET LOCAL work_mem = '64MB'`);
      const onReject = (r: Reject) => {
        if (rejects.length < MAX_STORED_REJECTS) rejects.push(r);
      };
      const refused = (validate: ValidateToCopy) =>
        new UnprocessableError(
          `backup ${manifest.id} holds ${validate.rejected} ${table.name} rows that break the data rules; nothing was restored`,
          { backup: manifest.id, table: table.name, rejected: validate.rejected, rejects: rejects.slice(0, 20) },
        );
      // Into an empty table, a restore as large as the bulk path's (it drops indexes and keys, and
      // readers wait) copies the rows straight in; a small one keeps the table's indexes, its
      // lighter lock, and the staged path.
      const empty =
        entry.rows >= config.RESTORE_BULK_ROWS &&
        ((await client.query(`SELECT NOT EXISTS (SELECT 1 FROM ${q(table.name)}) AS empty`)).rows[0].empty as boolean);
      if (empty) {
        const direct = await restoreIntoEmpty(client, table, store, file, entry, manifest.id, rejects, onReject, refused, lap);
        lap('direct');
        if (direct) return { table: table.name, backup: manifest.id, mode, ...direct };
      }
      await client.query(createStageSql(table));
      const validate = new AvroToCopy(table, onReject, avroReading(table));
      const copy = await copyIn(client, STAGE, [...table.columns, { name: 'pos', pgType: 'bigint' }], 'binary');
      const rows = await readBackupFile(store, file, table, entry, [validate, copy], { count: () => validate.records, readsAvro: validate });
      lap('staged');
      preloadWarehouse();
      if (validate.rejected > 0) throw refused(validate);
      if (!validate.ascending) {
        // Rows apply in order: of two rows with one id, the later one wins.
        await client.query(`DELETE FROM ${STAGE} a USING ${STAGE} b WHERE a.id = b.id AND a.pos < b.pos`);
      }
      await client.query(`ANALYZE ${STAGE}`);
      const counts = await buildDiff(client, table, mode);
      lap('diffed');
      await refuseUnknownReferences(client, table, manifest.id, rejects, STAGED_CHANGES);
      if (counts.deleted > 0) await refuseOrphans(client, table);
      lap('checked');
      phases.bulk = (await applyDiff(client, table, counts, config.RESTORE_BULK_ROWS)) ? 1 : 0;
      lap('applied');
      return { table: table.name, backup: manifest.id, mode, rows, ...counts };
    }));
  } catch (err) {
    // Rule breakers are kept as rejects; rows of a file that turned out damaged are not trusted.
    if (rejects.length > 0 && err instanceof AppError && !(err instanceof BackupFileError)) {
      await storeRejects(pool, 'restore', manifest.id, table.name, rejects, { rawMaxBytes: config.REJECT_RAW_MAX_BYTES }).catch((e: unknown) =>
        log.warn({ err: e }, 'could not store restore rejects'),
      );
    }
    throw err;
  }

  if (result.inserted + result.updated + result.deleted > 0) {
    const { requestWarehouseRefresh } = await warehouse();
    await requestWarehouseRefresh(services, `restore ${table.name}`).catch((err: unknown) =>
      log.warn({ err }, 'could not request a warehouse refresh'),
    );
  }
  lap('committed');
  log.info({ ...result, ms: phases }, 'table restored');
  return result;
}

/**
 * The warehouse (and through it the job queue), asked for a refresh once a restore has committed.
 * Loaded on first use, and `preload` starts loading it while PostgreSQL is busy on its own (index
 * builds, the diff), so a process that runs one restore (a fresh worker, the bench's) does not pay
 * for loading BullMQ and the warehouse before its restore starts, nor after it ends.
 */
const warehouse = () => import('../warehouse/index.js');
function preloadWarehouse(): void {
  warehouse().catch(() => {}); // a failure shows when the refresh is asked for
}

/** Arbitrary constant: the advisory lock that lets one restore run at a time, whichever process runs it. */
const RESTORE_LOCK = 748_201_405;

/** SQLSTATEs of a lock not had: lock_timeout (55P03) and a deadlock another writer caused (40P01). */
function lockNotHad(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === '55P03' || code === '40P01';
}

/**
 * Runs the restore's transaction, again from the start when it could not have a lock within
 * RESTORE_LOCK_TIMEOUT_MS (a load's chunk, a refresh's export or another restore held it), with a
 * growing pause, up to RESTORE_LOCK_ATTEMPTS times; then gives up with 409 `busy` and Retry-After.
 * Nothing is written by a try that gave up: its transaction rolled back whole.
 */
async function withTableLocks<T>(
  { config, log }: Services,
  table: TableDef,
  reset: () => void,
  run: () => Promise<T>,
): Promise<T> {
  const attempts = config.RESTORE_LOCK_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    reset();
    try {
      return await run();
    } catch (err) {
      if (!lockNotHad(err)) throw err;
      if (attempt >= attempts) {
        log.warn({ table: table.name, attempts, code: (err as { code?: string }).code }, 'restore gave up waiting for its table locks');
        const retryAfter = Math.max(1, Math.ceil(config.RESTORE_LOCK_TIMEOUT_MS / 1000));
        throw new BusyError(
          `${table.name} stayed busy (a load, a refresh or another restore held its locks) through ${attempts} tries of ${config.RESTORE_LOCK_TIMEOUT_MS} ms; nothing was restored. Try again in ${retryAfter} s`,
          retryAfter,
          { table: table.name, attempts },
        );
      }
      const pause = Math.min(500 * 2 ** (attempt - 1), 5_000);
      log.info({ table: table.name, attempt, pauseMs: pause, code: (err as { code?: string }).code }, 'restore waiting for its table locks; trying again');
      await sleep(pause);
    }
  }
}

/**
 * Rows whose department_id / job_id does not exist now: the data rules make them rejects. Only
 * rows that change need the check; the others are in the table already, under its foreign keys.
 */
async function refuseUnknownReferences(
  client: PoolClient,
  table: TableDef,
  backup: string,
  rejects: Reject[],
  source: (table: TableDef) => { count: string; sample: string },
): Promise<void> {
  const refs = referenceChecks(table);
  if (refs.length === 0) return;
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${source(table).count} AND (${refs.map((r) => missingReference(r, 'd')).join(' OR ')})`,
  );
  const n = rows[0]!.n;
  if (n === 0) return;
  const cols = table.columns.map((c) => `s.${q(c.name)}`).join(', ');
  const flags = refs.map((r) => missingFlag(r, 's')).join(', ');
  const sample = await client.query<Record<string, unknown>>(
    `SELECT ${cols}, s.pos, ${flags} FROM ${source(table).sample} WHERE ${refs.map((r) => missingReference(r, 's')).join(' OR ')} ORDER BY s.pos LIMIT ${MAX_STORED_REJECTS}`,
  );
  for (const row of sample.rows) {
    const values = Object.fromEntries(table.columns.map((c) => [c.name, row[c.name] instanceof Date ? (row[c.name] as Date).toISOString() : row[c.name]]));
    rejects.push({
      position: Number(row.pos),
      raw: JSON.stringify(values),
      errors: refs.filter((r) => row[r.flag]).map((r) => unknownReference(r, row[r.column])),
    });
  }
  throw new ConflictError(
    `${n} ${table.name} rows of backup ${backup} name a ${refs.map((r) => r.references).join(' or ')} id that does not exist; restore those first. Nothing was restored`,
    { table: table.name, rows: n, rejects: rejects.slice(0, 20) },
  );
}

/** Where `refuseUnknownReferences` looks: rows `d` to count (a `WHERE` follows), staged rows `s` with their `pos` to sample. */
const STAGED_CHANGES = () => ({
  count: `${DIFF} d WHERE d.op <> 'd'`,
  sample: `${STAGE} s JOIN ${DIFF} d ON d.id = s.id AND d.op <> 'd'`,
});
/** The direct path: every row of the table came from the file, in id order (so a row's position is its rank by id). */
const TABLE_ROWS = (table: TableDef) => ({
  count: `${q(table.name)} d WHERE true`,
  sample: `(SELECT t.*, row_number() OVER (ORDER BY t.id) - 1 AS pos FROM ${q(table.name)} t) s`,
});

/**
 * Restore into an empty table the way pg_restore does it: the table's indexes and foreign keys go,
 * the checked rows are copied straight into the table (no staging table, no diff: every row is an
 * insert), and the indexes and keys come back. Re-adding a foreign key validates every row against
 * its parent in one set-based pass; when that fails, the offending rows are found and refused as
 * in the staged path (409). Everything runs under a savepoint inside the restore's transaction:
 * when the file turns out to repeat or reorder ids (never so in backups this service writes), it
 * is rolled back and the caller takes the staged path, where the later row of an id wins.
 * Returns null in that case. A damaged file or rule breakers throw, and the transaction rolls back.
 */
async function restoreIntoEmpty(
  client: PoolClient,
  table: TableDef,
  store: Storage,
  file: string,
  entry: Parameters<typeof readBackupFile>[3],
  backup: string,
  rejects: Reject[],
  onReject: (r: Reject) => void,
  refused: (v: ValidateToCopy) => Error,
  lap: (phase: string) => void,
): Promise<(DiffCounts & { rows: number }) | null> {
  await client.query('SAVEPOINT restore_direct');
  const refs = referenceChecks(table);
  // Past the foreign keys' triggers when allowed (as loads write): the keys stay in place, and
  // the references are checked once per distinct id after the copy, instead of by re-adding the
  // keys, which scans the whole table once per key.
  const pastKeys = refs.length > 0 ? await writePastForeignKeys(client) : undefined;
  const rebuild = await dropIndexesAndForeignKeys(client, table, { keepForeignKeys: pastKeys !== undefined });
  // Index builds and key validation sort the whole table: PostgreSQL's default 64 MB spills them to disk.
  await client.query(`SET LOCAL maintenance_work_mem = '${BULK_MAINTENANCE_WORK_MEM}'`);
  const capture = await pauseInsertCapture(client, table);
  const validate = new AvroToCopy(table, onReject, {
    ...avroReading(table),
    withPosition: false,
    collectRefs: pastKeys ? refs.map((r) => r.index) : undefined,
  });
  const copy = await copyIn(client, table.name, table.columns, 'binary');
  lap('prepared');
  let rows: number;
  try {
    rows = await readBackupFile(store, file, table, entry, [validate, copy], { count: () => validate.records, readsAvro: validate });
  } catch (err) {
    // A primary key kept in place (other tables reference it) met a repeated id: take the staged
    // path, which reads the file again and judges it (rejects included) from the start.
    if ((err as { code?: string }).code === '23505') {
      await client.query('ROLLBACK TO SAVEPOINT restore_direct');
      rejects.length = 0;
      return null;
    }
    throw err;
  }
  lap('copied');
  if (validate.rejected > 0) throw refused(validate);
  if (!validate.ascending) {
    await client.query('ROLLBACK TO SAVEPOINT restore_direct');
    return null;
  }
  await capture.resume();
  const isFk = (s: string) => / FOREIGN KEY /.test(s);
  if (pastKeys) {
    await pastKeys.end();
    // The referenced tables are locked (ACCESS EXCLUSIVE) until the commit: ids found now stay.
    for (let i = 0; i < refs.length; i++) {
      const ids = validate.refIds![i];
      // Too many distinct ids to keep: the set-based check over the table decides instead.
      if (ids === undefined || (await findMissingReferences(client, refs[i]!, ids)).size > 0) {
        await refuseUnknownReferences(client, table, backup, rejects, TABLE_ROWS);
      }
    }
    lap('references');
  } else if (rebuild.filter(isFk).length < refs.length) {
    // Without all of its foreign keys to validate the rows, check them explicitly first.
    await refuseUnknownReferences(client, table, backup, rejects, TABLE_ROWS);
  }
  preloadWarehouse();
  for (const statement of rebuild.filter((s) => !isFk(s))) await client.query(statement);
  lap('indexes');
  await client.query('SAVEPOINT restore_direct_fks');
  try {
    for (const statement of rebuild.filter(isFk)) await client.query(statement);
  } catch (err) {
    if ((err as { code?: string }).code !== '23503') throw err;
    await client.query('ROLLBACK TO SAVEPOINT restore_direct_fks');
    await refuseUnknownReferences(client, table, backup, rejects, TABLE_ROWS);
    throw err; // the check above found them; if it did not, the foreign key error stands
  }
  lap('keys');
  await client.query('RELEASE SAVEPOINT restore_direct');
  return { rows, inserted: validate.valid, updated: 0, deleted: 0, unchanged: 0 };
}

/**
 * `session_replication_role = replica` for this transaction, so rows are written without firing
 * the foreign keys' per-row triggers (the caller checks the references); `end()` puts the role
 * back. Undefined when this role may not set it (needs a superuser or `GRANT SET ON PARAMETER
 * session_replication_role`): the caller then drops and re-adds the keys instead.
 */
async function writePastForeignKeys(client: PoolClient): Promise<{ end(): Promise<void> } | undefined> {
  const { rows } = await client.query<{ role: string }>(`SELECT current_setting('session_replication_role') AS role`);
  const before = rows[0]!.role;
  await client.query('SAVEPOINT restore_replica');
  try {
    await client.query(`SET LOCAL session_replication_role = replica`);
  } catch (err) {
    if ((err as { code?: string }).code !== '42501') throw err;
    await client.query('ROLLBACK TO SAVEPOINT restore_replica');
    return undefined;
  }
  await client.query('RELEASE SAVEPOINT restore_replica');
  return {
    async end() {
      await client.query(`SELECT set_config('session_replication_role', $1, true)`, [before]);
    },
  };
}

/** What the bulk path lets PostgreSQL use to rebuild indexes and validate keys (per restore, for its transaction only). */
const BULK_MAINTENANCE_WORK_MEM = '256MB';

/**
 * The warehouse's change capture for a table that is empty and about to be filled whole: its
 * statement-level insert trigger would keep every copied row in a transition table and then sort
 * them into id ranges. Instead, the trigger is disabled for the copy (under the restore's ACCESS
 * EXCLUSIVE lock, inside its transaction: nobody else writes meanwhile, and a rollback undoes it)
 * and `resume` logs one whole-table change, as TRUNCATE does, so the next export takes the table
 * whole as a new base (sql/migrations/003_warehouse.sql, warehouse/export.ts), then puts the
 * trigger back as it was. Without the trigger (a schema before change capture), nothing happens.
 */
async function pauseInsertCapture(client: PoolClient, table: TableDef): Promise<{ resume(): Promise<void> }> {
  const t = q(table.name);
  const { rows } = await client.query<{ enabled: string }>(
    `SELECT tgenabled AS enabled FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = 'warehouse_ins'`,
    [table.name],
  );
  const enabled = rows[0]?.enabled;
  if (enabled === undefined || enabled === 'D') return { resume: async () => {} };
  await client.query(`ALTER TABLE ${t} DISABLE TRIGGER warehouse_ins`);
  return {
    async resume() {
      await client.query(`INSERT INTO warehouse_changes (table_name, lo, hi) VALUES ($1, NULL, NULL)`, [table.name]);
      const how = enabled === 'A' ? 'ENABLE ALWAYS' : enabled === 'R' ? 'ENABLE REPLICA' : 'ENABLE';
      await client.query(`ALTER TABLE ${t} ${how} TRIGGER warehouse_ins`);
    },
  };
}

/** Replace mode: ids the backup lacks would be deleted; refuse when other tables still use them. */
async function refuseOrphans(client: PoolClient, table: TableDef): Promise<void> {
  const gone = `SELECT id FROM ${DIFF} WHERE op = 'd'`;
  for (const { child, check } of referencesTo(table.name)) {
    const col = q(check.column);
    const { rows } = await client.query<{ rows: number; ids: number; sample: number[] | null }>(
      `SELECT count(*)::int AS rows, count(DISTINCT c.${col})::int AS ids,
              (array_agg(DISTINCT c.${col}))[1:10] AS sample
         FROM ${q(child.name)} c WHERE c.${col} IN (${gone})`,
    );
    const r = rows[0]!;
    if (r.rows > 0) {
      throw new ConflictError(
        `replacing ${table.name} would leave ${r.rows} ${child.name} rows without their ${table.name} row: the backup lacks ${r.ids} ${table.name} id(s) they use (${(r.sample ?? []).join(', ')}${r.ids > 10 ? ', …' : ''}). Nothing was restored`,
        { table: table.name, referencedBy: child.name, column: check.column, rows: r.rows, ids: r.ids, sample: r.sample ?? [] },
      );
    }
  }
}
