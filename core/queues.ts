import { setTimeout as sleep } from 'node:timers/promises';
import { FlowProducer, Queue, type JobState as BullJobState } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from './config.js';
import { LocalQueue } from './local-queue.js';

/**
 * The job queues, one per kind of work. Producers (the API, other jobs) and workers import the
 * names from here; each queue's processor lives in worker/.
 *
 * Two runners sit behind the same interfaces: BullMQ on Redis when REDIS_URL is set (all keys
 * under QUEUE_PREFIX, so several instances can share one Redis), and in-process queues
 * (core/local-queue.ts) when it is not. `JobQueue` and `QueueJob` are the part of BullMQ's
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
  /** How long a requested warehouse refresh waits to absorb the requests after it (default 1000 ms). */
  readonly warehouseDebounceMs?: number;
  /** Whether queued jobs outlive this process (BullMQ keeps them in Redis; in-process ones die with it). */
  readonly durable: boolean;
  /** Adds a parent job and its children to one queue (BullMQ: a flow). */
  addFlow(queue: QueueName, flow: JobFlow): Promise<void>;
  close(): Promise<void>;
}

/** BullMQ queues on `redis`, or in-process ones when there is no Redis. */
export function createQueues(config: Config, redis: Redis | undefined): Queues {
  return redis ? bullmqQueues(config, redis) : localQueues(config);
}

function bullmqQueues(config: Config, connection: Redis): Queues {
  const make = (name: string) => new Queue(name, { connection, prefix: config.QUEUE_PREFIX });
  const queues = {
    loads: make(QUEUE_NAMES.loads),
    warehouse: make(QUEUE_NAMES.warehouse),
    backups: make(QUEUE_NAMES.backups),
  };
  let flows: FlowProducer | undefined;
  return {
    ...queues,
    warehouseDebounceMs: config.WAREHOUSE_REFRESH_DEBOUNCE_MS,
    durable: true,
    async addFlow(name, { children, ...parent }) {
      flows ??= new FlowProducer({ connection, prefix: config.QUEUE_PREFIX });
      const queueName = QUEUE_NAMES[name];
      await flows.add({
        ...parent,
        queueName,
        children: children.map((c) => ({ ...c, queueName, opts: { ...c.opts, ignoreDependencyOnFailure: true } })),
      });
    },
    async close() {
      await Promise.allSettled([...Object.values(queues).map((q) => q.close()), flows?.close()]);
    },
  };
}

function localQueues(config: Config): Queues {
  const queues = {
    loads: new LocalQueue(QUEUE_NAMES.loads),
    warehouse: new LocalQueue(QUEUE_NAMES.warehouse),
    backups: new LocalQueue(QUEUE_NAMES.backups),
  };
  return {
    ...queues,
    warehouseDebounceMs: config.WAREHOUSE_REFRESH_DEBOUNCE_MS,
    durable: false,
    async addFlow(name, flow) {
      await queues[name].addFlow(flow);
    },
    async close() {
      await Promise.allSettled(Object.values(queues).map((q) => q.close()));
    },
  };
}

/** The deduplication id of the one refresh job that may be waiting at any time. */
export const REFRESH_DEDUP_ID = 'refresh-pending';

/**
 * Asks for a warehouse refresh after data changed in PostgreSQL (ingest, load, restore), and
 * returns the id of the job that will do it.
 *
 * Coalescing: at most one refresh job is *waiting* at a time; every request made meanwhile joins
 * it (deduplication). The refresh processor releases the deduplication id as soon as it starts
 * (worker/warehouse.ts), so a request that arrives while a refresh is running creates the next
 * waiting job instead of being dropped: a change is always followed by a refresh that starts
 * after it. A burst of 100 requests therefore causes one or two refreshes. Refreshes never
 * overlap: the worker runs one at a time and the refresh itself holds a PostgreSQL advisory lock.
 *
 * `immediate` (a user asking for it) skips the debounce: a delayed job it joins is promoted.
 */
export async function requestWarehouseRefresh(
  queues: Queues,
  reason: string,
  opts: { immediate?: boolean } = {},
): Promise<string> {
  const job = await queues.warehouse.add(
    'refresh',
    { reason },
    {
      delay: opts.immediate ? 0 : (queues.warehouseDebounceMs ?? 1_000),
      deduplication: { id: REFRESH_DEDUP_ID },
      attempts: 3,
      backoff: { type: 'exponential', delay: 2_000 },
      removeOnComplete: 100,
      removeOnFail: 100,
    },
  );
  if (opts.immediate) {
    // A deduplicated add answers with the waiting job; make it run now if it was debouncing.
    const existing = await queues.warehouse.getJob(job.id!);
    if (existing && (await existing.isDelayed())) await existing.promote().catch(() => {});
  }
  return job.id!;
}

export interface JobOutcome {
  /** completed, failed, unknown (the job is gone), or at a timeout the state it was in then. */
  state: JobState;
  timedOut: boolean;
  result?: unknown;
  error?: string;
}

/**
 * Polls a job until it completes or fails for good, or `timeoutMs` passes. Polling, not BullMQ's
 * QueueEvents: a wait needs no connection of its own, and works on any JobQueue.
 */
export async function waitForJob(queue: JobQueue, id: string, timeoutMs: number): Promise<JobOutcome> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    const job = await queue.getJob(id);
    if (!job) return { state: 'unknown', timedOut: false };
    const state = await job.getState();
    if (state === 'completed') return { state, timedOut: false, result: job.returnvalue };
    // A failed attempt with attempts left goes back to waiting/delayed; only the last one is final.
    if (state === 'failed') return { state, timedOut: false, error: job.failedReason };
    if (Date.now() >= deadline) return { state, timedOut: true };
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
  }
}
