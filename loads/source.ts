import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Config } from '../core/config.js';
import { BadRequestError, NotFoundError, UnprocessableError } from '../core/errors.js';
import { closeStorageFor, InvalidStorageKeyError, openBucket, StorageNotFoundError, storageFor, type Storage } from '../storage/index.js';

/**
 * Where a load's file lives, as the `file` column of `loads` says:
 * - a storage key (`landing/uploads/2026-12-02/<id>.jobs.csv`): an object of the configured
 *   storage (the folder DATA_DIR, or the bucket of STORAGE_URL under its prefix);
 * - `s3://bucket/key`: a named object (POST /loads {"url"}), read with the bucket's credentials;
 * - an absolute path: a load recorded before loads went through the storage (read from disk).
 */
export type FileRef =
  | { kind: 'key'; key: string }
  | { kind: 'url'; bucket: string; key: string }
  | { kind: 'path'; path: string };

export function fileRef(file: string): FileRef {
  if (file.startsWith('s3://')) {
    const rest = file.slice('s3://'.length);
    const slash = rest.indexOf('/');
    return { kind: 'url', bucket: rest.slice(0, slash), key: rest.slice(slash + 1) };
  }
  if (path.isAbsolute(file)) return { kind: 'path', path: file };
  return { kind: 'key', key: file };
}

/** Parses `s3://bucket/key` as given by a user; 400 naming what is wrong. */
export function parseObjectUrl(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.exec(url);
  if (!m) throw new BadRequestError('url must look like s3://bucket/key', { url });
  return { bucket: m[1]!, key: m[2]! };
}

/**
 * The object a `{table, url}` load names, checked up front: `s3://bucket/key` in the bucket of
 * STORAGE_URL (any key the credentials can read, inside the prefix or not) or in a bucket listed
 * in LOAD_URL_BUCKETS. 400 for a bad or refused url, 404 when there is no such object.
 */
export async function namedObject(config: Config, url: string): Promise<{ file: string; bytes: number }> {
  if (config.storage.kind !== 's3') {
    throw new BadRequestError('loads from s3:// URLs need the bucket storage (STORAGE_URL=s3://…); put the file under DATA_DIR/landing and give path instead', { url });
  }
  const { bucket, key } = parseObjectUrl(url);
  if (bucket !== config.storage.bucket && !config.LOAD_URL_BUCKETS.includes(bucket)) {
    throw new BadRequestError(`bucket "${bucket}" is not one this service loads from: the bucket of STORAGE_URL, or one listed in LOAD_URL_BUCKETS`, { url });
  }
  let storage: Storage;
  try {
    storage = await bucketOf(config, bucket);
    const info = await storage.stat(key);
    return { file: `s3://${bucket}/${key}`, bytes: info.size };
  } catch (err) {
    if (err instanceof StorageNotFoundError) throw new NotFoundError(`no object ${url}`, { url });
    if (err instanceof InvalidStorageKeyError) throw new BadRequestError(`url ${url}: ${err.message}`, { url });
    throw err;
  }
}

/** The process's storage (storage/index.ts `storageFor`: one per configuration, shared with backups and the warehouse). */
export const storageOf = (config: Config): Promise<Storage> => storageFor(config);

/** Buckets named by `s3://` loads, opened once per configuration; a bucket's client is made on first use. */
const buckets = new WeakMap<Config, Map<string, Promise<Storage>>>();

/** The whole of a named bucket (for `s3://` loads). */
export function bucketOf(config: Config, bucket: string): Promise<Storage> {
  let map = buckets.get(config);
  if (!map) buckets.set(config, (map = new Map()));
  let s = map.get(bucket);
  if (!s) {
    s = openBucket(config, bucket);
    map.set(bucket, s);
  }
  return s;
}

/** Closes the process's storage and the buckets bucketOf opened for `config` (a process or a test suite ending). */
export async function closeStorage(config: Config): Promise<void> {
  const named = [...(buckets.get(config)?.values() ?? [])];
  buckets.delete(config);
  await Promise.all([closeStorageFor(config), ...named.map((s) => s.then((x) => x.close()).catch(() => {}))]);
}

/**
 * Bytes of one file, read front to back from an offset and, for reference rejects, by range.
 * Never copies the file anywhere: a storage object is streamed with a ranged GET.
 */
export interface ByteSource {
  /** The bytes from `start` to the end, as a stream. */
  stream(start: number): Promise<Readable>;
  /** Up to `length` bytes from `start` (fewer at the end of the file). */
  read(start: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export function objectSource(storage: Storage, key: string): ByteSource {
  return {
    stream: (start) => storage.get(key, { start }),
    async read(start, length) {
      if (length <= 0) return Buffer.alloc(0);
      const parts: Buffer[] = [];
      for await (const chunk of await storage.get(key, { start, end: start + length - 1 })) parts.push(chunk as Buffer);
      return Buffer.concat(parts).subarray(0, length);
    },
    close: async () => {},
  };
}

/** A file on this machine's disk (loads recorded before the storage, the reader's own tests). */
export async function diskSource(file: string): Promise<ByteSource> {
  const fh = await open(file, 'r');
  return {
    stream: async (start) => createReadStream(file, { start, highWaterMark: 64 * 1024 }),
    async read(start, length) {
      const buf = Buffer.alloc(Math.max(0, length));
      const { bytesRead } = await fh.read(buf, 0, buf.length, start);
      return buf.subarray(0, bytesRead);
    },
    close: () => fh.close(),
  };
}

const GONE =
  'the file of this load no longer exists: an upload is removed UPLOAD_RETENTION_DAYS after its load finished, and a landing file may have been moved; send the file again';

/**
 * Opens the file of a load for reading; a file that is not there is a failed load with a reason
 * (422: retrying will not bring it back).
 */
export async function openLoadFile(config: Config, file: string): Promise<ByteSource> {
  const ref = fileRef(file);
  try {
    if (ref.kind === 'path') return await diskSource(ref.path);
    const storage = ref.kind === 'url' ? await bucketOf(config, ref.bucket) : await storageOf(config);
    // Proves the object is there (and readable) before the load starts.
    await storage.stat(ref.key);
    return objectSource(storage, ref.key);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (err instanceof StorageNotFoundError || code === 'ENOENT') {
      throw new UnprocessableError(
        ref.kind === 'url' ? `the object ${file} does not exist (deleted or moved after the load was queued?); load it again once it is there` : GONE,
      );
    }
    throw err;
  }
}

/**
 * The file as answers show it: a key of the local storage as it is (relative to DATA_DIR), a key
 * of the bucket as `s3://bucket/prefix/key`, a named object as given, an old absolute path
 * relative to DATA_DIR. Never a host, never a key of the credentials.
 */
export function showFile(file: string, config: Pick<Config, 'DATA_DIR' | 'storage'>): string {
  const ref = fileRef(file);
  if (ref.kind === 'url') return file;
  if (ref.kind === 'key') {
    const s = config.storage;
    return s.kind === 's3' ? `s3://${s.bucket}/${s.prefix ? `${s.prefix}/` : ''}${ref.key}` : ref.key;
  }
  const rel = path.relative(config.DATA_DIR, ref.path);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return path.basename(ref.path);
  return rel.split(path.sep).join('/');
}
