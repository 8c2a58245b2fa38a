import { realpath, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { pipeline, type Readable, Transform } from 'node:stream';
import type { Config } from '../core/config.js';
import { BadRequestError, InsufficientStorageError, PayloadTooLargeError } from '../core/errors.js';
import { InvalidStorageKeyError, StorageNotFoundError, type Storage } from '../storage/index.js';

/**
 * The landing folder: where uploaded CSV files are written and where `{table, path}` loads read.
 * Nothing outside it is ever opened for a load. It is `landing/` of the storage: the folder
 * DATA_DIR/landing, or `landing/` under the bucket's prefix.
 */

export const LANDING_PREFIX = 'landing/';
export const UPLOADS_PREFIX = 'landing/uploads/';

/**
 * The file a `{table, path}` load names, as a storage key (`landing/…`) with its size. Local: a
 * regular file under DATA_DIR/landing, symlinks resolved (one pointing out of the folder is
 * outside); bucket: the object `landing/<path>`. 400 for anything else.
 */
export async function landingObject(config: Config, storage: Storage, given: string): Promise<{ file: string; bytes: number }> {
  if (storage.kind === 'local') {
    const { file, bytes } = await resolveLandingFile(config.dirs.landing, given);
    const root = await realpath(config.storage.kind === 'local' ? config.storage.root : config.DATA_DIR);
    const rel = path.relative(root, file);
    // Under the storage root (always, unless DATA_DIR/landing is itself a link elsewhere): its key.
    if (rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel)) return { file: rel.split(path.sep).join('/'), bytes };
    return { file, bytes };
  }
  const rel = given.replace(/^\/+/, '').replace(/^landing\//, '');
  let key: string;
  try {
    key = LANDING_PREFIX + rel;
    const info = await storage.stat(key);
    return { file: key, bytes: info.size };
  } catch (err) {
    if (err instanceof InvalidStorageKeyError) throw new BadRequestError(`path "${given}" is not a plain path under landing/`, { path: given });
    if (err instanceof StorageNotFoundError) throw new BadRequestError(`no file "${given}" under landing/ in the bucket`, { path: given });
    throw err;
  }
}

/** The absolute, symlink-free path of a regular file under `landing`; 400 for anything else. */
export async function resolveLandingFile(landing: string, given: string): Promise<{ file: string; bytes: number }> {
  if (given.trim() === '' || given.includes('\0')) throw new BadRequestError('path must name a file under the landing folder');
  const root = await realpath(landing);
  // The folder is named as users know it (DATA_DIR/landing), never by its absolute path.
  const outside = () =>
    new BadRequestError(`path "${given}" is outside the landing folder; put the file under DATA_DIR/landing`, { path: given });
  const lexical = path.resolve(root, given);
  if (!isInside(root, lexical) && !isInside(landing, path.resolve(landing, given))) throw outside();
  let real: string;
  try {
    real = await realpath(path.resolve(landing, given));
  } catch {
    throw new BadRequestError(`no file "${given}" under the landing folder`, { path: given });
  }
  // A symlink inside the folder that points out of it is outside too.
  if (!isInside(root, real)) throw outside();
  const info = await stat(real);
  if (!info.isFile()) throw new BadRequestError(`"${given}" is not a regular file`, { path: given });
  return { file: real, bytes: info.size };
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

export function tooLarge(limit: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`the upload is larger than ${limit} bytes (LOAD_MAX_BYTES)`, { limitBytes: limit });
}

/** The bounds of one upload request. */
export interface UploadLimits {
  /** LOAD_MAX_BYTES: 413 past it. */
  maxBytes: number;
  /** MIN_FREE_DISK_BYTES: 507 when the disk would keep less free. */
  minFreeBytes: number;
}

/** Bytes counted so far for one request (several files of a multipart body share it). */
export interface ByteCount {
  bytes: number;
}

/** How often, in bytes written, an upload looks at the disk's free space again. */
const DISK_CHECK_BYTES = 4 * 1024 * 1024;

function diskFull(minFree: number): InsufficientStorageError {
  return new InsufficientStorageError(
    `the disk of the landing folder is nearly full: an upload may not leave less than ${minFree} bytes free (MIN_FREE_DISK_BYTES); nothing was kept, try again once space is freed`,
    { minFreeBytes: minFree },
  );
}

/** 507 when the disk holding `dir` has less than `minFree` + `more` bytes available. */
export async function checkFreeDisk(dir: string, minFree: number, more = 0): Promise<void> {
  if (minFree <= 0) return;
  const fs = await statfs(await existing(dir));
  if (fs.bavail * fs.bsize < minFree + more) throw diskFull(minFree);
}

/** `dir`, or its nearest existing parent (the landing folder is made on the first upload). */
async function existing(dir: string): Promise<string> {
  for (let d = dir; ; d = path.dirname(d)) {
    const found = await stat(d).then(() => true, () => false);
    if (found || path.dirname(d) === d) return d;
  }
}

/**
 * Counts bytes through a stream into a shared count: 413 past the limit, 507 when the disk gets
 * nearly full on the way (checked every few MiB).
 */
export class ByteLimit extends Transform {
  bytes = 0;
  private unchecked = 0;
  /** `dir`: the folder whose disk is watched (local storage); none for a bucket. */
  constructor(private readonly limits: UploadLimits, private readonly shared: ByteCount, private readonly dir: string | undefined) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    this.shared.bytes += chunk.length;
    this.unchecked += chunk.length;
    if (this.shared.bytes > this.limits.maxBytes) return done(tooLarge(this.limits.maxBytes));
    if (this.unchecked < DISK_CHECK_BYTES || this.dir === undefined) return done(null, chunk);
    this.unchecked = 0;
    checkFreeDisk(this.dir, this.limits.minFreeBytes, chunk.length).then(() => done(null, chunk), done);
  }
}

/**
 * Streams `source` into the storage under `key`, never holding it in memory; returns its size.
 * On any failure (413, 507, a broken connection, the store refusing) nothing is kept: the local
 * backend removes its temp file, the bucket aborts its multipart upload. `diskDir`: the local
 * folder whose free space is checked on the way (none for a bucket).
 */
export async function saveUpload(
  storage: Storage,
  key: string,
  source: Readable,
  limits: UploadLimits,
  shared: ByteCount = { bytes: 0 },
  diskDir?: string,
): Promise<number> {
  if (diskDir !== undefined) await checkFreeDisk(diskDir, limits.minFreeBytes);
  const counter = new ByteLimit(limits, shared, diskDir);
  const counted = pipeline(source, counter, () => {});
  try {
    await storage.put(key, counted);
  } catch (err) {
    source.destroy();
    // The counter's own refusal (413, 507) rather than how the store reported the cut body.
    throw counted.errored ?? err;
  }
  return counter.bytes;
}

/** Where an upload is kept: `landing/uploads/<day>/<id>.<table>.csv`. */
export function uploadKey(id: string, table: string): string {
  const day = new Date().toISOString().slice(0, 10);
  return `${UPLOADS_PREFIX}${day}/${id}.${table}.csv`;
}
