import type { TableName } from '../core/tables.js';
import type { RestoreMode } from './restore.js';

/**
 * The jobs of the `backups` queue, shared by the API (which adds them and may wait) and the
 * worker (which runs them). A job that fails on bad input fails for good, and its failure
 * carries the AppError's status and code, so a waiting request answers 409/422/404 as if it had
 * done the work itself, not 500.
 */
export const BACKUP_JOB = 'backup';
export const RESTORE_JOB = 'restore';
export const SCHEDULER_ID = 'scheduled-backup';

export interface BackupJobData {
  tables: TableName[];
  reason: string;
}

export interface RestoreJobData {
  table: TableName;
  backup?: string;
  mode: RestoreMode;
}

export const BACKUP_JOB_OPTS = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 2_000 },
  removeOnComplete: 200,
  removeOnFail: 200,
} as const;

export const RESTORE_JOB_OPTS = {
  attempts: 2,
  backoff: { type: 'fixed', delay: 1_000 },
  removeOnComplete: 200,
  removeOnFail: 200,
} as const;
