/**
 * ingest/ — `POST /ingest/{table}`: a batch of 1 to 1000 rows, parsed, held to the data rules,
 * upserted, its rejects kept and logged. May import: core/, pg/, jobs/, warehouse/ (its surface).
 */
import type { Services } from '../jobs/index.js';
import { BadRequestError, PayloadTooLargeError } from '../core/errors.js';
import { RowBatch, type TableDef } from '../core/tables.js';
import { storeRejects, type Reject } from '../pg/index.js';
import { requestWarehouseRefresh } from '../warehouse/index.js';
import { applyBatch } from './apply.js';
import { parseBody, type ParsedBody } from './parse.js';

export { parseJson } from './json.js';
export { parseBody, type ParsedBody };

export const MAX_ROWS = 1000;

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
 * statement, the rejects kept (source `ingest` + the request id) and logged, and a warehouse
 * refresh requested when anything changed.
 */
export async function ingestBatch(services: Services, table: TableDef, body: ParsedBody, requestId: string): Promise<IngestResult> {
  const { pool } = services;
  const received = body.rows.length;
  if (received === 0) throw new BadRequestError('the batch holds no rows; send 1 to 1000');
  if (received > MAX_ROWS) {
    throw new PayloadTooLargeError(`the batch holds ${received} rows; at most ${MAX_ROWS} are accepted per request`, {
      rows: received,
      maxRows: MAX_ROWS,
    });
  }

  const batch = new RowBatch(table);
  const rejects: Reject[] = [];
  const { rawOf } = body;
  for (let i = 0; i < received; i++) {
    const row = body.rows[i];
    const issues = body.kind === 'csv' ? batch.addFields(row as string[], i) : batch.addObject(row, i);
    if (issues) rejects.push({ position: i, raw: rawOf(i), errors: issues });
  }
  const applied = await applyBatch(pool, batch, (k) => rawOf(batch.positions[k]!));
  const all = rejects.concat(applied.rejects).sort((a, b) => a.position - b.position);

  if (applied.inserted + applied.updated > 0) {
    await requestWarehouseRefresh(services, `ingest ${table.name}`).catch((err: unknown) =>
      // The rows are written; a missed request only delays the warehouse until the next one.
      services.log.warn({ err, requestId }, 'could not request a warehouse refresh'),
    );
  }
  if (all.length > 0) {
    await storeRejects(pool, 'ingest', requestId, table.name, all);
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
