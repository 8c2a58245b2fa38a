import { z } from '@hono/zod-openapi';
import { TABLE_NAMES, TABLES, type Column, type TableName } from '../core/tables.js';

/** Schemas shared by the routes and the OpenAPI document. */
export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'bad_request' }),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .openapi('Error');

/** A response (or body) of JSON in `schema`, for a route's declaration. */
export function json<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { 'application/json': { schema } } };
}

/** An error response in the one error shape. */
export function error(description: string) {
  return json(ErrorSchema, description);
}

export const FieldIssueSchema = z
  .object({
    field: z.string().nullable().openapi({ description: 'The column, or null when the row as a whole is wrong' }),
    message: z.string().openapi({ example: 'unknown department_id 200' }),
  })
  .openapi('FieldIssue');

export const IngestResultSchema = z
  .object({
    table: z.enum(TABLE_NAMES),
    received: z.number().int(),
    inserted: z.number().int(),
    updated: z.number().int(),
    unchanged: z
      .number()
      .int()
      .openapi({ description: 'Rows equal to what was stored already: nothing was written for them' }),
    rejected: z.number().int(),
    rejects: z.array(z.object({ row: z.number().int().openapi({ description: '0-based position in the batch' }), errors: z.array(FieldIssueSchema) })),
  })
  .openapi('IngestResult');

/** Row shapes for the docs, derived from the data dictionary (the rules themselves live there). */
function columnSchema(c: Column) {
  switch (c.kind) {
    case 'id':
    case 'ref':
      return z.number().int().min(1).max(2147483647).openapi({ description: c.description });
    case 'datetime':
      return z.string().openapi({ description: c.description, example: '2021-11-07T02:48:42Z' });
    case 'text':
      return z.string().min(1).openapi({ description: c.description });
  }
}

function rowSchema(table: TableName) {
  const def = TABLES[table];
  return z
    .object(Object.fromEntries(def.columns.map((c) => [c.name, columnSchema(c)])))
    .openapi(`${table}Row`, { description: def.description });
}

const perTable = Object.fromEntries(TABLE_NAMES.map((t) => [t, rowSchema(t)])) as Record<
  TableName,
  ReturnType<typeof rowSchema>
>;

export const rowSchemas = {
  ...perTable,
  any: z.union([perTable.departments, perTable.jobs, perTable.hired_employees]),
};

/**
 * The JSON body of POST /ingest/{table}, for the document only: that route reads its body by hand
 * (see api/routes/ingest.ts), so it refers to this by $ref instead of handing zod a schema.
 */
export const IngestRowsSchema = z
  .union([z.array(rowSchemas.any), z.object({ rows: z.array(rowSchemas.any) })])
  .openapi('IngestRows', { description: 'A JSON array of row objects, or {"rows": [...]}' });

/**
 * A route that needs the API key when API_KEY is set: spread into its declaration. The document
 * marks it, and api/middleware.ts holds GET routes carrying it to the key (every non-GET route
 * needs the key anyway).
 */
export const keyed: { security: { bearer: string[] }[] } = { security: [{ bearer: [] }] };

/** The answers every route that needs the key can give. */
export const keyErrors = {
  401: error('API_KEY is set and the request has no or a wrong "Authorization: Bearer <key>"'),
};

/** The answer of a route that queues a job (or waits for one) while Redis cannot be reached. */
export const queueErrors = {
  503: error('The queue (Redis) is unreachable; try again when it is back'),
};

/** The answers of every state-changing route, besides its own. */
export const writeErrors = {
  ...keyErrors,
  403: error('Sent by a page of another site (Origin or Sec-Fetch-Site): refused, see TRUSTED_ORIGINS'),
};
