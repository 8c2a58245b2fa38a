import { AppError } from '../core/errors.js';
import { StorageAccessDeniedError, StorageError, StorageNotFoundError, StorageUnavailableError } from './errors.js';

const DENIED: Record<string, string> = {
  AccessDenied: 'no permission for this bucket or key',
  Forbidden: 'no permission for this bucket or key',
  InvalidAccessKeyId: 'the access key id is unknown',
  SignatureDoesNotMatch: 'the secret access key does not match',
  ExpiredToken: 'the session token has expired',
  InvalidToken: 'the session token is invalid',
  TokenRefreshRequired: 'the session token has expired',
  AccountProblem: 'the account has a problem',
};
const UNAVAILABLE = new Set(['SlowDown', 'ServiceUnavailable', 'InternalError', 'RequestTimeout', 'TimeoutError', 'RequestTimeTooSkewed']);
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED']);

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/**
 * An AWS SDK (or network) error in storage terms. The SDK's messages can carry the endpoint's
 * host name, so only the error's name and HTTP status reach the message; the original stays on
 * `cause` for the log. Errors that are not the store's (the body stream failing) pass unchanged.
 */
export function s3Error(err: unknown, key: string): unknown {
  if (err instanceof AppError || typeof err !== 'object' || err === null) return err;
  const e = err as SdkError;
  const name = e.name ?? '';
  const status = e.$metadata?.httpStatusCode;
  const cause = { cause: err };
  if (name === 'NoSuchBucket') return new StorageUnavailableError('the bucket does not exist', cause);
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return new StorageNotFoundError(key, cause);
  if (DENIED[name]) return new StorageAccessDeniedError(DENIED[name], cause);
  if (status === 401 || status === 403) return new StorageAccessDeniedError(`HTTP ${status} ${name}`.trim(), cause);
  if (name === 'CredentialsProviderError') {
    return new StorageAccessDeniedError('no credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a role)', cause);
  }
  if (/region is missing/i.test(e.message ?? '')) return new StorageUnavailableError('no region: set AWS_REGION', cause);
  const netCode = e.code ?? (err as { cause?: SdkError }).cause?.code;
  if (netCode && NETWORK.has(netCode)) return new StorageUnavailableError(`cannot reach the store (${netCode})`, cause);
  if (UNAVAILABLE.has(name) || (status !== undefined && status >= 500)) {
    return new StorageUnavailableError(status ? `${name || 'error'} (HTTP ${status})` : name, cause);
  }
  // Any other answer of the store (or an SDK error without one): name it, keep the rest out.
  if (status !== undefined || e.$metadata) return new StorageError(`${name || 'error'}${status ? ` (HTTP ${status})` : ''}`, cause);
  return err;
}
