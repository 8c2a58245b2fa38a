import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { AppError, isUnreachable } from '../core/errors.js';
import type { Logger } from '../core/log.js';

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

export function errorBody(code: string, message: string, details?: unknown): ErrorBody {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}

const CODES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
};

/** The one place errors become responses. Nothing internal reaches the client. */
export function handleError(err: Error, c: Context, log: Logger): Response {
  const requestId = c.get('requestId') as string | undefined;
  if (err instanceof AppError) {
    if (err.retryAfter !== undefined) c.header('Retry-After', String(err.retryAfter));
    if (err.status >= 500) log.error({ err, requestId }, err.message);
    return c.json(errorBody(err.code, err.message, err.details), err.status as ContentfulStatusCode);
  }
  if (err instanceof HTTPException) {
    const status = err.status;
    if (status < 500) return c.json(errorBody(CODES[status] ?? 'bad_request', err.message || 'bad request'), status);
  }
  if (isUnreachable(err)) {
    // PostgreSQL (or another server) went away under the request: the client may try again.
    log.error({ err, requestId }, 'a server the request needs is unreachable');
    return c.json(errorBody('unavailable', 'the database or the queue is unreachable; try again when it is back (GET /health says which)'), 503);
  }
  log.error({ err, requestId }, 'unhandled error');
  return c.json(
    errorBody('internal', `internal error; the server log has the details under request id ${requestId ?? '?'}`),
    500,
  );
}
