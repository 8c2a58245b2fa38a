import { AppError } from '../core/errors.js';

/**
 * What storage failures look like to the rest of the service, whichever backend runs. Messages
 * name the key and the kind of trouble, never a host name, a path outside the keys or a secret;
 * the driver's own error stays on `cause` for the log.
 */
export class StorageNotFoundError extends AppError {
  constructor(public readonly key: string, options?: { cause?: unknown }) {
    super(404, 'not_found', `no object "${key}" in storage`, { key });
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** The store refused the credentials or the permission: a setting to fix, not bad input. */
export class StorageAccessDeniedError extends AppError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(503, 'storage_access_denied', `storage refused access: ${reason}`, undefined, true);
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** The store could not be reached or answered with a server error; worth retrying. */
export class StorageUnavailableError extends AppError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(503, 'storage_unavailable', `storage unavailable: ${reason}`, undefined, true);
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** A key that could escape its folder or that the stores would read differently. */
export class InvalidStorageKeyError extends AppError {
  constructor(key: string, reason: string) {
    super(400, 'invalid_storage_key', `invalid storage key ${JSON.stringify(key)}: ${reason}`, { reason });
  }
}

/** A presigned URL that is past its expiry or whose signature does not match. */
export class PresignedUrlError extends AppError {
  constructor(public readonly reason: 'expired' | 'invalid') {
    super(403, reason === 'expired' ? 'url_expired' : 'bad_signature', reason === 'expired' ? 'the upload URL has expired' : 'the upload URL signature does not match');
  }
}

/** Any other refusal of the store, named by the store's error code. */
export class StorageError extends AppError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(502, 'storage_error', `storage refused the request: ${reason}`);
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}
