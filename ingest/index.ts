/**
 * ingest/ — `POST /ingest/{table}`: a batch of 1 to 1000 rows, parsed, held to the data rules,
 * upserted, its rejects kept and logged. May import: core/, pg/, jobs/, warehouse/ (its surface).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Services } from '../jobs/index.js';
import { isTransientPgError, type Pool } from '../core/db.js';
import { BadRequestError, PayloadTooLargeError } from '../core/errors.js';
import { RowBatch, type TableDef } from '../core/tables.js';
import { storeRejects, type Reject } from '../pg/index.js';
import { requestWarehouseRefresh } from '../warehouse/index.js';
import { applyBatch, type ApplyResult } from './apply.js';
import { MAX_ROWS, parseBody, type ParsedBody } from './parse.js';

export { MAX_JSON_DEPTH } from './json-rows.js';
export { MAX_ROWS, parseBody, type ParsedBody };

export interface IngestResult {
  table: TableDef['name'];
  received: number;
  inserted: number;
  updated: number;
  unchanged: number;
  rejected: number;
  rejects: { row: number; errors: Reject['errors'] }[];
}

/**
 * Applies one parsed batch: every row through the data rules, the valid ones upserted in one
 * statement and the rejects kept (source `ingest` + the request id) in the same transaction, so
 * the batch is written whole or not at all; then the rejects are logged and a warehouse refresh
 * is requested when anything changed.
 */
export async function ingestBatch(services: Services, table: TableDef, body: ParsedBody, requestId: string): Promise<IngestResult> {
  const { pool, config } = services;
  const received = body.rows.length;
  if (received === 0) throw new BadRequestError('the batch holds no rows; send 1 to 1000');
  if (received > MAX_ROWS) {
    throw new PayloadTooLargeError(`the batch holds ${received} rows; at most ${MAX_ROWS} are accepted per request`, {
      rows: received,
      maxRows: MAX_ROWS,
    });
  }

  const batch = new RowBatch(table, { fieldMaxBytes: config.FIELD_MAX_BYTES });
  const rejects: Reject[] = [];
  const { rawOf } = body;
  for (let i = 0; i < received; i++) {
    const row = body.rows[i];
    const issues =
      body.issuesOf?.(i) ?? (body.kind === 'csv' ? batch.addFields(row as string[], i) : batch.addObject(row, i));
    if (issues) rejects.push({ position: i, ...rawOf(i), errors: issues });
  }
  const { applied, all } = await writeBatch(pool, batch, rejects, (k) => rawOf(batch.positions[k]!), {
    requestId,
    rawMaxBytes: config.REJECT_RAW_MAX_BYTES,
    log: services.log,
  });

  if (applied.inserted + applied.updated > 0) {
    await requestWarehouseRefresh(services, `ingest ${table.name}`).catch((err: unknown) =>
      // The rows are written; a missed request only delays the warehouse until the next one.
      services.log.warn({ err, requestId }, 'could not request a warehouse refresh'),
    );
  }
  if (all.length > 0) {
    const log = services.log.child({ requestId, table: table.name });
    for (const r of all) log.warn({ row: r.position, errors: r.errors }, 'row rejected');
  }
  return {
    table: table.name,
    received,
    inserted: applied.inserted,
    updated: applied.updated,
    unchanged: applied.unchanged,
    rejected: all.length,
    rejects: all.map((r) => ({ row: r.position, errors: r.errors })),
  };
}

/**
 * The valid rows and every reject (the rules' and the unknown references the upsert finds) in one
 * transaction. Deadlocks, and a reference deleted between the check and the write, are retried
 * whole, as are connection failures (on a fresh connection); each retry is logged (warn).
 *
 * A batch the rules found no fault in is first tried as the one statement alone (it commits by
 * itself; one round trip instead of three): it writes nothing when a row names a missing
 * reference, and the batch is then written in a transaction with those rejects.
 */
async function writeBatch(
  pool: Pool,
  batch: RowBatch,
  rejects: Reject[],
  rawOf: (k: number) => { raw: string; truncated: boolean },
  opts: { requestId: string; rawMaxBytes: number; log: Services['log'] },
): Promise<{ applied: ApplyResult; all: Reject[] }> {
  let alone = rejects.length === 0;
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    let broken: Error | undefined;
    let open = false;
    try {
      if (alone) {
        const applied = await applyBatch(client, batch, rawOf, { allOrNothing: true });
        if (applied) return { applied, all: rejects };
        alone = false;
      }
      open = true;
      await client.query('BEGIN');
      const applied = await applyBatch(client, batch, rawOf);
      const all = rejects.concat(applied.rejects).sort((a, b) => a.position - b.position);
      await storeRejects(client, 'ingest', opts.requestId, batch.table.name, all, { rawMaxBytes: opts.rawMaxBytes });
      await client.query('COMMIT');
      return { applied, all };
    } catch (err) {
      if (open) await client.query('ROLLBACK').catch(() => {});
      const code = (err as { code?: string }).code;
      const retry = code === '23503' || isTransientPgError(err);
      if (isTransientPgError(err) && code !== '40P01' && code !== '40001') broken = err as Error;
      if (!retry || attempt >= 5) throw err;
      opts.log.warn({ requestId: opts.requestId, code, attempt, err: (err as Error).message }, 'batch not written; retrying it whole');
    } finally {
      client.release(broken);
    }
    await sleep(20 * attempt);
  }
}
