import { UnrecoverableError } from 'bullmq';
import { AppError } from '../errors.js';
import type { TableName } from '../tables.js';
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

const MARK = 'app-error:';

/** What a processor throws for an AppError: not retried, and readable by `errorFromFailure`. */
export function unrecoverable(err: AppError): UnrecoverableError {
  return new UnrecoverableError(
    MARK + JSON.stringify({ status: err.status, code: err.code, message: err.message, details: err.details }),
  );
}

/** The AppError behind a job's failed reason, or undefined when it was something else. */
export function errorFromFailure(reason: string | undefined): AppError | undefined {
  if (!reason?.startsWith(MARK)) return undefined;
  try {
    const e = JSON.parse(reason.slice(MARK.length)) as { status: number; code: string; message: string; details?: unknown };
    return new AppError(e.status, e.code, e.message, e.details);
  } catch {
    return undefined;
  }
}
