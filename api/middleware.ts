import { timingSafeEqual } from 'node:crypto';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { ForbiddenError, PayloadTooLargeError, UnauthorizedError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { isJson, mediaType } from './body.js';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** The local storage's presigned upload URL: authorized by its signature, which the route checks, as S3 does. */
const SIGNED_PUT = /^\/uploads\/[^/]+$/;

/**
 * The GET routes that need the API key: those whose declaration carries `security` (row-level
 * data, heavy work). Read from the OpenAPI registry once every route is registered, so the
 * document and the check cannot disagree.
 */
export class KeyedRoutes {
  private patterns: RegExp[] = [];

  addFrom(app: OpenAPIHono): void {
    for (const d of app.openAPIRegistry.definitions) {
      if (d.type !== 'route' || d.route.method !== 'get' || !d.route.security?.length) continue;
      const source = d.route.path
        .split(/\{[^}]+\}/)
        .map((part) => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))
        .join('[^/]+');
      this.patterns.push(new RegExp(`^${source}$`));
    }
  }

  has(path: string): boolean {
    return this.patterns.some((p) => p.test(path));
  }
}

/**
 * With an API key configured, every non-GET route needs `Authorization: Bearer <key>`, and so do
 * GET and HEAD on the routes `keyed` names. Without a key everything is open (and the service
 * listens on 127.0.0.1 unless HOST says otherwise: core/config.ts).
 */
export function requireApiKey(key: string | undefined, keyed: KeyedRoutes): MiddlewareHandler {
  const expected = key === undefined ? undefined : Buffer.from(key);
  return async (c, next) => {
    if (expected === undefined || c.req.method === 'OPTIONS') return next();
    if (SAFE.has(c.req.method) && !keyed.has(c.req.path)) return next();
    if (c.req.method === 'PUT' && SIGNED_PUT.test(c.req.path)) return next();
    const m = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '');
    const given = m ? Buffer.from(m[1]!.trim()) : undefined;
    if (!given || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new UnauthorizedError();
    }
    return next();
  };
}

/**
 * Refuses a state-changing request that a page of another site made a browser send (CSRF), as
 * hono/csrf does, but for every content type and for body-less requests too: hono/csrf checks
 * only form-like bodies, while a cross-site `fetch` can POST JSON-less restores and multipart
 * loads as well. A request passes when the browser says it came from this origin
 * (`Sec-Fetch-Site: same-origin`), when its `Origin` is this host or one of `trusted`, or when it
 * carries neither header (curl, the CLI, scripts: not a browser, so not forgeable by a page).
 */
export function refuseCrossSite(trusted: readonly string[]): MiddlewareHandler {
  return async (c, next) => {
    if (SAFE.has(c.req.method)) return next();
    const site = c.req.header('sec-fetch-site');
    const origin = c.req.header('origin');
    if (site === 'same-origin') return next();
    if (origin !== undefined && (trusted.includes(origin) || isOwnHost(origin, c))) return next();
    if (origin === undefined && site === undefined) return next();
    throw new ForbiddenError(
      `refused a ${c.req.method} sent by a page of another site (${origin !== undefined ? `Origin ${origin}` : `Sec-Fetch-Site ${site}`}): ` +
        "only this service's own pages, TRUSTED_ORIGINS, and clients that are not browsers may change data",
      { origin: origin ?? null, secFetchSite: site ?? null },
    );
  };
}

function isOwnHost(origin: string, c: Context): boolean {
  try {
    return new URL(origin).host === (c.req.header('host') ?? new URL(c.req.url).host);
  } catch {
    return false; // "null" (sandboxed frames, file: pages) or garbage
  }
}

/** Largest JSON body of a control request (a load's {table, path}, a backup's table list, an upload's size). */
export const JSON_BODY_MAX_BYTES = 64 * 1024;

/**
 * Caps every JSON request body at `limit` bytes (413 past it) before a validator reads it whole:
 * a declared Content-Length is checked up front, a chunked body is counted as it arrives and never
 * held past the limit. `POST /ingest` and the upload `PUT` are left alone: they stream their own
 * bodies under INGEST_MAX_BYTES and LOAD_MAX_BYTES.
 */
export function capJsonBodies(limit: number): MiddlewareHandler {
  const cap = bodyLimit({
    maxSize: limit,
    onError: () => {
      throw new PayloadTooLargeError(`a JSON request body is at most ${limit} bytes`, { limitBytes: limit });
    },
  });
  return async (c, next) => {
    // The two routes that stream their own bodies under their own limits, whatever the type says.
    if (SAFE.has(c.req.method) || c.req.path.startsWith('/ingest/') || (c.req.method === 'PUT' && SIGNED_PUT.test(c.req.path))) return next();
    return isJson(mediaType(c.req.header('content-type'))) ? cap(c, next) : next();
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
