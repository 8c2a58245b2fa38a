import type { Readable } from 'node:stream';
import type { UrlSigner } from './signed-url.js';

/** What a stored object is, on every backend. */
export interface ObjectInfo {
  /** Relative to the storage root, `/` between segments. */
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date;
  /** Opaque; changes when the object does (S3: the ETag; local: from mtime and size). */
  readonly etag: string;
}

/** Bytes `start` to `end`, both inclusive as in HTTP Range and fs.createReadStream; `end` omitted: to the last byte. */
export interface ByteRange {
  readonly start: number;
  readonly end?: number;
}

/** What put streams in: a stream, any (async) iterable of byte chunks, or the bytes themselves (small objects). */
export type Body = Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array;

export interface PutResult {
  readonly key: string;
  readonly size: number;
  readonly etag: string;
}

export interface PresignOptions {
  /** How long the URL works: 1 s to 7 days (S3's limit). */
  readonly expiresInSeconds: number;
  /**
   * Local backend: the service URL that will take the PUT (phase B: `…/uploads/{id}`); the
   * signature is added to its query. The S3 backend ignores it: its URL is the bucket's.
   */
  readonly serviceUrl?: string;
  /** When the signature is made; now by default (tests sign in the past to get an expired URL). */
  readonly signedAt?: Date;
}

export interface PresignedPut {
  readonly url: string;
  readonly method: 'PUT';
  readonly expiresAt: Date;
}

/**
 * One store of objects: the local folder under DATA_DIR or an S3-compatible bucket (see
 * storage/index.ts). Every method validates its keys (InvalidStorageKeyError) and fails with
 * StorageNotFoundError, StorageAccessDeniedError or StorageUnavailableError.
 */
export interface Storage {
  readonly kind: 'local' | 's3';
  /** Where the objects live, for logs and /health: a folder or `s3://bucket/prefix`; no secret, no host. */
  readonly location: string;
  /**
   * Local backend only: checks the `?expires=&signature=` of a presigned PUT that came back to
   * the service. Undefined where PUTs go straight to the store.
   */
  readonly signer?: UrlSigner;

  /**
   * Streams `body` into `key`; memory stays bounded whatever the size. Readers never see a
   * half-written object: local writes a temp file, fsyncs and renames; S3 completes the
   * (multipart) upload or aborts it. An existing object is replaced.
   */
  put(key: string, body: Body): Promise<PutResult>;
  /** The object's bytes, or the range of them; a range starting past the end gives no bytes. */
  get(key: string, range?: ByteRange): Promise<Readable>;
  stat(key: string): Promise<ObjectInfo>;
  exists(key: string): Promise<boolean>;
  /**
   * Every object whose key starts with `prefix` ('' for all), in key order (bytewise), fetched a
   * page at a time (`pageSize` keys per S3 request, 1000 by default).
   */
  list(prefix: string, options?: { pageSize?: number }): AsyncIterable<ObjectInfo>;
  /** Renames `from` to `to`, replacing `to` (local: rename; S3: copy, then delete). */
  move(from: string, to: string): Promise<void>;
  /** Removes the object; a missing one is not an error (as on S3). */
  delete(key: string): Promise<void>;
  /** A URL a client can PUT the object's bytes to without the service's credentials. */
  presignPut(key: string, options: PresignOptions): Promise<PresignedPut>;
  /** A cheap call proving the store answers and accepts the credentials (/health). */
  check(): Promise<void>;
  /** Releases connections; idempotent. */
  close(): Promise<void>;
}

export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;
