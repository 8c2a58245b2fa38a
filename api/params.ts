import { z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { UnknownTableError } from '../core/errors.js';
import { TABLE_NAMES } from '../core/tables.js';

/**
 * `?wait`, declared once for every route that starts a job (POST /loads, POST /backups,
 * POST /warehouse/refresh). Each route waits as long as its own setting says.
 */
export const WaitParam = z
  .enum(['true', 'false', '1', '0'])
  .optional()
  .transform((v) => v === 'true' || v === '1')
  .openapi({
    param: { name: 'wait', in: 'query' },
    description:
      "`true` or `1`: answer 200 when the job has finished, or 202 with its current state once the route's wait time (a setting, named in the route) has passed. `false`, `0` or absent: 202 at once.",
  });

/** A table named in a path or a query. A name that is not a table answers 404 (see unknownTable). */
export function tableParam(where: 'path' | 'query') {
  return z.enum(TABLE_NAMES).openapi({ param: { name: 'table', in: where }, example: 'departments' });
}

/**
 * A `table` in the path or query that failed validation names a table that does not exist: that
 * is 404 `unknown_table` (API.md), not a 400 like other bad parameters. Called by the app's
 * validation hook; undefined when the failure is about something else.
 */
export function unknownTable(target: string, issues: readonly z.core.$ZodIssue[], c: Context): UnknownTableError | undefined {
  if (target !== 'param' && target !== 'query') return undefined;
  if (!issues.some((i) => i.path.length === 1 && i.path[0] === 'table')) return undefined;
  const name = target === 'param' ? c.req.param('table') : c.req.query('table');
  return new UnknownTableError(name ?? '', TABLE_NAMES);
}
