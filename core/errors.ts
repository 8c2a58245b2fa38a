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
