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

export const TableParam = z.enum(TABLE_NAMES).openapi({ param: { name: 'table', in: 'path' } });

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
