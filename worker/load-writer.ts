import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { storeRejects, type Reject } from '../core/apply.js';
import { createPool, type Pool, type PoolClient } from '../core/db.js';
import { UnprocessableError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { TableDef } from '../core/tables.js';
import type { Chunk } from './load-reader.js';

const q = pg.escapeIdentifier;

export interface ChunkOutcome {
  inserted: number;
  updated: number;
  unchanged: number;
  rejected: number;
}

/**
 * Writes chunks of one load over one dedicated connection, each chunk in one transaction together
 * with the load's checkpoint, so a crash loses at most the chunk in flight and never duplicates one.
 *
 * Per chunk: COPY into a temporary staging table (no constraints, no WAL); check references once
 * per distinct id, locking the referenced rows FOR KEY SHARE exactly as PostgreSQL's own foreign-key
 * triggers would; then one INSERT … ON CONFLICT DO UPDATE … WHERE IS DISTINCT FROM, the last row
 * per id winning. With `setBasedFk` the per-row trigger checks are skipped (session_replication_role
 * = replica on this connection only), which is what makes the load faster than a plain COPY into the
 * constrained table; the checks above guarantee the same thing.
 */
export class ChunkWriter {
  private stage: string;
  private constructor(
    private readonly pool: Pool,
    private readonly client: PoolClient,
    private readonly table: TableDef,
    private readonly loadId: string,
  ) {
    this.stage = `load_stage_${table.name}`;
  }

  static async open(url: string, table: TableDef, loadId: string, setBasedFk: boolean, log: Logger): Promise<ChunkWriter> {
    // A connection of its own: the staging table and session settings live with it, and when the
    // process dies the server sees it go and rolls the chunk in flight back.
    const pool = createPool(url, 1, 'hr-load');
    let client: PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      await pool.end().catch(() => {});
      throw err;
    }
    const w = new ChunkWriter(pool, client, table, loadId);
    try {
      // Must be set before the session touches a temporary table; the default 8 MB spills to disk.
      await client.query(`SET temp_buffers = '64MB'`);
      if (setBasedFk && table.columns.some((c) => c.references)) {
        try {
          await client.query('SET session_replication_role = replica');
        } catch (err) {
          if ((err as { code?: string }).code !== '42501') throw err;
          log.warn('no permission to set session_replication_role; loads check foreign keys row by row (slower)');
        }
      }
      const cols = table.columns.map((c) => `${q(c.name)} ${c.pgType}`).join(', ');
      await client.query(`CREATE TEMP TABLE ${q(w.stage)} (line bigint, ${cols}) ON COMMIT DELETE ROWS`);
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  async close(): Promise<void> {
    this.client.release(true);
    await this.pool.end().catch(() => {});
  }

  /**
   * Applies a chunk and moves the checkpoint past it. Returns `undefined` when the load is no longer
   * this worker's to write (another worker took it over, or it finished): nothing is written then.
   */
  async apply(chunk: Chunk, rawAt: (start: number, end: number) => Promise<string>): Promise<ChunkOutcome | undefined> {
    const db = this.client;
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
      const wrong = load.wrong_width + chunk.wrongWidth;
      if (read > 0 && wrong === read && (load.rows_read === 0 || chunk.final)) {
        const n = this.table.columns.length;
        throw new UnprocessableError(
          `no line of the file has the ${n} fields of ${this.table.name} (${this.table.columns.map((c) => c.name).join(', ')}); is it the file of another table?`,
        );
      }

      const valid = chunk.ids.length;
      if (valid > 0) await this.copy(chunk);
      const missing = valid > 0 ? await this.lockReferences(chunk) : [];
      const refRejects = missing.some((m) => m.size > 0) ? await this.referenceRejects(chunk, missing, rawAt) : [];
      const written = valid > refRejects.length ? await this.upsert(chunk, missing) : { inserted: 0, updated: 0 };

      const rejects = refRejects.length === 0 ? chunk.rejects : [...chunk.rejects, ...refRejects].sort((a, b) => a.position - b.position);
      await storeRejects(db, 'load', this.loadId, this.table.name, rejects);
      const applied = valid - refRejects.length;
      const changes = Math.min(chunk.duplicateChanges, applied - written.inserted - written.updated);
      const outcome: ChunkOutcome = {
        inserted: written.inserted,
        updated: written.updated + changes,
        unchanged: applied - written.inserted - written.updated - changes,
        rejected: rejects.length,
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
      await db.query('COMMIT');
      return outcome;
    } catch (err) {
      await db.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  private async copy(chunk: Chunk): Promise<void> {
    const cols = ['line', ...this.table.columns.map((c) => c.name)].map(q).join(', ');
    const stream = this.client.query(copyFrom(`COPY ${q(this.stage)} (${cols}) FROM STDIN`));
    const data = chunk.copy;
    await pipeline(
      Readable.from(
        (function* () {
          for (let at = 0; at < data.length; at += 1 << 16) yield data.subarray(at, Math.min(data.length, at + (1 << 16)));
        })(),
      ),
      stream,
    );
  }

  /** Locks the referenced rows the chunk names (FOR KEY SHARE) and returns, per reference, the ids that do not exist. */
  private async lockReferences(chunk: Chunk): Promise<Set<number>[]> {
    const refCols = this.table.columns.filter((c) => c.references);
    const out: Set<number>[] = [];
    for (let r = 0; r < refCols.length; r++) {
      const wanted = [...new Set(chunk.refs[r]!)].sort((a, b) => a - b);
      const { rows } = await this.client.query<{ id: number }>(
        `SELECT id FROM ${q(refCols[r]!.references!)} WHERE id = ANY($1::integer[]) ORDER BY id FOR KEY SHARE`,
        [wanted],
      );
      const found = new Set(rows.map((x) => x.id));
      out.push(new Set(wanted.filter((id) => !found.has(id))));
    }
    return out;
  }

  private async referenceRejects(
    chunk: Chunk,
    missing: Set<number>[],
    rawAt: (start: number, end: number) => Promise<string>,
  ): Promise<Reject[]> {
    const refCols = this.table.columns.filter((c) => c.references);
    const rejects: Reject[] = [];
    for (let i = 0; i < chunk.ids.length; i++) {
      let errors: Reject['errors'] | undefined;
      for (let r = 0; r < refCols.length; r++) {
        const v = chunk.refs[r]![i]!;
        if (missing[r]!.has(v)) (errors ??= []).push({ field: refCols[r]!.name, message: `unknown ${refCols[r]!.name} ${v}` });
      }
      if (errors) rejects.push({ position: chunk.lines[i]!, raw: await rawAt(chunk.starts[i]!, chunk.ends[i]!), errors });
    }
    return rejects;
  }

  private async upsert(chunk: Chunk, missing: Set<number>[]): Promise<{ inserted: number; updated: number }> {
    const t = this.table;
    const names = t.columns.map((c) => q(c.name));
    const rest = names.filter((n) => n !== '"id"');
    const refCols = t.columns.filter((c) => c.references);
    const params: number[][] = [];
    const exclude = refCols
      .map((c, r) => {
        if (missing[r]!.size === 0) return null;
        params.push([...missing[r]!]);
        return `${q(c.name)} = ANY($${params.length}::integer[])`;
      })
      .filter((x): x is string => x !== null);
    const where = exclude.length > 0 ? `WHERE NOT (${exclude.join(' OR ')})` : '';
    const source = chunk.duplicates
      ? `SELECT DISTINCT ON (id) ${names.join(', ')} FROM ${q(this.stage)} ${where} ORDER BY id, line DESC`
      : `SELECT ${names.join(', ')} FROM ${q(this.stage)} ${where} ORDER BY id`;
    const update = rest.length
      ? `DO UPDATE SET ${rest.map((n) => `${n} = EXCLUDED.${n}`).join(', ')}
         WHERE (${rest.map((n) => `t.${n}`).join(', ')}) IS DISTINCT FROM (${rest.map((n) => `EXCLUDED.${n}`).join(', ')})`
      : 'DO NOTHING';
    const { rows } = await this.client.query<{ inserted: number; updated: number }>(
      `WITH up AS (
         INSERT INTO ${q(t.name)} AS t (${names.join(', ')}) ${source}
         ON CONFLICT (id) ${update}
         RETURNING (t.xmax = 0) AS ins
       )
       SELECT count(*) FILTER (WHERE ins)::integer AS inserted, count(*) FILTER (WHERE NOT ins)::integer AS updated FROM up`,
      params,
    );
    return rows[0]!;
  }
}
