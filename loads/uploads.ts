import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import busboy from 'busboy';
import { BadRequestError } from '../core/errors.js';
import type { Config } from '../core/config.js';
import type { Storage } from '../storage/index.js';
import { storageOf } from './source.js';
import { checkFreeDisk, saveUpload, tooLarge, uploadKey, type UploadLimits } from './landing.js';
import { isTableName, TABLE_NAMES, type TableName } from '../core/tables.js';

/** A file written to the storage for a load that is about to be created; `file` is its key. */
export interface Landed {
  id: string;
  table: TableName;
  file: string;
  bytes: number;
}

/**
 * Where uploads go: the storage, and for the local backend the folder whose disk must keep
 * MIN_FREE_DISK_BYTES free (a bucket has no such check).
 */
export interface UploadTarget {
  storage: Storage;
  /** DATA_DIR/landing with the local backend; undefined for a bucket. */
  diskDir: string | undefined;
}

export async function uploadTarget(config: Config): Promise<UploadTarget> {
  const storage = await storageOf(config);
  return { storage, diskDir: storage.kind === 'local' ? config.dirs.landing : undefined };
}

/** The body as a stream, once its declared size fits the limit and the disk (413, 507 before reading). */
export async function bodyStream(req: Request, target: UploadTarget, limits: UploadLimits): Promise<Readable> {
  const declared = Number(req.headers.get('content-length') ?? NaN);
  if (declared > limits.maxBytes) throw tooLarge(limits.maxBytes);
  if (!req.body) throw new BadRequestError('the request has no body; send the CSV file');
  if (target.diskDir !== undefined) await checkFreeDisk(target.diskDir, limits.minFreeBytes, Number.isFinite(declared) ? declared : 0);
  return Readable.fromWeb(req.body as import('node:stream/web').ReadableStream<Uint8Array>);
}

/** A `text/csv` body, streamed to the storage with its size counted on the way (413 past the limit, 507 on a full disk). */
export async function landCsvBody(req: Request, target: UploadTarget, table: TableName, limits: UploadLimits): Promise<Landed> {
  const source = await bodyStream(req, target, limits);
  const id = randomUUID();
  const file = uploadKey(id, table);
  const bytes = await saveUpload(target.storage, file, source, limits, { bytes: 0 }, target.diskDir);
  return { id, table, file, bytes };
}

/**
 * A `multipart/form-data` body: each file part named after a table is streamed to its own file.
 * On any error every file already written is removed, so a refused request leaves nothing behind.
 */
export async function landMultipart(req: Request, target: UploadTarget, limits: UploadLimits): Promise<Landed[]> {
  const source = await bodyStream(req, target, limits);
  const landed: Landed[] = [];
  const writes: Promise<void>[] = [];
  const total = { bytes: 0 };
  let failure: Error | undefined;
  const fail = (err: Error) => {
    failure ??= err;
  };
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers: { 'content-type': req.headers.get('content-type') ?? '' }, limits: { files: TABLE_NAMES.length } });
  } catch (err) {
    throw new BadRequestError(`multipart body cannot be read: ${(err as Error).message}`);
  }
  parser.on('file', (name, stream) => {
    if (failure) return void stream.resume();
    if (!isTableName(name)) {
      fail(new BadRequestError(`part "${name}" does not name a table; name each file part ${TABLE_NAMES.join(', ')}`, { part: name }));
      return void stream.resume();
    }
    if (landed.some((l) => l.table === name)) {
      fail(new BadRequestError(`two parts for ${name}; send one file per table`, { part: name }));
      return void stream.resume();
    }
    const id = randomUUID();
    const entry: Landed = { id, table: name, file: uploadKey(id, name), bytes: 0 };
    landed.push(entry);
    writes.push(
      saveUpload(target.storage, entry.file, stream, limits, total, target.diskDir)
        .then((bytes) => {
          entry.bytes = bytes;
        })
        .catch((err: Error) => {
          fail(err);
          stream.resume();
        }),
    );
  });
  parser.on('filesLimit', () => fail(new BadRequestError(`at most ${TABLE_NAMES.length} files per request, one per table`)));
  try {
    await new Promise<void>((resolve, reject) => {
      parser.on('close', resolve);
      parser.on('error', (err: Error) => reject(new BadRequestError(`multipart body cannot be read: ${err.message}`)));
      source.on('error', reject);
      source.pipe(parser);
    });
    await Promise.all(writes);
    if (failure) throw failure;
    if (landed.length === 0) {
      throw new BadRequestError(`no file parts; send one part per table, named ${TABLE_NAMES.join(', ')}`);
    }
    return landed;
  } catch (err) {
    await Promise.all(writes.map((w) => w.catch(() => {})));
    await Promise.all(landed.map((l) => target.storage.delete(l.file).catch(() => {})));
    throw failure ?? err;
  }
}
