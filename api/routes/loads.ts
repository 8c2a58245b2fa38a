import { randomUUID } from 'node:crypto';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { BadRequestError, NotFoundError, UnsupportedMediaTypeError } from '../../core/errors.js';
import { TABLE_NAMES } from '../../core/tables.js';
import type { Services } from '../../jobs/index.js';
import { getLoad, landCsvBody, landMultipart, listLoads, namedObject, landingObject, rejectsOf, startLoads, storageOf, toView, uploadTarget, type Landed } from '../../loads/index.js';
import { isJson, mediaType } from '../body.js';
import { Gate } from '../limits.js';
import { tableParam, WaitParam } from '../params.js';
import { error, FieldIssueSchema, json, keyed, keyErrors, writeErrors, queueErrors } from '../schemas.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed'] as const;

export const LoadSchema = z
  .object({
    id: z.string().uuid(),
    table: z.enum(TABLE_NAMES),
    status: z.enum(STATUSES),
    file: z.string().openapi({
      description: 'The file: relative to DATA_DIR (landing/…) with the local storage, s3://bucket/key for an object in a bucket',
      example: 'landing/uploads/2021-11-07/0b9f5c1e-2d4a-4f7e-9a51-3c2b1d0e8f77.jobs.csv',
    }),
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
    fileRemovedAt: z
      .string()
      .nullable()
      .openapi({ description: 'When retention removed the uploaded file (UPLOAD_RETENTION_DAYS after the load finished); the record stays' }),
    source: z.enum(['api', 'inbox']).openapi({ description: 'api: POST /loads (or the demo); inbox: a file dropped into DATA_DIR/landing/inbox/' }),
    sourceName: z.string().nullable().openapi({ description: 'Inbox loads: the file name as dropped', example: 'hired_employees_2021.csv' }),
  })
  .openapi('Load');

const JsonBody = z.object({
  table: z.enum(TABLE_NAMES),
  path: z
    .string()
    .min(1)
    .optional()
    .openapi({ description: 'A file under the landing folder: DATA_DIR/landing (relative to it, or absolute), or landing/ in the bucket of STORAGE_URL. Give path or url.' }),
  url: z
    .string()
    .min(1)
    .optional()
    .openapi({
      description:
        'An object in a bucket, s3://bucket/key (only with STORAGE_URL=s3://…): the bucket of STORAGE_URL (any key in it), or one listed in LOAD_URL_BUCKETS. Checked before the load is made: 404 when there is no such object. Give path or url.',
      example: 's3://hr-landing/2021/jobs.csv',
    }),
});

const CSV_TYPES = ['text/csv', 'application/csv'];
const MULTIPART = 'multipart/form-data';
const ACCEPTED = ['text/csv (with ?table=)', MULTIPART, 'application/json {"table", "path"} or {"table", "url"}'];

const OneOrSeveral = z.union([LoadSchema, z.object({ loads: z.array(LoadSchema) })]);
const idParams = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '0b9f5c1e-2d4a-4f7e-9a51-3c2b1d0e8f77' }) });

/**
 * Refuses, with the accepted list, a body the handler cannot read (before the library's bare 415
 * for an undeclared type). A JSON body is capped for every route by capJsonBodies (middleware.ts).
 */
const startGate: MiddlewareHandler = async (c, next) => {
  const type = mediaType(c.req.header('content-type'));
  if (!isJson(type) && (type === undefined || !(CSV_TYPES.includes(type) || type === MULTIPART))) throw new UnsupportedMediaTypeError(type, ACCEPTED);
  return next();
};

const startRoute = createRoute({
  method: 'post',
  path: '/loads',
  tags: ['loads'],
  summary: 'Load CSV files into their tables, through the queue',
  description:
    'A text/csv body (streamed to the landing folder, `?table=` required), multipart/form-data with one file part per table (hired_employees runs after departments and jobs of the same request), JSON {table, path} for a file already under the landing folder, or JSON {table, url} for an object in a bucket (s3://bucket/key). Each file becomes a load: 202 with it; with `?wait=true`, 200 once every load has finished, or 202 with their current state after LOAD_WAIT_MS.\n\n' +
    'The query and a JSON body are validated from this declaration. The text/csv and multipart bodies are read by hand, streamed to disk with their bytes counted (413 past LOAD_MAX_BYTES), never buffered; so the multipart schema is for the document only. The body is required, but declared optional so that the JSON schema is checked only when the body is JSON.',
  request: {
    query: z.object({ table: tableParam('query').optional(), wait: WaitParam }),
    body: {
      required: false,
      content: {
        'text/csv': { schema: z.string() },
        'application/csv': { schema: z.string() },
        // A plain schema, not zod: a zod form schema would make the route buffer every upload.
        'multipart/form-data': {
          schema: { type: 'object', properties: Object.fromEntries(TABLE_NAMES.map((t) => [t, { type: 'string', format: 'binary' }])) },
        },
        'application/json': { schema: JsonBody },
      },
    },
  },
  middleware: [startGate],
  ...keyed,
  responses: {
    200: json(OneOrSeveral, 'Finished (with ?wait=true)'),
    202: json(OneOrSeveral, 'Queued, or still running after LOAD_WAIT_MS'),
    400: error('Bad request: missing table, bad wait, path outside the landing folder, a url that is not s3://bucket/key or names a bucket not allowed, bad JSON body or multipart part'),
    404: error('Unknown table, or no object at the url'),
    413: error('Larger than LOAD_MAX_BYTES'),
    415: error('Unsupported content type'),
    429: error('UPLOAD_CONCURRENCY uploads are already streaming in this process; Retry-After says when to try again'),
    ...queueErrors,
    507: error('The disk is nearly full (MIN_FREE_DISK_BYTES); nothing was kept'),
    ...writeErrors,
  },
});

const listRoute = createRoute({
  method: 'get',
  path: '/loads',
  tags: ['loads'],
  summary: 'Recent loads, newest first',
  request: {
    query: z.object({
      table: tableParam('query').optional(),
      status: z.enum(STATUSES).optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(50).openapi({ description: 'How many, 1..1000; default 50' }),
    }),
  },
  responses: {
    200: json(z.object({ loads: z.array(LoadSchema) }), 'The loads'),
    400: error('Bad status or limit'),
    404: error('Unknown table'),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/loads/{id}',
  tags: ['loads'],
  summary: 'A load: status and progress',
  request: { params: idParams },
  responses: { 200: json(LoadSchema, 'The load'), 404: error('No such load') },
});

const rejectsRoute = createRoute({
  method: 'get',
  path: '/loads/{id}/rejects',
  tags: ['loads'],
  summary: 'The rejected records of a load, as NDJSON',
  description: 'Raw lines, names included: needs the API key when API_KEY is set. Rejects older than REJECT_RETENTION_DAYS are pruned.',
  ...keyed,
  request: { params: idParams },
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
    404: error('No such load'),
    ...keyErrors,
  },
});

/** Registers the routes; returns the gate of UPLOAD_CONCURRENCY, which presigned PUTs share. */
export function registerLoads(app: OpenAPIHono, services: Services): Gate {
  const { config, pool } = services;
  const uploads = new Gate('uploads are', config.UPLOAD_CONCURRENCY, 'UPLOAD_CONCURRENCY', 10);
  const limits = { maxBytes: config.LOAD_MAX_BYTES, minFreeBytes: config.MIN_FREE_DISK_BYTES };
  const view = (l: Parameters<typeof toView>[0]) => toView(l, config);

  app.openapi(startRoute, async (c) => {
    const { table, wait } = c.req.valid('query');
    const type = mediaType(c.req.header('content-type'));
    let landed: Landed[];
    if (isJson(type)) {
      // Checked against JsonBody by the route's validator. The library types a JSON body only when
      // every declared content type has a zod schema, which the streamed ones here do not.
      const body = c.req.valid('json' as never) as z.output<typeof JsonBody>;
      if (body.path === undefined && body.url === undefined) {
        throw new BadRequestError('path: required: give path (a file under the landing folder) or url (s3://bucket/key)', [{ field: 'path', message: 'required' }]);
      }
      if (body.path !== undefined && body.url !== undefined) {
        throw new BadRequestError('url: give path or url, not both', [{ field: 'url', message: 'give path or url, not both' }]);
      }
      const { file, bytes } =
        body.url !== undefined ? await namedObject(config, body.url) : await landingObject(config, await storageOf(config), body.path!);
      landed = [{ id: randomUUID(), table: body.table, file, bytes }];
    } else if (type === MULTIPART) {
      const target = await uploadTarget(config);
      landed = await uploads.run(() => landMultipart(c.req.raw, target, limits));
    } else {
      if (!table) throw new BadRequestError(`say which table the file is for: POST /loads?table=${TABLE_NAMES.join('|')}`);
      const target = await uploadTarget(config);
      landed = [await uploads.run(() => landCsvBody(c.req.raw, target, table, limits))];
    }
    const { loads, finished } = await startLoads(services, landed, wait);
    const views = loads.map(view);
    const answer = type === MULTIPART ? { loads: views } : views[0]!;
    return finished ? c.json(answer, 200) : c.json(answer, 202);
  });

  app.openapi(listRoute, async (c) => {
    const { table, status, limit } = c.req.valid('query');
    return c.json({ loads: (await listLoads(pool, { table, status, limit })).map(view) }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const { id } = c.req.valid('param');
    const load = await getLoad(pool, id);
    if (!load) throw new NotFoundError(`no load ${id}`);
    return c.json(view(load), 200);
  });

  app.openapi(rejectsRoute, async (c) => {
    const { id } = c.req.valid('param');
    const load = await getLoad(pool, id);
    if (!load) throw new NotFoundError(`no load ${id}`);
    const enc = new TextEncoder();
    const pages = rejectsOf(pool, load.id)[Symbol.asyncIterator]();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = await pages.next();
        if (next.done) return controller.close();
        controller.enqueue(enc.encode(next.value));
      },
    });
    const res = new Response(body, { headers: { 'content-type': 'application/x-ndjson; charset=utf-8' } });
    // The library types any application/*json content as a JSON answer, x-ndjson included,
    // and has no type for a streamed one: this is that stream.
    return res as never;
  });
  return uploads;
}
