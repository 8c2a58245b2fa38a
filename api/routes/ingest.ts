import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { UnsupportedMediaTypeError } from '../../core/errors.js';
import { TABLES } from '../../core/tables.js';
import { ingestBatch, parseBody } from '../../ingest/index.js';
import type { Services } from '../../jobs/index.js';
import { bodyChunks, mediaType } from '../body.js';
import { tableParam } from '../params.js';
import { error, IngestResultSchema, IngestRowsSchema, json, keyed, writeErrors } from '../schemas.js';

const ingestRoute = createRoute({
  method: 'post',
  path: '/ingest/{table}',
  tags: ['ingest'],
  summary: 'Upsert a batch of 1 to 1000 rows',
  description:
    'Valid rows are upserted (a later row with the same id wins); rows that break a data rule are rejected with field and reason, kept in the rejects table and logged. A header line in CSV is skipped.\n\n' +
    'The path is validated from this declaration; the body is read by hand, not by a schema validator: it is parsed while it streams, with its limits enforced as it is read (413 past INGEST_MAX_BYTES or at the 1001st row; 400 for JSON nested deeper than 32 levels), and each row is held to the data rules on its own, so a bad row (a field longer than FIELD_MAX_BYTES included) becomes a reject instead of failing the request. Rows and rejects commit in one transaction.\n\n' +
    'Rows are written in ascending id order, so concurrent batches naming the same ids wait for each other instead of deadlocking; the ids two batches share keep the values of the one that committed last. A deadlock or a reference deleted under the batch is retried whole before answering.',
  ...keyed,
  request: {
    params: z.object({ table: tableParam('path') }),
    body: {
      required: true,
      content: {
        // A $ref, not a zod schema: a zod JSON schema here would make the route buffer and
        // validate the whole body before the handler could count it or reject rows one by one.
        'application/json': { schema: { $ref: '#/components/schemas/IngestRows' } },
        'text/csv': { schema: z.string().openapi({ example: '1,Harold Vogt,2021-11-07T02:48:42Z,2,96' }) },
      },
    },
  },
  responses: {
    200: json(IngestResultSchema, 'What happened to each row'),
    400: error('Unparseable or empty body'),
    404: error('Unknown table'),
    413: error('More than 1000 rows or too many bytes'),
    415: error('Not JSON or CSV'),
    ...writeErrors,
  },
});

export function registerIngest(app: OpenAPIHono, services: Services): void {
  const { config } = services;
  app.openAPIRegistry.register('IngestRows', IngestRowsSchema);

  app.openapi(ingestRoute, async (c) => {
    const table = TABLES[c.req.valid('param').table];
    const type = mediaType(c.req.header('content-type'));
    if (type === undefined) throw new UnsupportedMediaTypeError(type, ['application/json', 'text/csv']);
    const body = await parseBody(bodyChunks(c.req.raw, config.INGEST_MAX_BYTES), type, table, {
      rawMaxBytes: config.REJECT_RAW_MAX_BYTES,
      fieldMaxBytes: config.FIELD_MAX_BYTES,
    });
    return c.json(await ingestBatch(services, table, body, c.get('requestId')), 200);
  });
}
