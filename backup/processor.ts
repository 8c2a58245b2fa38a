import { createBackup } from './create.js';
import {
  BACKUP_JOB,
  BACKUP_JOB_OPTS,
  RESTORE_JOB,
  SCHEDULER_ID,
  type BackupJobData,
  type RestoreJobData,
} from './jobs.js';
import { unrecoverable } from '../jobs/index.js';
import { restoreTable } from './restore.js';
import type { Services } from '../jobs/index.js';
import { AppError } from '../core/errors.js';
import { QUEUE_NAMES } from '../jobs/index.js';
import { TABLE_NAMES } from '../core/tables.js';

/**
 * The `backups` queue: backup sets and table restores, one at a time per process so a restore
 * never races a backup of the same tables. With BACKUP_CRON set, a job scheduler adds a backup
 * of every table on that pattern (UTC); without it, any schedule left from before is removed.
 */
export async function startBackupWorker(services: Services): Promise<() => Promise<void>> {
  const { config, log, queues } = services;

  const stop = services.queues.process('backups',
    async (job) => {
      const jobLog = log.child({ queue: QUEUE_NAMES.backups, job: job.id, name: job.name });
      try {
        if (job.name === BACKUP_JOB) {
          const data = job.data as BackupJobData;
          return await createBackup(services, { tables: data.tables, reason: data.reason });
        }
        if (job.name === RESTORE_JOB) return await restoreTable(services, job.data as RestoreJobData);
        throw new AppError(400, 'unknown_job', `the backups queue has no job kind "${job.name}"`);
      } catch (err) {
        if (err instanceof AppError && !err.retryable) {
          jobLog.warn({ status: err.status, code: err.code }, err.message);
          throw unrecoverable(err);
        }
        jobLog.error({ err, attempt: job.attemptsMade + 1 }, 'backup job failed; it will be retried if attempts remain');
        throw err;
      }
    },
    { concurrency: 1 },
  );

  if (config.BACKUP_CRON) {
    await queues.backups.upsertJobScheduler(
      SCHEDULER_ID,
      { pattern: config.BACKUP_CRON, tz: 'UTC' },
      { name: BACKUP_JOB, data: { tables: [...TABLE_NAMES], reason: 'schedule' } satisfies BackupJobData, opts: BACKUP_JOB_OPTS },
    );
    log.info({ cron: config.BACKUP_CRON, keep: config.BACKUP_KEEP }, 'scheduled backups on');
  } else {
    await queues.backups.removeJobScheduler(SCHEDULER_ID);
  }

  return stop;
}
