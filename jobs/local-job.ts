import type { JobOptions, JobState, QueueJob } from './queues.js';

/** What a job asks of the queue holding it; the queue keeps its own state private. */
export interface JobHost {
  promote(job: LocalJob): void;
  moveToDelayed(job: LocalJob, timestamp: number, token: string | undefined): void;
  releaseDeduplication(job: LocalJob): boolean;
}

/**
 * A job of an in-process queue (jobs/local-queue.ts). Unlike a BullMQ `Job`, which is a snapshot
 * read from Redis, this is the queue's own record: its fields change as the job moves on. The
 * data and the return value went through JSON, as they do on their way to and from Redis, so a
 * processor sees the same values under both runners.
 */
export class LocalJob<D = unknown> implements QueueJob<D> {
  state: JobState;
  attemptsMade = 0;
  returnvalue: unknown = null;
  failedReason?: string;
  processedOn?: number;
  finishedOn?: number;
  /** Held by the attempt running it, which alone may move it to delayed. */
  token?: string;
  /** When it was last delayed: the time it was due to run. */
  runAt?: number;
  /** The job waiting for this one to finish (a flow). */
  parent?: LocalJob;
  /** Ids of the children this job still waits for. */
  readonly pending = new Set<string>();
  /** The scheduler this job is an iteration of. */
  schedulerId?: string;

  constructor(
    private readonly host: JobHost,
    readonly id: string,
    readonly name: string,
    readonly data: D,
    readonly opts: JobOptions,
    state: JobState,
  ) {
    this.state = state;
  }

  async getState(): Promise<JobState> {
    return this.state;
  }

  async isDelayed(): Promise<boolean> {
    return this.state === 'delayed';
  }

  async promote(): Promise<void> {
    this.host.promote(this);
  }

  async moveToDelayed(timestamp: number, token?: string): Promise<void> {
    this.host.moveToDelayed(this, timestamp, token);
  }

  async removeDeduplicationKey(): Promise<boolean> {
    return this.host.releaseDeduplication(this);
  }
}

/** A value as it comes back from Redis: through JSON, undefined read back as null. */
export function viaJson(value: unknown): unknown {
  const text = JSON.stringify(value);
  return text === undefined ? null : JSON.parse(text);
}
