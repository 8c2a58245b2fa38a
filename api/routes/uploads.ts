import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { TABLE_NAMES } from '../../core/tables.js';
import type { Services } from '../../jobs/index.js';
import { createUpload, loadUpload, receiveUpload, toView } from '../../loads/index.js';
import type { Gate } from '../limits.js';
import { WaitParam } from '../params.js';
import { error, json, keyed, writeErrors, queueErrors } from '../schemas.js';
import { LoadSchema } from './loads.js';

/**
 * Presigned uploads: a file goes straight to the storage (the bucket's own URL), or with the
 * local storage to the service's `PUT /uploads/{id}`, authorized by the URL's signature; then
 * POST /uploads/{id}/load loads it like POST /loads.
 */
const UploadSchema = z
  .object({
    uploadId: z.string().uuid(),
    table: z.enum(TABLE_NAMES),
    url: z.string().openapi({ description: 'PUT the file here, as the body, without the API key: the signature in the URL authorizes it' }),
    method: z.literal('PUT'),
    expiresAt: z.string().openapi({ description: 'The URL works until then (UPLOAD_URL_EXPIRES_SECONDS after it was made)' }),
  })
  .openapi('Upload');

const idParams = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '0b9f5c1e-2d4a-4f7e-9a51-3c2b1d0e8f77' }) });

const createUploadRoute = createRoute({
  method: 'post',
  path: '/uploads',
  tags: ['loads'],
  summary: 'Ask for a URL to upload a CSV file to (presigned upload)',
  description:
    'Answers 201 with a URL that takes one PUT of the file (the whole CSV as the body): a presigned URL of the bucket with STORAGE_URL=s3://…, or `PUT /uploads/{id}?expires=&signature=` of this service with the local storage; the same flow either way. Then `POST /uploads/{id}/load` starts the load. `bytes`, when given, is checked now (413 past LOAD_MAX_BYTES; 507 when the local disk could not take it) and again when the load is asked for.',
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.object({
            table: z.enum(TABLE_NAMES),
            bytes: z.number().int().min(0).optional().openapi({ description: 'The size of the file to come, if known' }),
          }),
        },
      },
    },
  },
  ...keyed,
  responses: {
    201: json(UploadSchema, 'The upload, with its URL'),
    400: error('Bad JSON body'),
    413: error('bytes is larger than LOAD_MAX_BYTES'),
    507: error('The disk of the local storage is nearly full (MIN_FREE_DISK_BYTES)'),
    ...writeErrors,
  },
});

const putRoute = createRoute({
  method: 'put',
  path: '/uploads/{id}',
  tags: ['loads'],
  summary: 'The upload URL of the local storage: PUT the file here',
  description:
    'Only with the local storage, and only through the URL POST /uploads answered: its `expires` and `signature` authorize the PUT (no API key). Streamed into DATA_DIR/landing/uploads with the limits of every upload (413 past LOAD_MAX_BYTES, 507 on a nearly full disk); a second PUT before the load replaces the file. An expired or wrong signature: 403, nothing stored.',
  request: {
    params: idParams,
    query: z.object({
      expires: z.string().optional().openapi({ description: 'From the URL: when it stops working (Unix seconds)' }),
      signature: z.string().optional().openapi({ description: 'From the URL' }),
    }),
    body: { required: true, content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) }, 'text/csv': { schema: z.string() } } },
  },
  responses: {
    200: json(z.object({ uploadId: z.string().uuid(), bytes: z.number().int() }), 'Stored'),
    403: error('The URL has expired (url_expired) or its signature does not match (bad_signature): nothing stored'),
    404: error('The storage is a bucket: PUT to the URL POST /uploads answered'),
    409: error('The upload is already being loaded'),
    413: error('Larger than LOAD_MAX_BYTES'),
    429: error('UPLOAD_CONCURRENCY uploads are already streaming in this process; Retry-After says when to try again'),
    507: error('The disk is nearly full (MIN_FREE_DISK_BYTES); nothing was kept'),
  },
});

const loadRoute = createRoute({
  method: 'post',
  path: '/uploads/{id}/load',
  tags: ['loads'],
  summary: 'Load an uploaded file into its table',
  description:
    'Starts the ordinary load of the file PUT to the upload URL and answers with it, as POST /loads does: 202, or with `?wait=true` 200 once it has finished (202 after LOAD_WAIT_MS). The load has the upload\'s id; asking again answers the same load.',
  request: { params: idParams, query: z.object({ wait: WaitParam }) },
  ...keyed,
  responses: {
    200: json(LoadSchema, 'Finished (with ?wait=true), or loaded before'),
    202: json(LoadSchema, 'Queued, or still running after LOAD_WAIT_MS'),
    404: error('No such upload'),
    409: error('Nothing was uploaded yet, or not the number of bytes announced'),
    413: error('The uploaded file is larger than LOAD_MAX_BYTES'),
    ...queueErrors,
    ...writeErrors,
  },
});

export function registerUploads(app: OpenAPIHono, services: Services, gate: Gate): void {
  const { config } = services;

  app.openapi(createUploadRoute, async (c) => {
    const { table, bytes } = c.req.valid('json');
    const upload = await createUpload(services, table, bytes, config.PUBLIC_URL ?? new URL(c.req.url).origin);
    return c.json(upload, 201);
  });

  app.openapi(putRoute, async (c) => {
    const { id } = c.req.valid('param');
    const query = new URL(c.req.url).searchParams;
    // The body is read by hand (streamed), whatever its type: a client PUTs the file as it is.
    return c.json(await gate.run(() => receiveUpload(services, id, query, c.req.raw)), 200);
  });

  app.openapi(loadRoute, async (c) => {
    const { id } = c.req.valid('param');
    const { wait } = c.req.valid('query');
    const { load, finished } = await loadUpload(services, id, wait);
    const view = toView(load, config);
    return finished ? c.json(view, 200) : c.json(view, 202);
  });
}
