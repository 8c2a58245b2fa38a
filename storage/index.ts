import type { Config } from '../core/config.js';
import { LocalStorage } from './local.js';
import type { S3Tuning } from './s3.js';
import { createUrlSigner, signingSecret } from './signed-url.js';
import type { Storage } from './storage.js';

/**
 * Files, wherever they live: the folder DATA_DIR (STORAGE_URL unset) or an S3-compatible bucket
 * (`STORAGE_URL=s3://bucket/prefix`). Plumbing like pg/: imports core/ only. The AWS SDK is
 * loaded only for a bucket: it adds a quarter of a second or more to every start otherwise.
 */
export async function openStorage(config: Config, tuning?: S3Tuning): Promise<Storage> {
  if (config.storage.kind === 's3') {
    const { S3Storage } = await import('./s3.js');
    return new S3Storage(config.storage, tuning);
  }
  const { secret, source } = signingSecret({ uploadSigningKey: config.UPLOAD_SIGNING_KEY, apiKey: config.API_KEY });
  return new LocalStorage(config.storage.root, createUrlSigner(secret, source));
}

const opened = new WeakMap<Config, Promise<Storage>>();

/**
 * The process's storage for `config`, opened on first use and shared by every feature that keeps
 * files (backups, the warehouse): one S3 client (one connection pool) per process, not one per
 * call. Keyed by the config object, so each test suite (its own config) gets its own.
 */
export function storageFor(config: Config): Promise<Storage> {
  let s = opened.get(config);
  if (!s) {
    s = openStorage(config);
    opened.set(config, s);
    s.catch(() => opened.delete(config));
  }
  return s;
}

/** Closes and forgets the storage `storageFor` opened for `config` (tests, process shutdown). */
export async function closeStorageFor(config: Config): Promise<void> {
  const s = opened.get(config);
  if (!s) return;
  opened.delete(config);
  await (await s.catch(() => undefined))?.close();
}

/**
 * The whole of one bucket (no prefix), reached with the settings of the configured bucket: for
 * loads of a named object (`s3://bucket/key`). Only with STORAGE_URL=s3://…; the caller closes it.
 */
export async function openBucket(config: Config, bucket: string, tuning?: S3Tuning): Promise<Storage> {
  if (config.storage.kind !== 's3') throw new TypeError('openBucket needs STORAGE_URL=s3://…');
  const { S3Storage } = await import('./s3.js');
  return new S3Storage({ ...config.storage, bucket, prefix: '' }, tuning);
}

export type { Body, ByteRange, ObjectInfo, PresignedPut, PresignOptions, PutResult, Storage } from './storage.js';
export { MAX_PRESIGN_SECONDS } from './storage.js';
export type { S3Tuning } from './s3.js';
export { LocalStorage } from './local.js';
export { checkKey, checkPrefix } from './keys.js';
export { createUrlSigner, signingSecret, type SecretSource, type SignedParams, type UrlSigner } from './signed-url.js';
export {
  InvalidStorageKeyError,
  PresignedUrlError,
  StorageAccessDeniedError,
  StorageError,
  StorageNotFoundError,
  StorageUnavailableError,
} from './errors.js';
