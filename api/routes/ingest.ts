import { z } from '@hono/zod-openapi';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { UnsupportedMediaTypeError } from '../../core/errors.js';
import { ingestBatch, parseBody } from '../../ingest/index.js';
import type { Services } from '../../jobs/index.js';
import { mediaType, readText } from '../body.js';
import { ErrorSchema, IngestResultSchema, rowSchemas, TableParam } from '../schemas.js';
import { tableFrom } from '../params.js';

export function registerIngest(app: OpenAPIHono, services: Services): void {
  const { config } = services;

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
    return c.json(await ingestBatch(services, table, parseBody(text, type, table), c.get('requestId')));
  });
}
