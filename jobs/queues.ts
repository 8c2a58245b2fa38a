import { setTimeout as sleep } from 'node:timers/promises';
import { FlowProducer, Queue, type JobState as BullJobState } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../core/config.js';
import { LocalQueue } from './local-queue.js';

/**
 * The job queues, one per kind of work: the interfaces every producer and processor uses. Each
 * queue's processor lives with its feature (loads/, backup/, warehouse/).
 *
 * Two runners sit behind the same interfaces: BullMQ on Redis when REDIS_URL is set (all keys
 * under QUEUE_PREFIX, so several instances can share one Redis), and in-process queues
 * (jobs/local-queue.ts) when it is not. `JobQueue` and `QueueJob` are the part of BullMQ's
 * `Queue` and `Job` this code uses; BullMQ's classes satisfy them as they are.
 */
export const QUEUE_NAMES = {
  loads: 'loads',
  warehouse: 'warehouse',
  backups: 'backups',
} as const;

export type QueueName = keyof typeof QUEUE_NAMES;

/** BullMQ's job states; `unknown` is a job that is not (or no longer) in the queue. */
export type JobState = BullJobState | 'unknown';

/**
 * The job options the service uses, with BullMQ's meaning (a subset of its JobsOptions); both
 * runners honour them.
 */
export interface JobOptions {
  /** An id already in the queue is not added again: the add answers with that job. */
  jobId?: string;
  delay?: number;
  attempts?: number;
  backoff?: number | { type: 'fixed' | 'exponential'; delay?: number };
  /** While a job holding this id has not finished (or released it), adds answer with that job. */
  deduplication?: { id: string };
  /** Finished jobs to keep: true keeps none, a number (or count) keeps the newest that many. */
  removeOnComplete?: boolean | number | { count: number };
  removeOnFail?: boolean | number | { count: number };
}

/** A job as producers see it and processors receive it. */
export interface QueueJob<D = unknown, R = unknown> {
  readonly id?: string;
  readonly name: string;
  readonly data: D;
  readonly opts: { readonly attempts?: number };
  /** Attempts finished so far (a job given back with moveToDelayed does not count one). */
  readonly attemptsMade: number;
  readonly returnvalue: R;
  readonly failedReason?: string;
  readonly processedOn?: number;
  readonly finishedOn?: number;
  /** BullMQ only: how often the job's worker stopped renewing its lock. */
  readonly stalledCounter?: number;
  getState(): Promise<JobState>;
  isDelayed(): Promise<boolean>;
  promote(): Promise<void>;
  /** From the processor (with its token): run the job again at `timestamp`; then throw DelayedError. */
  moveToDelayed(timestamp: number, token?: string): Promise<void>;
  removeDeduplicationKey(): Promise<boolean>;
}

/** A job whose parent waits for children in the same queue. */
export interface JobFlow {
  name: string;
  data: object;
  opts?: JobOptions;
  /** The parent runs once every child has finished; a failed child does not block it. */
  children: { name: string; data: object; opts?: JobOptions }[];
}

export interface JobScheduler {
  key: string;
  pattern?: string;
  next?: number;
}

/** The part of BullMQ's `Queue` the service and its tests use; `LocalQueue` implements it too. */
export interface JobQueue {
  add(name: string, data: object, opts?: JobOptions): Promise<QueueJob>;
  getJob(id: string): Promise<QueueJob | undefined>;
  /** Jobs of the queue running at once over every worker process (in-process: one process, no-op). */
  setGlobalConcurrency(concurrency: number): Promise<unknown>;
  /** Adds `template` on a cron `pattern` (evaluated in `tz`); one scheduler per id. */
  upsertJobScheduler(
    id: string,
    repeat: { pattern: string; tz?: string },
    template: { name: string; data: object; opts?: Omit<JobOptions, 'jobId' | 'delay' | 'deduplication'> },
  ): Promise<unknown>;
  removeJobScheduler(id: string): Promise<boolean>;
  getJobSchedulers(): Promise<JobScheduler[]>;
  getJobCounts(...states: BullJobState[]): Promise<Record<string, number>>;
  /** Completed jobs still kept, newest first. */
  getCompleted(): Promise<QueueJob[]>;
  getCompletedCount(): Promise<number>;
  getFailedCount(): Promise<number>;
  close(): Promise<void>;
}

export interface Queues {
  readonly loads: JobQueue;
  readonly warehouse: JobQueue;
  readonly backups: JobQueue;
  /** Whether queued jobs outlive this process (BullMQ keeps them in Redis; in-process ones die with it). */
  readonly durable: boolean;
  /** Where the jobs live, for logs and /health: `redis://host:port prefix P`, or `in-process`. */
  readonly label: string;
  /** Adds a parent job and its children to one queue (BullMQ: a flow). */
  addFlow(queue: QueueName, flow: JobFlow): Promise<void>;
  /**
   * Runs `processor` on the jobs of one queue in this process (BullMQ: a Worker on its own Redis
   * connection; in-process: the queue's worker side). Returns what stops it (running jobs finish first).
   */
  process<D>(queue: QueueName, processor: Processor<D>, opts: ProcessorOptions<D>): () => Promise<void>;
  /** Resolves when the queue store answers (Redis PING); in-process queues always do. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Runs one job; the same function serves both runners. */
export type Processor<D> = (job: QueueJob<D>, token?: string) => Promise<unknown>;

export interface ProcessorOptions<D> {
  concurrency: number;
  /** BullMQ only: job locks and the stalled-job check (an in-process job cannot outlive its worker). */
  locks?: { lockDuration: number; stalledInterval: number; maxStalledCount: number };
  /** After every failed attempt; `job.getState()` already says whether it will be retried. */
  onFailed?: (job: QueueJob<D>, err: Error) => void;
}

