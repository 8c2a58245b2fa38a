import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Services } from '../../jobs/index.js';
import { refreshNow, warehouseStatus } from '../../warehouse/index.js';
import { WaitParam } from '../params.js';
import { error, json, keyed, writeErrors, queueErrors } from '../schemas.js';

const StatusSchema = z
  .object({
    status: z.enum(['ready', 'not_built']),
    refreshedAt: z.string().nullable().openapi({ description: 'When the published file was built (ISO 8601 UTC)' }),
    version: z.number().int().nullable().openapi({ description: 'Last export batch the published file holds' }),
    build: z.string().nullable().openapi({ description: 'full or incremental' }),
    upToDate: z.boolean().openapi({ description: 'No change in PostgreSQL is waiting for a refresh' }),
    path: z
      .string()
      .openapi({ description: 'The DuckDB file to open read-only from notebooks and BI tools, relative to DATA_DIR', example: 'warehouse/hr.duckdb' }),
    parquetManifest: z
      .string()
      .openapi({ description: 'Manifest of the Parquet files (for engines reading Parquet directly), relative to DATA_DIR', example: 'warehouse/parquet/manifest.json' }),
    tables: z.record(z.string(), z.number().int()).openapi({ description: 'Row count per table of the star schema' }),
  })
  .openapi('WarehouseStatus');

const RefreshAccepted = z
  .object({
    jobId: z.string(),
    status: z
      .string()
      .optional()
      .openapi({ description: 'With wait=true: completed (200), or the state it is in (queued, running) after the wait time (202)' }),
    result: z.unknown().optional().openapi({ description: 'With wait=true, once finished: what the refresh did' }),
  })
  .openapi('WarehouseRefresh');

const statusRoute = createRoute({
  method: 'get',
  path: '/warehouse',
  tags: ['warehouse'],
  summary: 'Last refresh, row counts and the path of the DuckDB file',
  responses: { 200: json(StatusSchema, 'Warehouse status') },
});

const refreshRoute = createRoute({
  method: 'post',
  path: '/warehouse/refresh',
  tags: ['warehouse'],
  summary: 'Refresh the warehouse now',
  description:
    'Queues a refresh that runs now (joining one already waiting). With `?wait=true`, answers when it has finished (200), or 202 with its current state after WAREHOUSE_REFRESH_WAIT_MS.',
  ...keyed,
  request: { query: z.object({ wait: WaitParam }) },
  responses: {
    200: json(RefreshAccepted, 'Finished (wait=true)'),
    202: json(RefreshAccepted, 'Queued, or still going after WAREHOUSE_REFRESH_WAIT_MS'),
    400: error('Bad wait'),
    500: error('The refresh failed'),
    ...queueErrors,
    ...writeErrors,
  },
});

export function registerWarehouse(app: OpenAPIHono, services: Services): void {
  app.openapi(statusRoute, async (c) => c.json(await warehouseStatus(services), 200));

  app.openapi(refreshRoute, async (c) => {
    const { done, ...answer } = await refreshNow(services, c.req.valid('query').wait);
    return done ? c.json(answer, 200) : c.json(answer, 202);
  });
}
