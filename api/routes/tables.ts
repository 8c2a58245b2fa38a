import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { NotFoundError } from '../../core/errors.js';
import { checkInt, FieldError } from '../../core/rules.js';
import { TABLE_NAMES, TABLES, type TableName } from '../../core/tables.js';
import type { Services } from '../../jobs/index.js';
import { checkBound, DEFAULT_LIMIT, exportCsv, MAX_LIMIT, readPage, readRow, type Selection } from '../../tables/index.js';
import { wantsCsv } from '../csv-answer.js';
import { ErrorSchema, rowSchemas } from '../schemas.js';

/** A zod transform applying one of the data dictionary's checkers: its message names what is wrong. */
const rule =
  <T>(check: (v: string) => T | FieldError) =>
  (v: string, ctx: z.RefinementCtx): T => {
    const r = check(v);
    if (r instanceof FieldError) {
      ctx.addIssue({ code: 'custom', message: r.message });
      return z.NEVER;
    }
    return r;
  };

const intParam = (name: string, where: 'query' | 'path', description: string, example: number) =>
  z.string().transform(rule(checkInt)).openapi({ param: { name, in: where }, type: 'integer', minimum: 1, maximum: 2147483647, description, example });

const boundParam = (name: string, description: string, example: string) =>
  z.string().transform(rule(checkBound)).openapi({ param: { name, in: 'query' }, type: 'string', description, example });

const PageQuery = z.object({
  // The cursor is the last id of the previous page, checked as an id; documented as opaque so it can change.
  after: z
    .string()
    .transform(rule(checkInt))
    .optional()
    .openapi({ param: { name: 'after', in: 'query' }, type: 'string', example: '100', description: 'Cursor: the `next` of the previous page, passed back as it is (opaque). Omit for the first page.' }),
  limit: z
    .string()
    .regex(/^\d+$/, `must be an integer from 1 to ${MAX_LIMIT}`)
    .default(String(DEFAULT_LIMIT))
    .transform(Number)
    .pipe(z.number().int().min(1, `must be from 1 to ${MAX_LIMIT}`).max(MAX_LIMIT, `must be from 1 to ${MAX_LIMIT}`))
    .openapi({ param: { name: 'limit', in: 'query' }, type: 'integer', example: DEFAULT_LIMIT, description: `Rows per page, 1..${MAX_LIMIT}; default ${DEFAULT_LIMIT}. Ignored by the CSV export.` }),
  format: z
    .enum(['json', 'csv'])
    .optional()
    .openapi({ param: { name: 'format', in: 'query' }, description: 'csv streams the whole selection (from `after` on, no limit) as text/csv with a header line; so does Accept: text/csv' }),
});

const HireQuery = PageQuery.extend({
  department_id: intParam('department_id', 'query', 'Only hires into this department', 2).optional(),
  job_id: intParam('job_id', 'query', 'Only hires for this job', 96).optional(),
  from: boundParam('from', 'Hired at or after this instant (ISO 8601 date-time as ingest takes it, no offset = UTC; or a date, meaning its midnight UTC). URL-encode a + offset as %2B.', '2021-01-01').optional(),
  to: boundParam('to', 'Hired before this instant (half-open: [from, to)); same forms as from.', '2021-07-01T00:00:00Z').optional(),
});

type HireQueryOut = z.output<typeof HireQuery>;

const IdParams = z.object({ id: intParam('id', 'path', 'The row id, 1..2147483647', 1) });

const EXAMPLES: Record<TableName, Record<string, string | number>[]> = {
  departments: [{ id: 1, department: 'Product Management' }, { id: 2, department: 'Sales' }],
  jobs: [{ id: 1, job: 'Marketing Assistant' }, { id: 2, job: 'VP Sales' }],
  hired_employees: [
    { id: 1, name: 'Harold Vogt', datetime: '2021-11-07T02:48:42Z', department_id: 2, job_id: 96 },
    { id: 3, name: 'Lyman Hadye', datetime: '2021-09-01T23:27:38.25Z', department_id: 5, job_id: 52 },
  ],
};

const CSV_EXAMPLE: Record<TableName, string> = {
  departments: 'id,department\n1,Product Management\n2,Sales\n',
  jobs: 'id,job\n1,Marketing Assistant\n2,VP Sales\n',
  hired_employees: 'id,name,datetime,department_id,job_id\n1,Harold Vogt,2021-11-07T02:48:42Z,2,96\n3,Lyman Hadye,2021-09-01T23:27:38.25Z,5,52\n',
};

const json = (schema: z.ZodType, description: string) => ({ description, content: { 'application/json': { schema } } });
const errors = {
  400: json(ErrorSchema, 'A parameter is not valid; the message and details name it'),
  401: json(ErrorSchema, 'API_KEY is set and the request has no or a wrong Authorization: Bearer key'),
};

function listRoute(table: TableName) {
  const def = TABLES[table];
  const hires = table === 'hired_employees';
  const example = EXAMPLES[table];
  const PageSchema = z
    .object({
      rows: z.array(rowSchemas[table]),
      next: z.string().nullable().openapi({ description: 'Cursor of the next page, for `?after=`; null on the last page. Opaque: pass it back as it is.' }),
    })
    .openapi(`${table}Page`, { example: { rows: example, next: String(example[example.length - 1]!.id) } });
  const filters = hires ? '`department_id`, `job_id`, `from`, `to` filter the rows. ' : '';
  return createRoute({
    method: 'get',
    path: `/${table}`,
    tags: ['tables'],
    summary: `${def.description}: a page, or all as CSV`,
    description:
      `Rows in id order, one keyset page at a time: follow \`next\` (or the Link header) until it is null. ${filters}` +
      'With `?format=csv` or `Accept: text/csv`, the whole selection streams as CSV from PostgreSQL COPY (no limit; `after` still applies). Needs the API key when API_KEY is set.',
    security: [{ bearer: [] }],
    request: { query: hires ? HireQuery : PageQuery },
    responses: {
      200: {
        description: 'A page of rows (JSON), or the whole selection (CSV)',
        headers: {
          Link: {
            description: 'The next page, as an absolute path keeping the filters; absent on the last page',
            schema: { type: 'string' as const, example: `</${table}?${hires ? 'department_id=2&' : ''}limit=2&after=${example[1]!.id}>; rel="next"` },
          },
        },
        content: {
          'application/json': { schema: PageSchema },
          'text/csv': { schema: z.string().openapi({ example: CSV_EXAMPLE[table] }) },
        },
      },
      ...errors,
    },
  });
}

function rowRoute(table: TableName) {
  return createRoute({
    method: 'get',
    path: `/${table}/{id}`,
    tags: ['tables'],
    summary: `One row of ${table} by id`,
    security: [{ bearer: [] }],
    request: { params: IdParams },
    responses: {
      200: { description: 'The row', content: { 'application/json': { schema: rowSchemas[table], example: EXAMPLES[table][0] } } },
      ...errors,
      404: json(ErrorSchema, 'No row with that id'),
    },
  });
}

/** `?after=…` for the next page, keeping the filters and limit; `:` left readable, `+` encoded. */
function nextLink(path: string, q: HireQueryOut, next: string): string {
  const parts: [string, string | number | undefined][] = [
    ['department_id', q.department_id],
    ['job_id', q.job_id],
    ['from', q.from],
    ['to', q.to],
    ['limit', q.limit],
    ['after', next],
  ];
  const query = parts
    .filter((p): p is [string, string | number] => p[1] !== undefined)
    .map(([k, v]) => `${k}=${encodeURIComponent(String(v)).replaceAll('%3A', ':')}`)
    .join('&');
  return `<${path}?${query}>; rel="next"`;
}

const CSV_HEADERS = (table: TableName) => ({
  'content-type': 'text/csv; charset=utf-8',
  'content-disposition': `attachment; filename="${table}.csv"`,
});

export function registerTables(app: OpenAPIHono, { pool }: Services): void {
  for (const table of TABLE_NAMES) {
    const def = TABLES[table];

    app.openapi(listRoute(table), async (c) => {
      // departments and jobs take no filters: their query is a subset of this one.
      const q: HireQueryOut = c.req.valid('query');
      const sel: Selection = {
        after: q.after,
        filter: { departmentId: q.department_id, jobId: q.job_id, from: q.from, to: q.to },
      };
      if (wantsCsv(q.format, c.req.header('accept'))) {
        // HEAD answers the headers only; starting a COPY whose body nobody reads would hold a connection.
        if (c.req.method === 'HEAD') return c.body(null, 200, CSV_HEADERS(table));
        return c.body(await exportCsv(pool, def, sel), 200, CSV_HEADERS(table));
      }
      const page = await readPage(pool, def, sel, q.limit);
      if (page.next !== null) c.header('Link', nextLink(c.req.path, q, page.next));
      return c.json(page, 200);
    });

    app.openapi(rowRoute(table), async (c) => {
      const { id } = c.req.valid('param');
      const row = await readRow(pool, def, id);
      if (!row) throw new NotFoundError(`no ${table} row with id ${id}`, { table, id });
      return c.json(row, 200);
    });
  }
}
