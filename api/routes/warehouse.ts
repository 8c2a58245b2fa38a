import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Services } from '../../jobs/index.js';
import { AppError } from '../../core/errors.js';
import { waitForJob } from '../../jobs/index.js';
import { requestWarehouseRefresh, warehouseStatus } from '../../warehouse/index.js';
import { ErrorSchema } from '../schemas.js';

const StatusSchema = z
  .object({
    status: z.enum(['ready', 'not_built']),
    refreshedAt: z.string().nullable().openapi({ description: 'When the published file was built (ISO 8601 UTC)' }),
    version: z.number().int().nullable().openapi({ description: 'Last export batch the published file holds' }),
    build: z.string().nullable().openapi({ description: 'full or incremental' }),
    upToDate: z.boolean().openapi({ description: 'No change in PostgreSQL is waiting for a refresh' }),
    path: z.string().openapi({ description: 'The DuckDB file to open read-only from notebooks and BI tools' }),
    parquetManifest: z.string().openapi({ description: 'Manifest of the Parquet files (for engines reading Parquet directly)' }),
    tables: z.record(z.string(), z.number().int()).openapi({ description: 'Row count per table of the star schema' }),
  })
  .openapi('WarehouseStatus');

const RefreshAccepted = z
  .object({
    jobId: z.string(),
    status: z.string().optional().openapi({ description: 'With wait=true: the job state (completed)' }),
    result: z.unknown().optional().openapi({ description: 'With wait=true: what the refresh did' }),
  })
  .openapi('WarehouseRefresh');

const statusRoute = createRoute({
  method: 'get',
  path: '/warehouse',
  tags: ['warehouse'],
  summary: 'Last refresh, row counts and the path of the DuckDB file',
  responses: { 200: { description: 'Warehouse status', content: { 'application/json': { schema: StatusSchema } } } },
});

const refreshRoute = createRoute({
  method: 'post',
  path: '/warehouse/refresh',
  tags: ['warehouse'],
  summary: 'Refresh the warehouse now',
  description:
    'Queues a refresh (joining one already waiting). With wait=true, answers when it has finished (200), or 202 if it takes longer than WAREHOUSE_REFRESH_WAIT_MS.',
  security: [{ bearer: [] }],
  request: {
    query: z.object({
      wait: z.enum(['true', 'false']).optional().openapi({ param: { name: 'wait', in: 'query' } }),
    }),
  },
  responses: {
    200: { description: 'Finished (wait=true)', content: { 'application/json': { schema: RefreshAccepted } } },
    202: { description: 'Queued', content: { 'application/json': { schema: RefreshAccepted } } },
    500: { description: 'The refresh failed', content: { 'application/json': { schema: ErrorSchema } } },
  },
});

export function registerWarehouse(app: OpenAPIHono, services: Services): void {
  const { config, queues } = services;

  app.openapi(statusRoute, async (c) => c.json(await warehouseStatus(services), 200));

  app.openapi(refreshRoute, async (c) => {
    const jobId = await requestWarehouseRefresh(services, 'api', { immediate: true });
    if (c.req.valid('query').wait !== 'true') return c.json({ jobId }, 202);
    const done = await waitForJob(queues.warehouse, jobId, config.WAREHOUSE_REFRESH_WAIT_MS);
    if (done.timedOut) return c.json({ jobId, status: 'running' }, 202);
    if (done.state === 'failed') {
      throw new AppError(500, 'refresh_failed', `the warehouse refresh failed: ${done.error ?? 'unknown error'}`, { jobId });
    }
    return c.json({ jobId, status: done.state, result: done.result }, 200);
  });
}
