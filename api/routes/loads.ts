import { randomUUID } from 'node:crypto';
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Services } from '../../jobs/index.js';
import { BadRequestError, NotFoundError, UnsupportedMediaTypeError } from '../../core/errors.js';
import { getLoad, landCsvBody, landMultipart, listLoads, rejectsOf, resolveLandingFile, startLoads, toView, type Landed } from '../../loads/index.js';
import { TABLE_NAMES } from '../../core/tables.js';
import { mediaType, parseJson, readText } from '../body.js';
import { ErrorSchema, FieldIssueSchema } from '../schemas.js';
import { tableFrom } from '../params.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed'] as const;

export const LoadSchema = z
  .object({
    id: z.string().uuid(),
    table: z.enum(TABLE_NAMES),
    status: z.enum(STATUSES),
    file: z.string().openapi({ description: 'The file under the landing folder' }),
    bytes: z.number().int(),
    rowsRead: z.number().int().openapi({ description: 'Data records read (a header line is not one)' }),
    inserted: z.number().int(),
    updated: z.number().int(),
    unchanged: z.number().int().openapi({ description: 'Records equal to what was stored: nothing written' }),
    rejected: z.number().int(),
    attempts: z.number().int(),
    error: z.string().nullable(),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
  })
  .openapi('Load');

const JsonBody = z.object({
  table: z.enum(TABLE_NAMES),
  path: z.string().min(1).openapi({ description: 'A file under the landing folder (relative to it, or absolute)' }),
});

const CSV_TYPES = ['text/csv', 'application/csv'];
const ACCEPTED = ['text/csv (with ?table=)', 'multipart/form-data', 'application/json {"table", "path"}'];

export function registerLoads(app: OpenAPIHono, services: Services): void {
  const { config, pool } = services;
  const json = (schema: z.ZodType, description: string) => ({ description, content: { 'application/json': { schema } } });

  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/loads',
    tags: ['loads'],
    summary: 'Load CSV files into their tables, through the queue',
    description:
      'A text/csv body (streamed to the landing folder, `?table=` required), multipart/form-data with one file part per table (hired_employees runs after departments and jobs of the same request), or JSON {table, path} for a file already under the landing folder. Each file becomes a load; 202 with it, or with ?wait=true 200 once finished.',
    request: {
      query: z.object({ table: z.enum(TABLE_NAMES).optional(), wait: z.enum(['true', 'false']).optional() }),
      body: {
        required: true,
        content: {
          'text/csv': { schema: z.string() },
          'multipart/form-data': {
            schema: z.object(Object.fromEntries(TABLE_NAMES.map((t) => [t, z.string().openapi({ format: 'binary' }).optional()]))),
          },
          'application/json': { schema: JsonBody },
        },
      },
    },
    responses: {
      200: json(z.union([LoadSchema, z.object({ loads: z.array(LoadSchema) })]), 'Finished (with ?wait=true)'),
      202: json(z.union([LoadSchema, z.object({ loads: z.array(LoadSchema) })]), 'Queued'),
      400: json(ErrorSchema, 'Bad request: missing table, path outside the landing folder, bad multipart part'),
      404: json(ErrorSchema, 'Unknown table'),
      413: json(ErrorSchema, 'Larger than LOAD_MAX_BYTES'),
      415: json(ErrorSchema, 'Unsupported content type'),
      503: json(ErrorSchema, 'The queue is unreachable'),
    },
  });
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/loads',
    tags: ['loads'],
    summary: 'Recent loads, newest first',
    request: {
      query: z.object({
        table: z.enum(TABLE_NAMES).optional(),
        status: z.enum(STATUSES).optional(),
        limit: z.coerce.number().int().min(1).max(1000).optional(),
      }),
    },
    responses: { 200: json(z.object({ loads: z.array(LoadSchema) }), 'The loads') },
  });
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/loads/{id}',
    tags: ['loads'],
    summary: 'A load: status and progress',
    request: { params: z.object({ id: z.string() }) },
    responses: { 200: json(LoadSchema, 'The load'), 404: json(ErrorSchema, 'No such load') },
  });
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/loads/{id}/rejects',
    tags: ['loads'],
    summary: 'The rejected records of a load, as NDJSON',
    request: { params: z.object({ id: z.string() }) },
    responses: {
      200: {
        description: 'One JSON object per line, in file order',
        content: {
          'application/x-ndjson': {
            schema: z.object({
              line: z.number().int().openapi({ description: '1-based physical line where the record starts' }),
              raw: z.string(),
              errors: z.array(FieldIssueSchema),
            }),
          },
        },
      },
      404: json(ErrorSchema, 'No such load'),
    },
  });

  app.post('/loads', async (c) => {
    const type = mediaType(c.req.header('content-type'));
    const wait = c.req.query('wait') === 'true' || c.req.query('wait') === '1';
    let landed: Landed[];
    let several = false;
    if (type !== undefined && CSV_TYPES.includes(type)) {
      const name = c.req.query('table');
      if (!name) throw new BadRequestError(`say which table the file is for: POST /loads?table=${TABLE_NAMES.join('|')}`);
      const table = tableFrom(name);
      landed = [await landCsvBody(c.req.raw, config.dirs.landing, table.name, config.LOAD_MAX_BYTES)];
    } else if (type === 'multipart/form-data') {
      landed = await landMultipart(c.req.raw, config.dirs.landing, config.LOAD_MAX_BYTES);
      several = true;
    } else if (type === 'application/json' || type?.endsWith('+json')) {
      const parsed = JsonBody.safeParse(parseJson(await readText(c.req.raw, config.INGEST_MAX_BYTES)));
      if (!parsed.success) {
        const details = parsed.error.issues.map((i) => ({ field: i.path.join('.') || null, message: i.message }));
        throw new BadRequestError(`body must be {"table", "path"}: ${details.map((d) => `${d.field ?? 'body'}: ${d.message}`).join('; ')}`, details);
      }
      const { file, bytes } = await resolveLandingFile(config.dirs.landing, parsed.data.path);
      landed = [{ id: randomUUID(), table: parsed.data.table, file, bytes }];
    } else {
      throw new UnsupportedMediaTypeError(type, ACCEPTED);
    }

    const { loads, finished } = await startLoads(services, landed, wait);
    const status = finished ? 200 : 202;
    const views = loads.map(toView);
    return c.json(several ? { loads: views } : views[0]!, status);
  });

  app.get('/loads', async (c) => {
    const table = c.req.query('table');
    const statusQ = c.req.query('status');
    const limitQ = c.req.query('limit');
    if (table !== undefined) tableFrom(table);
    if (statusQ !== undefined && !(STATUSES as readonly string[]).includes(statusQ)) {
      throw new BadRequestError(`status must be one of ${STATUSES.join(', ')}`);
    }
    const limit = limitQ === undefined ? 50 : Number(limitQ);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new BadRequestError('limit must be an integer in 1..1000');
    const rows = await listLoads(pool, {
      limit,
      table: table as (typeof TABLE_NAMES)[number] | undefined,
      status: statusQ as (typeof STATUSES)[number] | undefined,
    });
    return c.json({ loads: rows.map(toView) });
  });

  app.get('/loads/:id', async (c) => {
    const load = await getLoad(pool, c.req.param('id'));
    if (!load) throw new NotFoundError(`no load ${c.req.param('id')}`);
    return c.json(toView(load));
  });

  app.get('/loads/:id/rejects', async (c) => {
    const load = await getLoad(pool, c.req.param('id'));
    if (!load) throw new NotFoundError(`no load ${c.req.param('id')}`);
    const enc = new TextEncoder();
    const pages = rejectsOf(pool, load.id)[Symbol.asyncIterator]();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = await pages.next();
        if (next.done) return controller.close();
        controller.enqueue(enc.encode(next.value));
      },
    });
    return new Response(body, { headers: { 'content-type': 'application/x-ndjson; charset=utf-8' } });
  });
}
