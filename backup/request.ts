import { AppError, NotFoundError, TooManyRequestsError } from '../core/errors.js';
import type { TableName } from '../core/tables.js';
import { errorFromFailure, waitForJob, type JobOptions, type Services } from '../jobs/index.js';
import { BACKUP_JOB, BACKUP_JOB_OPTS, RESTORE_JOB, RESTORE_JOB_OPTS, type BackupJobData, type RestoreJobData } from './jobs.js';
import type { RestoreResult } from './restore.js';
import { isBackupId, type BackupEntry } from './sets.js';

export type Outcome<T> = { done: true; value: T } | { done: false; jobId: string; status: 'queued' | 'running' };

/**
 * Adds a job to the backups queue and, when asked, waits for it. A job that failed on bad input
 * comes back as the AppError it threw in the worker (404/409/422); anything else is a 500 that
 * names the job, whose failure is in the worker's log.
 */
async function runBackupJob<T>(services: Services, name: string, data: object, opts: JobOptions, waitFor: boolean): Promise<Outcome<T>> {
  const { queues } = services;
  await refuseWhenFull(services);
  const jobId = (await queues.backups.add(name, data, opts)).id!;
  if (!waitFor) return { done: false, jobId, status: 'queued' };
  const outcome = await waitForJob(queues.backups, jobId, services.config.BACKUP_WAIT_MS);
  if (outcome.state === 'completed') return { done: true, value: outcome.result as T };
  if (outcome.state !== 'failed') return { done: false, jobId, status: outcome.state === 'active' ? 'running' : 'queued' };
  const appError = errorFromFailure(outcome.error);
  if (appError) throw appError;
  services.log.error({ job: jobId, name, reason: outcome.error }, 'backup job failed');
  throw new AppError(500, 'job_failed', `${name} job ${jobId} failed; the worker log has the details`, { jobId });
}

/**
 * Backups and restores queue up (the worker runs one at a time), but only so far: past
 * BACKUP_QUEUE_MAX jobs waiting or running, over every process, a request is refused with 429.
 * The count and the add are not atomic, so two processes may pass it together; a soft bound.
 */
async function refuseWhenFull({ config, queues }: Services): Promise<void> {
  const counts = await queues.backups.getJobCounts('waiting', 'active', 'prioritized', 'waiting-children');
  const queued = Object.values(counts).reduce((a, b) => a + b, 0);
  if (queued >= config.BACKUP_QUEUE_MAX) {
    throw new TooManyRequestsError(
      `${queued} backups and restores are already waiting or running (BACKUP_QUEUE_MAX ${config.BACKUP_QUEUE_MAX}); try again in 30 s`,
      30,
      { queued, limit: config.BACKUP_QUEUE_MAX },
    );
  }
}

/** Queues a backup set of `tables` (run by the worker); with `wait`, answers with its files once written. */
export function requestBackup(services: Services, tables: readonly TableName[], wait: boolean): Promise<Outcome<BackupEntry[]>> {
  const data: BackupJobData = { tables: [...new Set(tables)], reason: 'api' };
  return runBackupJob<BackupEntry[]>(services, BACKUP_JOB, data, BACKUP_JOB_OPTS, wait);
}

/** Queues a restore and waits for it (up to BACKUP_WAIT_MS): its result, or 404/409/422 as it failed. */
export function requestRestore(services: Services, data: RestoreJobData): Promise<Outcome<RestoreResult>> {
  if (data.backup !== undefined && !isBackupId(data.backup)) {
    throw new NotFoundError(`unknown backup "${data.backup}"`, { backup: data.backup });
  }
  return runBackupJob<RestoreResult>(services, RESTORE_JOB, data, RESTORE_JOB_OPTS, true);
}
