import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { Services } from '../../jobs/index.js';
import { departmentsAboveMean, hiresByQuarter, layoutOf, publishedFollower, sharedReader, type WarehouseInfo } from '../../warehouse/index.js';
import { toCsv, wantsCsv } from '../csv-answer.js';
import { error } from '../schemas.js';

const Query = z.object({
  year: z
    .string()
    .regex(/^\d+$/, 'must be an integer from 1900 to 2100')
    .default('2021')
    .transform(Number)
    .pipe(z.number().int().min(1900, 'must be from 1900 to 2100').max(2100, 'must be from 1900 to 2100'))
    .openapi({ param: { name: 'year', in: 'query' }, type: 'integer', example: 2021, description: 'UTC year, 1900..2100; default 2021' }),
  format: z
    .enum(['json', 'csv'])
    .optional()
    .openapi({ param: { name: 'format', in: 'query' }, description: 'csv answers text/csv with a header line (so does Accept: text/csv)' }),
});

const HiresByQuarter = z
  .object({ department: z.string(), job: z.string(), q1: z.number().int(), q2: z.number().int(), q3: z.number().int(), q4: z.number().int() })
  .openapi('HiresByQuarter');
const DepartmentAboveMean = z
  .object({ id: z.number().int(), department: z.string(), hired: z.number().int() })
  .openapi('DepartmentAboveMean');

const refreshedHeaders = {
  'Last-Modified': { description: 'When the warehouse data was last published', schema: { type: 'string' as const } },
  'X-Warehouse-Refreshed-At': { description: 'The same, ISO 8601 UTC', schema: { type: 'string' as const } },
  'X-Warehouse-Version': { description: 'Data version (last export batch applied)', schema: { type: 'string' as const } },
};

function route(path: string, summary: string, description: string, schema: z.ZodType) {
  return createRoute({
    method: 'get',
    path,
    tags: ['analytics'],
    summary,
    description,
    request: { query: Query },
    responses: {
      200: {
        description: 'The metric, from the warehouse',
        headers: refreshedHeaders,
        content: { 'application/json': { schema: z.array(schema) }, 'text/csv': { schema: z.string() } },
      },
      400: error('year is not an integer in 1900..2100, or format is unknown'),
      503: error('The warehouse has not been built yet: POST /warehouse/refresh'),
    },
  });
}

const byQuarter = route(
  '/analytics/hires-by-quarter',
  'Hires per department and job, by UTC quarter of a year',
  'One row per department and job with at least one hire that year, ordered by department then job, alphabetically ignoring case (ties by exact value).',
  HiresByQuarter,
);
const aboveMean = route(
  '/analytics/departments-above-mean',
  'Departments that hired more than the mean in a year',
  'Departments whose hires that year exceed the mean over the departments that hired that year, by hires descending (ties by department name, ignoring case).',
  DepartmentAboveMean,
);

function answer<T extends object>(c: Context, info: WarehouseInfo, rows: T[], columns: readonly (keyof T & string)[], csv: boolean): Response {
  c.header('Last-Modified', new Date(info.refreshedAt).toUTCString());
  c.header('X-Warehouse-Refreshed-At', info.refreshedAt);
  c.header('X-Warehouse-Version', String(info.version));
  c.header('Cache-Control', 'no-cache');
  if (csv) return c.body(toCsv(columns, rows), 200, { 'Content-Type': 'text/csv; charset=utf-8' });
  return c.json(rows, 200);
}

export function registerAnalytics(app: OpenAPIHono, services: Services): void {
  const layout = layoutOf(services.config.dirs.warehouse);
  const reader = sharedReader(layout.duckdb);
  // With a bucket (STORAGE_URL), a newer published version is fetched from it (warehouse/remote.ts).
  const follow = publishedFollower(services, layout);

  app.openapi(byQuarter, async (c) => {
    const { year, format } = c.req.valid('query');
    const csv = wantsCsv(format, c.req.header('accept'));
    await follow();
    return reader.use(async (conn, info) =>
      answer(c, info, await hiresByQuarter(conn, year), ['department', 'job', 'q1', 'q2', 'q3', 'q4'], csv),
    );
  });

  app.openapi(aboveMean, async (c) => {
    const { year, format } = c.req.valid('query');
    const csv = wantsCsv(format, c.req.header('accept'));
    await follow();
    return reader.use(async (conn, info) => answer(c, info, await departmentsAboveMean(conn, year), ['id', 'department', 'hired'], csv));
  });
}
