import { timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { UnauthorizedError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { TABLE_NAMES } from '../core/tables.js';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Paths that answer row-level data: their GETs need the key too. */
const ROW_LEVEL = [new RegExp(`^/(${TABLE_NAMES.join('|')})(/|$)`)];

/**
 * With an API key configured, every non-GET route needs `Authorization: Bearer <key>`, and so
 * do GET and HEAD on the row-level paths.
 */
export function requireApiKey(key: string | undefined): MiddlewareHandler {
  const expected = key === undefined ? undefined : Buffer.from(key);
  return async (c, next) => {
    const open = SAFE.has(c.req.method) && (c.req.method === 'OPTIONS' || !ROW_LEVEL.some((p) => p.test(c.req.path)));
    if (expected === undefined || open) return next();
    const m = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '');
    const given = m ? Buffer.from(m[1]!.trim()) : undefined;
    if (!given || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new UnauthorizedError();
    }
    return next();
  };
}

/** One JSON log line per request, carrying the request id the response also sends back. */
export function accessLog(log: Logger): MiddlewareHandler {
  return async (c, next) => {
    const started = performance.now();
    await next();
    log.info(
      {
        requestId: c.get('requestId'),
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: Math.round((performance.now() - started) * 10) / 10,
      },
      'request',
    );
  };
}
