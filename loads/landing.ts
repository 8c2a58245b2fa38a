import { createWriteStream } from 'node:fs';
import { mkdir, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { BadRequestError, PayloadTooLargeError } from '../core/errors.js';

/**
 * The landing folder: where uploaded CSV files are written and where `{table, path}` loads read.
 * Nothing outside it is ever opened for a load.
 */

/** The absolute, symlink-free path of a regular file under `landing`; 400 for anything else. */
export async function resolveLandingFile(landing: string, given: string): Promise<{ file: string; bytes: number }> {
  if (given.trim() === '' || given.includes('\0')) throw new BadRequestError('path must name a file under the landing folder');
  const root = await realpath(landing);
  const outside = () =>
    new BadRequestError(`path "${given}" is outside the landing folder; put the file under ${landing}`, { path: given });
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

/** Bytes counted so far for one request (several files of a multipart body share it). */
export interface ByteCount {
  bytes: number;
}

/** Counts bytes through a stream into a shared count and fails it with 413 past the limit. */
export class ByteLimit extends Transform {
  bytes = 0;
  constructor(private readonly limit: number, private readonly shared: ByteCount) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    this.shared.bytes += chunk.length;
    if (this.shared.bytes > this.limit) done(tooLarge(this.limit));
    else done(null, chunk);
  }
}

/** Streams `source` into `file` (a new file under landing), never holding it in memory; returns its size. */
export async function saveUpload(file: string, source: Readable, limit: number, shared: ByteCount = { bytes: 0 }): Promise<number> {
  await mkdir(path.dirname(file), { recursive: true });
  const counter = new ByteLimit(limit, shared);
  try {
    await pipeline(source, counter, createWriteStream(file, { flags: 'wx' }));
  } catch (err) {
    await rm(file, { force: true });
    throw err;
  }
  return counter.bytes;
}

export function uploadPath(landing: string, loadId: string, table: string): string {
  const day = new Date().toISOString().slice(0, 10);
  return path.join(landing, 'uploads', day, `${loadId}.${table}.csv`);
}
