/**
 * One error type for everything a caller can act on. The API maps it to
 * `{"error": {"code", "message", "details"}}` in one place (api/errors.ts); workers use
 * `retryable` to tell bad input (never retried) from infrastructure trouble (retried).
 */
export class AppError extends Error {
  constructor(
    public readonly status: number,
    public readonly code: string,
    message: string,
    public readonly details?: unknown,
    public readonly retryable = false,
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** Seconds after which trying again may work; the API sends it as Retry-After. */
  retryAfter?: number;
}

export class BadRequestError extends AppError {
  constructor(message: string, details?: unknown) {
    super(400, 'bad_request', message, details);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string, details?: unknown) {
    super(404, 'not_found', message, details);
  }
}

export class UnknownTableError extends AppError {
  constructor(public readonly table: string, known: readonly string[]) {
    super(404, 'unknown_table', `unknown table "${table}"; known tables: ${known.join(', ')}`, {
      table,
      known,
    });
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(message: string, details?: unknown) {
    super(413, 'payload_too_large', message, details);
  }
}

export class UnsupportedMediaTypeError extends AppError {
  constructor(got: string | undefined, accepted: readonly string[]) {
    super(
      415,
      'unsupported_media_type',
      `content type ${got ? `"${got}"` : '(none)'} is not accepted; use ${accepted.join(' or ')}`,
      { accepted },
    );
  }
}

export class UnauthorizedError extends AppError {
  constructor() {
    super(401, 'unauthorized', 'missing or wrong API key: send "Authorization: Bearer <API_KEY>"');
  }
}

export class ConflictError extends AppError {
  constructor(message: string, details?: unknown) {
    super(409, 'conflict', message, details);
  }
}

export class UnprocessableError extends AppError {
  constructor(message: string, details?: unknown) {
    super(422, 'unprocessable', message, details);
  }
}

export class UnavailableError extends AppError {
  constructor(message: string, details?: unknown) {
    super(503, 'unavailable', message, details, true);
  }
}

export class ForbiddenError extends AppError {
  constructor(message: string, details?: unknown) {
    super(403, 'forbidden', message, details);
  }
}

/** Too much of one kind of work at once: 429 with `Retry-After` (api/errors.ts sets the header). */
export class TooManyRequestsError extends AppError {
  constructor(message: string, retryAfter: number, details?: unknown) {
    super(429, 'too_many_requests', message, details, true);
    this.retryAfter = retryAfter;
  }
}

/**
 * The work needs something another piece of work holds (a restore waiting for a table's locks
 * while a load, a refresh or another restore uses it): 409 `busy` with `Retry-After`. Nothing was
 * changed; the same request later works.
 */
export class BusyError extends AppError {
  constructor(message: string, retryAfter: number, details?: unknown) {
    super(409, 'busy', message, details);
    this.retryAfter = retryAfter;
  }
}

/** The disk is (nearly) full: an upload is refused before it could fill it. */
export class InsufficientStorageError extends AppError {
  constructor(message: string, details?: unknown) {
    super(507, 'insufficient_storage', message, details, true);
  }
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);

/**
 * Whether `err` says a server could not be reached: a network error, a PostgreSQL connection
 * failure (SQLSTATE class 08) or a server shutting down or starting (57P01, 57P03).
 */
export function isUnreachable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (NETWORK_CODES.has(code) || code.startsWith('08') || code === '57P01' || code === '57P03');
}

/**
 * What a client or a stored status (a load's `error`) may say about an error: an AppError's own
 * message, or a fixed description of the kind of failure. Driver and system messages carry host
 * names, paths and SQL, so they go to the log only (the caller logs `err` beside this).
 */
export function publicReason(err: unknown): string {
  if (err instanceof AppError) return err.message;
  if (isUnreachable(err)) return 'the database or the queue is unreachable';
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (/^[0-9A-Z]{5}$/.test(code)) return `the database refused the work (SQLSTATE ${code})`;
    if (code === 'ENOSPC') return 'the disk is full';
  }
  return 'an internal error';
}
