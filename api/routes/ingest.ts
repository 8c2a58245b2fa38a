import { z } from '@hono/zod-openapi';
import { CsvError, parse } from 'csv-parse/sync';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { applyBatch, storeRejects, type Reject } from '../../core/apply.js';
import type { Services } from '../../core/context.js';
import { requestWarehouseRefresh } from '../../core/queues.js';
import { CSV_OPTIONS, cleanRaw } from '../../core/csv.js';
import { BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../../core/errors.js';
import { isHeader, RowBatch, type TableDef } from '../../core/tables.js';
import { mediaType, parseJson, readText } from '../body.js';
import { ErrorSchema, IngestResultSchema, rowSchemas, TableParam } from '../schemas.js';
import { tableFrom } from '../tables.js';

export const MAX_ROWS = 1000;

interface ParsedBody {
  /** Each row: a JSON value, or a CSV record's fields. */
  rows: unknown[];
  kind: 'json' | 'csv';
  /** The raw text of row i, for rejects: computed only for rows that are rejected. */
  rawOf: (i: number) => string;
}

function parseBody(text: string, type: string | undefined, table: TableDef): ParsedBody {
  if (type === 'application/json' || type?.endsWith('+json')) {
    if (text.trim() === '') throw new BadRequestError('body is empty; send a JSON array of rows or {"rows": [...]}');
    const body = parseJson(text);
    const rows = Array.isArray(body)
      ? body
      : body !== null && typeof body === 'object' && Array.isArray((body as { rows?: unknown }).rows)
        ? (body as { rows: unknown[] }).rows
        : undefined;
    if (!rows) throw new BadRequestError('body must be a JSON array of rows or an object {"rows": [...]}');
    return { rows, kind: 'json', rawOf: (i) => JSON.stringify(rows[i]) ?? String(rows[i]) };
  }
  if (type === 'text/csv' || type === 'application/csv') {
    let records: { record: string[]; raw: string }[];
    try {
      records = parse(text, CSV_OPTIONS) as unknown as { record: string[]; raw: string }[];
    } catch (err) {
      if (err instanceof CsvError) {
        const line = (err as CsvError & { lines?: number }).lines;
        throw new BadRequestError(`body is not valid CSV${line ? ` near line ${line}` : ''}: ${err.message}`, {
          line,
        });
      }
      throw err;
    }
    if (records.length > 0 && isHeader(records[0]!.record, table)) records.shift();
    return { rows: records.map((r) => r.record), kind: 'csv', rawOf: (i) => cleanRaw(records[i]!.raw) };
  }
  throw new UnsupportedMediaTypeError(type, ['application/json', 'text/csv']);
}

export function registerIngest(app: OpenAPIHono, services: Services): void {
  const { config, pool } = services;

  // Registered for the docs only: the body is read by hand (streamed byte count, per-row rules,
  // rejects instead of a failed request), which a schema validator in front would defeat.
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/ingest/{table}',
    tags: ['ingest'],
    summary: 'Upsert a batch of 1 to 1000 rows',
    description:
      'Valid rows are upserted (a later row with the same id wins); rows that break a data rule are rejected with field and reason, kept in the rejects table and logged. A header line in CSV is skipped.',
    request: {
      params: z.object({ table: TableParam }),
      body: {
        required: true,
        content: {
          'application/json': {
            schema: z.union([z.array(rowSchemas.any), z.object({ rows: z.array(rowSchemas.any) })]),
          },
          'text/csv': { schema: z.string().openapi({ example: '1,Harold Vogt,2021-11-07T02:48:42Z,2,96' }) },
        },
      },
    },
    responses: {
      200: { description: 'What happened to each row', content: { 'application/json': { schema: IngestResultSchema } } },
      400: { description: 'Unparseable or empty body', content: { 'application/json': { schema: ErrorSchema } } },
      404: { description: 'Unknown table', content: { 'application/json': { schema: ErrorSchema } } },
      413: { description: 'More than 1000 rows or too many bytes', content: { 'application/json': { schema: ErrorSchema } } },
      415: { description: 'Not JSON or CSV', content: { 'application/json': { schema: ErrorSchema } } },
    },
  });

  app.post('/ingest/:table', async (c) => {
    const table = tableFrom(c.req.param('table'));
    const type = mediaType(c.req.header('content-type'));
    if (type === undefined) throw new UnsupportedMediaTypeError(type, ['application/json', 'text/csv']);
    const text = await readText(c.req.raw, config.INGEST_MAX_BYTES);
    const body = parseBody(text, type, table);
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

    const requestId = c.get('requestId');
    if (applied.inserted + applied.updated > 0) {
      await requestWarehouseRefresh(services.queues, `ingest ${table.name}`).catch((err: unknown) =>
        // The rows are written; a missed request only delays the warehouse until the next one.
        services.log.warn({ err, requestId }, 'could not request a warehouse refresh'),
      );
    }
    if (all.length > 0) {
      await storeRejects(pool, 'ingest', requestId, table.name, all);
      const log = services.log.child({ requestId, table: table.name });
      for (const r of all) log.warn({ row: r.position, errors: r.errors }, 'row rejected');
    }
    return c.json({
      table: table.name,
      received,
      inserted: applied.inserted,
      updated: applied.updated,
      unchanged: applied.unchanged,
      rejected: all.length,
      rejects: all.map((r) => ({ row: r.position, errors: r.errors })),
    });
  });
}
