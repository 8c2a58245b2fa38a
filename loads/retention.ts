import { rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Services } from '../jobs/index.js';
import { UPLOADS_PREFIX } from './landing.js';
import { fileRef, storageOf } from './source.js';

/**
 * Retention: what the service removes by itself so the disk and the rejects table do not grow
 * for ever. Runs as a job on the `loads` queue, added by a job scheduler on RETENTION_CRON (UTC),
 * so it runs on either runner and once per tick however many workers there are.
 *
 * - Uploads (objects under landing/uploads/ of the storage: the folder or the bucket) of loads that finished more than UPLOAD_RETENTION_DAYS
 *   ago are deleted; the load keeps its record, with `file_removed_at` set. Files a user put in
 *   the landing folder (`{table, path}` loads) are theirs and never touched. Upload files that no
 *   load row names (a request that died between writing and recording) go after the same time.
 * - Rejects older than REJECT_RETENTION_DAYS are deleted, in batches.
 * 0 days keeps either for ever.
 */
export const RETENTION_JOB = 'retention';
export const RETENTION_SCHEDULER_ID = 'retention';

const DAY_MS = 24 * 3600_000;
const BATCH = 5_000;
const DAY_FOLDER = /^\d{4}-\d{2}-\d{2}$/;
const UPLOAD_FILE = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.[a-z_]+\.csv$/;

export interface RetentionResult {
  uploadsRemoved: number;
  orphansRemoved: number;
  rejectsRemoved: number;
}

/** Adds (or replaces) the schedule; one per queue, however many workers start. */
export async function scheduleRetention({ config, queues, log }: Pick<Services, 'config' | 'queues' | 'log'>): Promise<void> {
  await queues.loads.upsertJobScheduler(
    RETENTION_SCHEDULER_ID,
    { pattern: config.RETENTION_CRON, tz: 'UTC' },
    { name: RETENTION_JOB, data: {}, opts: { attempts: 1, removeOnComplete: 10, removeOnFail: 10 } },
  );
  log.debug({ cron: config.RETENTION_CRON, uploadDays: config.UPLOAD_RETENTION_DAYS, rejectDays: config.REJECT_RETENTION_DAYS }, 'retention scheduled');
}

export async function runRetention(services: Pick<Services, 'config' | 'pool' | 'log'>, now = Date.now()): Promise<RetentionResult> {
  const { config, log } = services;
  const result: RetentionResult = { uploadsRemoved: 0, orphansRemoved: 0, rejectsRemoved: 0 };
  if (config.UPLOAD_RETENTION_DAYS > 0) {
    const cutoff = new Date(now - config.UPLOAD_RETENTION_DAYS * DAY_MS);
    result.uploadsRemoved = await removeUploads(services, cutoff);
    result.orphansRemoved = await removeOrphans(services, cutoff);
    // Records of presigned uploads whose URL expired before the cutoff: their file, if any, is an
    // upload like the others (removed above once loaded and old, or as an orphan); a load keeps its own record.
    await services.pool.query('DELETE FROM uploads WHERE expires_at < $1', [cutoff]);
  }
  if (config.REJECT_RETENTION_DAYS > 0) {
    result.rejectsRemoved = await pruneRejects(services, new Date(now - config.REJECT_RETENTION_DAYS * DAY_MS));
  }
  if (result.uploadsRemoved + result.orphansRemoved + result.rejectsRemoved > 0) log.info(result, 'retention removed old uploads and rejects');
  return result;
}

const uploadsDir = (config: Services['config']) => path.join(config.dirs.landing, 'uploads');

async function removeUploads({ config, pool }: Pick<Services, 'config' | 'pool'>, cutoff: Date): Promise<number> {
  // Keys of the storage; loads recorded before it name their upload by its absolute path.
  const legacy = uploadsDir(config) + path.sep;
  const storage = await storageOf(config);
  let removed = 0;
  for (;;) {
    const { rows } = await pool.query<{ id: string; file: string }>(
      `SELECT id, file FROM loads
        WHERE status IN ('succeeded', 'failed') AND file_removed_at IS NULL AND finished_at < $1
          AND (starts_with(file, $2) OR starts_with(file, $3))
        ORDER BY finished_at LIMIT $4`,
      [cutoff, UPLOADS_PREFIX, legacy, BATCH],
    );
    if (rows.length === 0) return removed;
    await Promise.all(
      rows.map((r) => {
        const ref = fileRef(r.file);
        return ref.kind === 'path' ? rm(ref.path, { force: true }) : storage.delete(r.file);
      }),
    );
    await pool.query('UPDATE loads SET file_removed_at = now() WHERE id = ANY($1::uuid[])', [rows.map((r) => r.id)]);
    removed += rows.length;
    if (rows.length < BATCH) return removed;
  }
}

/** Upload objects of days before the cutoff that no load names; then (local) the day folders left empty. */
async function removeOrphans({ config, pool }: Pick<Services, 'config' | 'pool'>, cutoff: Date): Promise<number> {
  const storage = await storageOf(config);
  // A whole day older than the cutoff, so a file being written right now is never a candidate.
  const lastDay = new Date(cutoff.getTime() - DAY_MS).toISOString().slice(0, 10);
  const byDay = new Map<string, { key: string; id: string | undefined }[]>();
  for await (const o of storage.list(UPLOADS_PREFIX)) {
    const [day, name, ...deeper] = o.key.slice(UPLOADS_PREFIX.length).split('/');
    if (!day || !name || deeper.length > 0 || !DAY_FOLDER.test(day) || day > lastDay) continue;
    const list = byDay.get(day) ?? [];
    list.push({ key: o.key, id: UPLOAD_FILE.exec(name)?.[1] });
    byDay.set(day, list);
  }
  let removed = 0;
  for (const [day, files] of byDay) {
    const ids = files.flatMap((x) => (x.id ? [x.id] : []));
    const { rows } = await pool.query<{ id: string }>('SELECT id FROM loads WHERE id = ANY($1::uuid[])', [ids]);
    const known = new Set(rows.map((r) => r.id));
    for (const { key, id } of files) {
      if (!id || known.has(id)) continue;
      await storage.delete(key);
      removed++;
    }
    if (storage.kind === 'local') await rmdir(path.join(uploadsDir(config), day)).catch(() => {}); // only when empty
  }
  return removed;
}

async function pruneRejects({ pool }: Pick<Services, 'pool'>, cutoff: Date): Promise<number> {
  let removed = 0;
  for (;;) {
    // Batches keep each transaction, and the locks it holds, short.
    const { rowCount } = await pool.query(
      'DELETE FROM rejects WHERE id IN (SELECT id FROM rejects WHERE created_at < $1 ORDER BY created_at LIMIT $2)',
      [cutoff, BATCH],
    );
    removed += rowCount ?? 0;
    if ((rowCount ?? 0) < BATCH) return removed;
  }
}
