import { randomUUID } from 'node:crypto';
import { ConflictError, NotFoundError } from '../core/errors.js';
import type { TableName } from '../core/tables.js';
import type { Services } from '../jobs/index.js';
import { PresignedUrlError, StorageNotFoundError } from '../storage/index.js';
import { checkFreeDisk, saveUpload, tooLarge, uploadKey, type UploadLimits } from './landing.js';
import { storageOf } from './source.js';
import { startLoads, waitForLoads } from './start.js';
import { getLoad, isLoadId, isTerminal, type LoadRow } from './store.js';
import { bodyStream } from './uploads.js';

/**
 * Presigned uploads: POST /uploads records an upload and hands out a URL to PUT the file to,
 * without the API key: the bucket's own presigned URL, or (local storage) the service's
 * `PUT /uploads/{id}?expires=&signature=`, checked by the storage's signer. POST
 * /uploads/{id}/load then makes the ordinary load of the object; the load's id is the upload's,
 * so asking twice answers the same load.
 */
export interface UploadRow {
  id: string;
  table_name: TableName;
  file: string;
  declared_bytes: number | null;
  expires_at: Date;
  created_at: Date;
  received_at: Date | null;
  received_bytes: number | null;
}

export interface NewUpload {
  uploadId: string;
  table: TableName;
  url: string;
  method: 'PUT';
  expiresAt: string;
}

export function uploadLimits(config: Services['config']): UploadLimits {
  return { maxBytes: config.LOAD_MAX_BYTES, minFreeBytes: config.MIN_FREE_DISK_BYTES };
}

/**
 * Records an upload and signs its URL. `bytes` (optional) is refused up front past LOAD_MAX_BYTES
 * (413) or, with the local storage, when the disk could not take it (507). `serviceUrl`: where
 * the service is reached (PUBLIC_URL, or the request's own origin).
 */
export async function createUpload(
  services: Services,
  table: TableName,
  bytes: number | undefined,
  serviceUrl: string,
): Promise<NewUpload> {
  const { config, pool } = services;
  const limits = uploadLimits(config);
  if (bytes !== undefined && bytes > limits.maxBytes) throw tooLarge(limits.maxBytes);
  const storage = await storageOf(config);
  if (storage.kind === 'local') await checkFreeDisk(config.dirs.landing, limits.minFreeBytes, bytes ?? 0);
  const id = randomUUID();
  const key = uploadKey(id, table);
  const signed = await storage.presignPut(key, {
    expiresInSeconds: config.UPLOAD_URL_EXPIRES_SECONDS,
    serviceUrl: `${serviceUrl.replace(/\/+$/, '')}/uploads/${id}`,
  });
  await pool.query(
    'INSERT INTO uploads (id, table_name, file, declared_bytes, expires_at) VALUES ($1, $2, $3, $4, $5)',
    [id, table, key, bytes ?? null, signed.expiresAt],
  );
  return { uploadId: id, table, url: signed.url, method: 'PUT', expiresAt: signed.expiresAt.toISOString() };
}

export async function getUpload(services: Pick<Services, 'pool'>, id: string): Promise<UploadRow | undefined> {
  if (!isLoadId(id)) return undefined;
  const { rows } = await services.pool.query<UploadRow>('SELECT * FROM uploads WHERE id = $1', [id]);
  return rows[0];
}

/**
 * The service's side of a local presigned URL: checks the signature (403 and nothing read or
 * stored when it is expired, tampered with or for another upload), then streams the body into
 * the storage with the limits of every upload (413, 507). Refused once the upload is being loaded.
 */
export async function receiveUpload(services: Services, id: string, query: URLSearchParams, req: Request): Promise<{ uploadId: string; bytes: number }> {
  const { config, pool } = services;
  const storage = await storageOf(config);
  if (!storage.signer) {
    throw new NotFoundError('uploads go straight to the bucket: PUT the file to the url POST /uploads answered');
  }
  const upload = await getUpload(services, id);
  // An unknown id gets the same answer as a wrong signature: nothing to learn by guessing.
  if (!upload) throw new PresignedUrlError('invalid');
  storage.signer.verify('PUT', upload.file, query);
  if (await getLoad(pool, id)) throw new ConflictError(`upload ${id} is already being loaded; ask for a new upload (POST /uploads) to send another file`);
  const target = { storage, diskDir: config.dirs.landing };
  const limits = uploadLimits(config);
  const source = await bodyStream(req, target, limits);
  const bytes = await saveUpload(storage, upload.file, source, limits, { bytes: 0 }, target.diskDir);
  await pool.query('UPDATE uploads SET received_at = now(), received_bytes = $2 WHERE id = $1', [id, bytes]);
  return { uploadId: id, bytes };
}

/**
 * Makes the load of an uploaded file (once; asking again answers the same load). 404 for an
 * unknown upload, 409 while nothing was uploaded, 413 past LOAD_MAX_BYTES (a bucket takes any
 * size), 409 when the size differs from the one announced.
 */
export async function loadUpload(services: Services, id: string, wait: boolean): Promise<{ load: LoadRow; finished: boolean }> {
  const { config, pool } = services;
  // The load first: retention forgets an upload's record once its URL is long expired.
  const existing = await getLoad(pool, id);
  if (existing) return answer(services, existing, wait);
  const upload = await getUpload(services, id);
  if (!upload) throw new NotFoundError(`no upload ${id}`);
  const storage = await storageOf(config);
  let size: number;
  try {
    size = (await storage.stat(upload.file)).size;
  } catch (err) {
    if (!(err instanceof StorageNotFoundError)) throw err;
    const expired = upload.expires_at.getTime() <= Date.now();
    throw new ConflictError(
      expired
        ? `nothing was uploaded for upload ${id} and its URL expired at ${upload.expires_at.toISOString()}; ask for a new one (POST /uploads)`
        : `nothing was uploaded for upload ${id} yet: PUT the file to its URL first (it works until ${upload.expires_at.toISOString()})`,
      { uploadId: id },
    );
  }
  if (size > config.LOAD_MAX_BYTES) throw tooLarge(config.LOAD_MAX_BYTES);
  if (upload.declared_bytes !== null && Number(upload.declared_bytes) !== size) {
    throw new ConflictError(
      `the uploaded file has ${size} bytes, not the ${upload.declared_bytes} announced; PUT the whole file again (while the URL works) or ask for a new upload`,
      { uploadId: id, bytes: size, declaredBytes: Number(upload.declared_bytes) },
    );
  }
  try {
    const { loads, finished } = await startLoads(services, [{ id, table: upload.table_name, file: upload.file, bytes: size }], wait);
    return { load: loads[0]!, finished };
  } catch (err) {
    // Asked twice at once: the other request made the load.
    if ((err as { code?: string }).code !== '23505') throw err;
    const made = await getLoad(pool, id);
    if (!made) throw err;
    return answer(services, made, wait);
  }
}

async function answer(services: Services, load: LoadRow, wait: boolean): Promise<{ load: LoadRow; finished: boolean }> {
  if (!wait || isTerminal(load.status)) return { load, finished: isTerminal(load.status) };
  const [now] = await waitForLoads(services, [load.id], services.config.LOAD_WAIT_MS);
  return { load: now!, finished: isTerminal(now!.status) };
}
