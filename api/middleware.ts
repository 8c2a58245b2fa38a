import { timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { UnauthorizedError } from '../core/errors.js';
import type { Logger } from '../core/log.js';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** With an API key configured, every non-GET route needs `Authorization: Bearer <key>`. */
export function requireApiKey(key: string | undefined): MiddlewareHandler {
  const expected = key === undefined ? undefined : Buffer.from(key);
  return async (c, next) => {
    if (expected === undefined || SAFE.has(c.req.method)) return next();
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
