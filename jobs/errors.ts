import { UnrecoverableError } from 'bullmq';
import { AppError } from '../core/errors.js';

/**
 * How an AppError crosses a job boundary: a processor throws it as not retryable, and a producer
 * waiting for the job gets the same status, code and message back (404/409/422, not 500).
 */
const MARK = 'app-error:';

/** What a processor throws for an AppError: not retried, and readable by `errorFromFailure`. */
export function unrecoverable(err: AppError): UnrecoverableError {
  return new UnrecoverableError(
    MARK + JSON.stringify({ status: err.status, code: err.code, message: err.message, details: err.details, retryAfter: err.retryAfter }),
  );
}

/** The AppError behind a job's failed reason, or undefined when it was something else. */
export function errorFromFailure(reason: string | undefined): AppError | undefined {
  if (!reason?.startsWith(MARK)) return undefined;
  try {
    const e = JSON.parse(reason.slice(MARK.length)) as { status: number; code: string; message: string; details?: unknown; retryAfter?: number };
    const err = new AppError(e.status, e.code, e.message, e.details);
    if (typeof e.retryAfter === 'number') err.retryAfter = e.retryAfter;
    return err;
  } catch {
    return undefined;
  }
}
