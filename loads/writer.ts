import pg from 'pg';
import { DEFAULT_REJECT_RAW_MAX_BYTES, storeRejects, type Reject } from '../pg/index.js';
import { copyIn, isEmbeddedPostgres } from '../pg/index.js';
import { findMissingReferences, referenceChecks, unknownReference, upsertIfDifferent, type ReferenceCheck } from '../pg/index.js';
import { survivingRestarts, type Pool, type PoolClient } from '../core/db.js';
import { UnprocessableError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { TableDef } from '../core/tables.js';
import type { Chunk } from './reader.js';

const q = pg.escapeIdentifier;

export interface ChunkOutcome {
  inserted: number;
  updated: number;
  unchanged: number;
  rejected: number;
}

type RawAt = (start: number, end: number) => Promise<{ raw: string; truncated: boolean }>;

/** What `begin` decided for a chunk, carried to `write`. */
interface Plan {
  chunk: Chunk;
  /** COPY text of the rows to write: the chunk's valid rows less those naming a missing reference. */
  data: Buffer;
  rows: number;
  rejects: Reject[];
  /** No stored row has an id in the chunk's range: COPY straight into the table. */
  direct: boolean;
}

/**
 * Writes the chunks of one load over one dedicated connection, each chunk in one transaction
 * together with the load's checkpoint: a crash loses at most the chunk in flight, never half of one,
 * and a chunk is never applied twice (the checkpoint is compared and moved under a row lock).
 *
 * References are checked once per distinct id, locking the referenced rows FOR KEY SHARE exactly as
 * PostgreSQL's foreign-key triggers would; rows naming a missing one become rejects. The rows are
 * then written with session_replication_role = replica on this connection (when allowed), which
 * skips the per-row trigger checks that dominate a plain COPY into the constrained table. Writing:
 * - when the chunk's ids ascend and none of its id range is stored yet (a first load), COPY straight
 *   into the table, as pg_restore does (a concurrent insert in the range makes it fall back);
 * - otherwise COPY into a temporary staging table and run one INSERT … ON CONFLICT DO UPDATE …
 *   WHERE IS DISTINCT FROM, keeping the last row per id; identical rows are not rewritten.
 */
export class ChunkWriter {
  private readonly stageTable: string;
  private readonly refs: readonly ReferenceCheck[];
  private started = 0;
  /** Embedded: skip the per-row FK triggers per chunk transaction (SET LOCAL), see `open`. */
  private replicaPerChunk = false;
  /** The embedded database: one session for every connection, so settings are per transaction. */
  private shared = false;

  private constructor(
    private readonly pool: Pool,
    private readonly client: PoolClient,
    private readonly table: TableDef,
    private readonly loadId: string,
    private readonly log: Logger,
    private readonly rawMaxBytes: number,
  ) {
    this.stageTable = `load_stage_${table.name}`;
    this.refs = referenceChecks(table);
  }

  static async open(
    connection: pg.PoolConfig,
    table: TableDef,
    loadId: string,
    setBasedFk: boolean,
    log: Logger,
    rawMaxBytes = DEFAULT_REJECT_RAW_MAX_BYTES,
  ): Promise<ChunkWriter> {
    // A connection of its own: the staging table and session settings live with it, and when the
    // process dies the server sees it go and rolls the chunk in flight back.
    const pool = survivingRestarts(new pg.Pool({ ...connection, max: 1, application_name: 'hr-load' }), log);
    let client: PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      await pool.end().catch(() => {});
      throw err;
    }
    const w = new ChunkWriter(pool, client, table, loadId, log, rawMaxBytes);
    try {
      // The embedded database has one session for every connection: settings and the staging
      // table made here would reach the API's writes too, so it keeps the defaults and the
      // per-row foreign-key triggers, and reuses the staging table a previous load left.
      const shared = await isEmbeddedPostgres(client);
      w.shared = shared;
      if (shared) await buildAbandonedIndexes(client, log);
      if (!shared) {
        // temp_buffers must be set before the session touches a temporary table; 8 MB would spill.
        await client.query(`SET temp_buffers = '64MB'`);
        // Sorting a chunk by id (DISTINCT ON, lock order) in memory, not in temporary files.
        await client.query(`SET work_mem = '64MB'`);
      }
      // Embedded, a transaction holds the one session alone (the socket server runs no other
      // connection's statements meanwhile), so the setting is made per chunk with SET LOCAL and
      // ends with its transaction; together with the COPY through a blob (pg/copy-in.ts) this is
      // the same bulk path as on a server.
      w.replicaPerChunk = setBasedFk && shared && w.refs.length > 0;
      if (setBasedFk && !shared && w.refs.length > 0) {
        try {
          await client.query('SET session_replication_role = replica');
        } catch (err) {
          if ((err as { code?: string }).code !== '42501') throw err;
          log.warn('no permission to set session_replication_role; loads check foreign keys row by row (slower)');
        }
      }
      const cols = table.columns.map((c) => `${q(c.name)} ${c.pgType}`).join(', ');
      await client.query(
        `CREATE TEMP TABLE${shared ? ' IF NOT EXISTS' : ''} ${q(w.stageTable)} (seq bigint GENERATED ALWAYS AS IDENTITY, ${cols}) ON COMMIT DELETE ROWS`,
      );
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  async close(): Promise<void> {
    // A load that ends here without its last chunk (bad input, a retry, a shutdown) leaves no
    // index missing behind it; a resumed load then writes its remaining rows into them.
    if (this.shared) {
      await buildDeferredIndexes(this.client, this.loadId, this.log, false).catch((err: unknown) =>
        this.log.warn({ err }, 'could not build the indexes this load deferred; the next load builds them'),
      );
    }
    this.client.release(true);
    await this.pool.end().catch(() => {});
  }

  /**
   * Opens the chunk's transaction: checks the load is still this worker's to write and the
   * checkpoint is where the chunk starts (else `undefined`: nothing written, transaction closed),
   * locks and checks references, and decides how to write. Cheap; the caller reads ahead while
   * `write` keeps the database busy.
   */
  async begin(chunk: Chunk, rawAt: RawAt): Promise<Plan | undefined> {
    const db = this.client;
    this.started = performance.now();
    await db.query('BEGIN');
    try {
      const { rows } = await db.query<{ status: string; next_offset: number; rows_read: number; wrong_width: number }>(
        'SELECT status, next_offset, rows_read, wrong_width FROM loads WHERE id = $1 FOR UPDATE',
        [this.loadId],
      );
      const load = rows[0];
      if (!load || load.status !== 'running' || load.next_offset !== chunk.startOffset) {
        await db.query('ROLLBACK');
        return undefined;
      }
      const read = load.rows_read + chunk.rowsRead;
      if (read > 0 && load.wrong_width + chunk.wrongWidth === read && (load.rows_read === 0 || chunk.final)) {
        const cols = this.table.columns.map((c) => c.name);
        throw new UnprocessableError(
          `no line of the file has the ${cols.length} fields of ${this.table.name} (${cols.join(', ')}); is it the file of another table?`,
        );
      }
      const plan: Plan = { chunk, data: chunk.copy, rows: chunk.ids.length, rejects: chunk.rejects, direct: false };
      if (plan.rows === 0) return plan;
      if (this.replicaPerChunk) await db.query('SET LOCAL session_replication_role = replica');
      // The lock order every writer keeps (a restore too): the table written first, the tables it
      // references after. Taking the write lock now, before the reference rows are locked and the
      // table is read, means a chunk never holds a lock a restore waits for while it waits for one
      // the restore holds (the deadlock of a restore's lock upgrade against a running load).
      await db.query(`LOCK TABLE ${q(this.table.name)} IN ROW EXCLUSIVE MODE`);
      const missing = await this.lockReferences(chunk);
      if (missing.some((m) => m.size > 0)) await this.dropMissing(plan, missing, rawAt);
      if (chunk.sorted && plan.rows > 0) {
        const { rows: hit } = await db.query(`SELECT 1 FROM ${q(this.table.name)} WHERE id BETWEEN $1 AND $2 LIMIT 1`, [
          chunk.ids[0],
          chunk.ids[chunk.ids.length - 1],
        ]);
        plan.direct = hit.length === 0;
      }
      if (plan.direct && this.shared && load.rows_read === 0 && !chunk.final) await this.deferIndexes();
      return plan;
    } catch (err) {
      await db.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  /** Writes the rows, the rejects and the checkpoint, and commits. */
  async write(plan: Plan): Promise<ChunkOutcome> {
    const db = this.client;
    const { chunk } = plan;
    try {
      let written = { inserted: 0, updated: 0 };
      let direct = plan.direct;
      if (direct) {
        await db.query('SAVEPOINT direct');
        try {
          await this.copy(this.table.name, plan.data);
          written = { inserted: plan.rows, updated: 0 };
        } catch (err) {
          // Someone stored an id of this range since we looked: take the upsert path instead.
          if ((err as { code?: string }).code !== '23505') throw err;
          await db.query('ROLLBACK TO SAVEPOINT direct');
          direct = false;
        }
      }
      if (!direct && plan.rows > 0) {
        await this.copy(this.stageTable, plan.data);
        written = await this.upsert(chunk);
      }
      const copied = performance.now();

      await storeRejects(db, 'load', this.loadId, this.table.name, plan.rejects, { rawMaxBytes: this.rawMaxBytes });
      const changes = Math.min(chunk.duplicateChanges, plan.rows - written.inserted - written.updated);
      const outcome: ChunkOutcome = {
        inserted: written.inserted,
        updated: written.updated + changes,
        unchanged: plan.rows - written.inserted - written.updated - changes,
        rejected: plan.rejects.length,
      };
      await db.query(
        `UPDATE loads SET next_offset = $2, next_line = $3, rows_read = rows_read + $4, inserted = inserted + $5,
                updated = updated + $6, unchanged = unchanged + $7, rejected = rejected + $8, wrong_width = wrong_width + $9,
                status = CASE WHEN $10 THEN 'succeeded' ELSE status END,
                finished_at = CASE WHEN $10 THEN now() END, error = CASE WHEN $10 THEN NULL ELSE error END
          WHERE id = $1`,
        [
          this.loadId,
          chunk.endOffset,
          chunk.endLine,
          chunk.rowsRead,
          outcome.inserted,
          outcome.updated,
          outcome.unchanged,
          outcome.rejected,
          chunk.wrongWidth,
          chunk.final,
        ],
      );
      if (chunk.final) await buildDeferredIndexes(db, this.loadId, this.log, true);
      await db.query('COMMIT');
      this.log.debug(
        { rows: chunk.rowsRead, direct, writeMs: Math.round(copied - this.started), totalMs: Math.round(performance.now() - this.started) },
        'chunk written',
      );
      return outcome;
    } catch (err) {
      await db.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  private async copy(target: string, data: Buffer): Promise<void> {
    const stream = await copyIn(this.client, target, this.table.columns);
    await new Promise<void>((resolve, reject) => {
      stream.on('finish', resolve);
      stream.on('error', reject);
      // One write: the data is already in memory, and the socket then feeds the server steadily
      // even while the event loop is busy parsing the next chunk.
      stream.end(data);
    });
  }

  /**
   * Embedded, first chunk of a load into an empty table: drops the table's plain indexes (not a
   * primary key, unique or other constraint's) and records their definitions on the load, in the
   * chunk's transaction; `write` builds them again in the last chunk's. PGlite inserts into a
   * B-tree index row by row several times slower than it sorts once (bench/embedded-ceiling.ts).
   * Meanwhile reads that would use them scan instead: same answers, slower.
   */
  private async deferIndexes(): Promise<void> {
    const db = this.client;
    const { rows: any } = await db.query(`SELECT 1 FROM ${q(this.table.name)} LIMIT 1`);
    if (any.length > 0) return;
    const { rows } = await db.query<{ name: string; def: string }>(
      `SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = $1::regclass AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        ORDER BY c.relname`,
      [this.table.name],
    );
    if (rows.length === 0) return;
    await db.query('UPDATE loads SET deferred_indexes = $2 WHERE id = $1', [this.loadId, rows.map((r) => r.def)]);
    for (const r of rows) await db.query(`DROP INDEX ${q(r.name)}`);
    this.log.debug({ indexes: rows.map((r) => r.name) }, 'indexes deferred to the end of the load');
  }

  /** Locks the referenced rows the chunk names (FOR KEY SHARE) and returns, per reference, the ids that do not exist. */
  private async lockReferences(chunk: Chunk): Promise<Set<number>[]> {
    const out: Set<number>[] = [];
    for (let r = 0; r < this.refs.length; r++) {
      out.push(await findMissingReferences(this.client, this.refs[r]!, chunk.refs[r]!, { lock: true }));
    }
    return out;
  }

  /** Turns rows naming a missing reference into rejects and leaves them out of the COPY data. */
  private async dropMissing(plan: Plan, missing: Set<number>[], rawAt: RawAt): Promise<void> {
    const { chunk } = plan;
    const refRejects: Reject[] = [];
    const keep: [number, number][] = [];
    let from = 0;
    for (let i = 0; i < chunk.ids.length; i++) {
      const end = chunk.copyEnds[i]!;
      let errors: Reject['errors'] | undefined;
      for (let r = 0; r < this.refs.length; r++) {
        const v = chunk.refs[r]![i]!;
        if (missing[r]!.has(v)) (errors ??= []).push(unknownReference(this.refs[r]!, v));
      }
      if (errors) refRejects.push({ position: chunk.lines[i]!, ...(await rawAt(chunk.starts[i]!, chunk.ends[i]!)), errors });
      else {
        const last = keep[keep.length - 1];
        if (last && last[1] === from) last[1] = end;
        else keep.push([from, end]);
      }
      from = end;
    }
    plan.data = Buffer.concat(keep.map(([a, b]) => chunk.copy.subarray(a, b)));
    plan.rows -= refRejects.length;
    plan.rejects = [...chunk.rejects, ...refRejects].sort((a, b) => a.position - b.position);
  }

  private async upsert(chunk: Chunk): Promise<{ inserted: number; updated: number }> {
    // Rows equal to the stored ones are left out before the upsert (skipEqual). The probe is one
    // primary-key lookup per row, in id order; the staging table has no statistics, so the planner
    // is told not to scan the whole table.
    await this.client.query('SET LOCAL enable_hashjoin = off');
    await this.client.query('SET LOCAL enable_mergejoin = off');
    const upsert = upsertIfDifferent(this.table, {
      from: this.stageTable,
      lastBy: chunk.duplicates ? 'seq' : undefined,
      sorted: chunk.sorted,
      skipEqual: true,
    });
    const { rows } = await this.client.query<{ inserted: number; updated: number }>(
      `WITH up AS (${upsert})
       SELECT count(*) FILTER (WHERE inserted)::integer AS inserted, count(*) FILTER (WHERE NOT inserted)::integer AS updated FROM up`,
    );
    return rows[0]!;
  }
}

/**
 * Builds the indexes `loadId` deferred (`CREATE INDEX IF NOT EXISTS`, from the definitions
 * PostgreSQL gave) and clears the record, in the caller's transaction (the last chunk's) or in
 * one of its own.
 */
async function buildDeferredIndexes(db: PoolClient, loadId: string, log: Logger, inTransaction: boolean): Promise<void> {
  const { rows } = await db.query<{ defs: string[] | null }>('SELECT deferred_indexes AS defs FROM loads WHERE id = $1', [loadId]);
  const defs = rows[0]?.defs;
  if (!defs) return;
  const started = performance.now();
  const own = !inTransaction;
  if (own) await db.query('BEGIN');
  try {
    // One sort of the whole table per index, in maintenance_work_mem (64 MB, PostgreSQL's default).
    for (const def of defs) await db.query(def.replace(/^CREATE INDEX /, 'CREATE INDEX IF NOT EXISTS '));
    await db.query('UPDATE loads SET deferred_indexes = NULL WHERE id = $1', [loadId]);
    if (own) await db.query('COMMIT');
  } catch (err) {
    if (own) await db.query('ROLLBACK').catch(() => {});
    throw err;
  }
  log.debug({ loadId, indexes: defs.length, ms: Math.round(performance.now() - started) }, 'deferred indexes built');
}

/** Indexes deferred by loads that are no longer running (the process died mid-load and the load ended since). */
async function buildAbandonedIndexes(db: PoolClient, log: Logger): Promise<void> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM loads WHERE deferred_indexes IS NOT NULL AND status <> 'running' ORDER BY created_at`,
  );
  for (const r of rows) await buildDeferredIndexes(db, r.id, log, false);
}
