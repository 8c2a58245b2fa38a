import { randomUUID } from 'node:crypto';
import { getNextMillis, UnrecoverableError } from 'bullmq';
import { LocalJob, viaJson, type JobHost } from './local-job.js';
import { LocalWorker, type LocalProcessor, type WorkSource } from './local-worker.js';
import type { JobFlow, JobOptions, JobQueue, JobScheduler, JobState } from './queues.js';

/** Finished jobs kept when an add does not say (BullMQ keeps them all, but in Redis, not here). */
const DEFAULT_KEEP = 1000;

type Template = Parameters<JobQueue['upsertJobScheduler']>[2];

interface Scheduler {
  repeat: { pattern: string; tz?: string };
  template: Template;
  /** The iteration waiting for its time. */
  next?: LocalJob;
}

/**
 * A queue held in this process's memory, for running without Redis: the part of BullMQ's
 * `Queue` this service uses, with the same meaning (ids, delays, attempts and backoff,
 * deduplication, finished-job retention, flows, cron schedulers), and a worker side
 * (`process`). Jobs live as long as the process: whatever is waiting when it stops is gone.
 */
export class LocalQueue implements JobQueue {
  private readonly jobs = new Map<string, LocalJob>();
  private readonly waiting: LocalJob[] = [];
  private readonly timers = new Map<LocalJob, NodeJS.Timeout>();
  private readonly dedup = new Map<string, LocalJob>();
  private readonly completed: LocalJob[] = [];
  private readonly failed: LocalJob[] = [];
  private readonly schedulers = new Map<string, Scheduler>();
  private worker?: { pump(): void; close(): Promise<void> };
  private lastId = 0;
  private closed = false;

  constructor(readonly name: string) {}

  async add(name: string, data: object, opts: JobOptions = {}): Promise<LocalJob> {
    const existing = this.existing(opts);
    if (existing) return existing;
    const job = this.create(name, data, opts);
    this.ready(job);
    return job;
  }

  /** The parent waits (state waiting-children) until every child has completed or failed for good. */
  async addFlow({ children, ...parent }: JobFlow): Promise<LocalJob> {
    const existing = this.existing(parent.opts ?? {});
    if (existing) return existing;
    const job = this.create(parent.name, parent.data, parent.opts ?? {}, 'waiting-children');
    const added: LocalJob[] = [];
    for (const c of children) {
      const opts = c.opts ?? {};
      let child = this.existing(opts);
      if (!child) added.push((child = this.create(c.name, c.data, opts)));
      if (child.parent || child.state === 'completed' || child.state === 'failed') continue;
      child.parent = job;
      job.pending.add(child.id);
    }
    // Linked first, then started: a child cannot finish before its parent knows of it.
    added.forEach((child) => this.ready(child));
    if (job.pending.size === 0) this.ready(job);
    return job;
  }

  async getJob(id: string): Promise<LocalJob | undefined> {
    return this.jobs.get(id);
  }

  /** One process runs every in-process job, so there is nothing to share. */
  async setGlobalConcurrency(concurrency: number): Promise<number> {
    return concurrency;
  }

  /** Like BullMQ: the next iteration waits as a delayed job, and the one after is added when it starts. */
  async upsertJobScheduler(id: string, repeat: { pattern: string; tz?: string }, template: Template): Promise<LocalJob | undefined> {
    const first = getNextMillis(Date.now(), repeat); // a bad pattern throws here, before anything changes
    await this.removeJobScheduler(id);
    const scheduler: Scheduler = { repeat, template };
    this.schedulers.set(id, scheduler);
    return this.scheduleIteration(id, scheduler, first);
  }

  async removeJobScheduler(id: string): Promise<boolean> {
    const scheduler = this.schedulers.get(id);
    if (!scheduler) return false;
    this.schedulers.delete(id);
    if (scheduler.next?.state === 'delayed') this.discard(scheduler.next);
    return true;
  }

  async getJobSchedulers(): Promise<JobScheduler[]> {
    return [...this.schedulers].map(([key, s]) => ({ key, pattern: s.repeat.pattern, next: s.next?.runAt }));
  }

  async getJobCounts(...states: JobState[]): Promise<Record<string, number>> {
    const counts = Object.fromEntries(states.map((s) => [s, 0]));
    for (const job of this.jobs.values()) if (job.state in counts) counts[job.state]! += 1;
    return counts;
  }

  async getCompleted(): Promise<LocalJob[]> {
    return [...this.completed].reverse();
  }

  async getCompletedCount(): Promise<number> {
    return this.completed.length;
  }

  async getFailedCount(): Promise<number> {
    return this.failed.length;
  }

  /**
   * The worker side: runs the jobs with `processor`, `concurrency` at a time, until its `close()`.
   * One worker per queue at a time.
   */
  process<D>(processor: LocalProcessor<D>, opts: { concurrency: number }): LocalWorker<D> {
    if (this.closed) throw new Error(`the ${this.name} queue is closed`);
    if (this.worker) throw new Error(`the ${this.name} queue already has a worker`);
    const worker = new LocalWorker(this.source, processor, opts.concurrency);
    this.worker = worker;
    queueMicrotask(() => worker.pump());
    return worker;
  }

  /** Waits for the worker's running jobs, then drops the timers: nothing runs after this. */
  async close(): Promise<void> {
    this.closed = true;
    await this.worker?.close();
    this.schedulers.clear();
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  private readonly host: JobHost = {
    promote: (job) => {
      // The messages are BullMQ's, so a caller reads the same refusal from either runner.
      if (job.state !== 'delayed') throw new Error(`Job ${job.id} is not in the delayed state. promote`);
      this.enqueue(job);
    },
    moveToDelayed: (job, timestamp, token) => {
      if (job.state !== 'active' || job.token === undefined) throw new Error(`Missing lock for job ${job.id}. moveToDelayed`);
      if (token !== job.token) throw new Error(`Lock mismatch for job ${job.id}. Cmd moveToDelayed from active`);
      job.token = undefined;
      this.delay(job, timestamp);
    },
    releaseDeduplication: (job) => this.release(job),
  };

  private readonly source: WorkSource = {
    take: () => {
      const job = this.waiting.shift();
      if (!job) return undefined;
      job.state = 'active';
      job.token = randomUUID();
      job.processedOn = Date.now();
      if (job.schedulerId) this.nextIteration(job.schedulerId, job);
      return job;
    },
    complete: (job, value) => {
      job.attemptsMade += 1;
      job.returnvalue = value;
      this.finish(job, 'completed');
    },
    fail: (job, err) => {
      job.attemptsMade += 1;
      job.failedReason = err.message;
      const unrecoverable = err instanceof UnrecoverableError || err.name === 'UnrecoverableError';
      if (unrecoverable || job.attemptsMade >= (job.opts.attempts ?? 1)) return this.finish(job, 'failed');
      const wait = backoff(job.opts.backoff, job.attemptsMade);
      if (wait > 0) this.delay(job, Date.now() + wait);
      else this.enqueue(job);
    },
    detach: () => {
      this.worker = undefined;
    },
  };

  /** The job an add answers with instead of adding one: same id, or holding the deduplication id. */
  private existing(opts: JobOptions): LocalJob | undefined {
    if (this.closed) throw new Error(`the ${this.name} queue is closed`);
    const byId = opts.jobId === undefined ? undefined : this.jobs.get(opts.jobId);
    return byId ?? (opts.deduplication ? this.dedup.get(opts.deduplication.id) : undefined);
  }

  /** Registers a job; `ready` (or a flow's children finishing) then places it. */
  private create(name: string, data: object, opts: JobOptions, state: JobState = 'unknown'): LocalJob {
    const id = opts.jobId ?? String(++this.lastId);
    const job = new LocalJob(this.host, id, name, viaJson(data), opts, state);
    this.jobs.set(id, job);
    if (opts.deduplication) this.dedup.set(opts.deduplication.id, job);
    return job;
  }

  private ready(job: LocalJob): void {
    const delay = job.opts.delay ?? 0;
    if (delay > 0) this.delay(job, Date.now() + delay);
    else this.enqueue(job);
  }

  private enqueue(job: LocalJob): void {
    this.clearTimer(job);
    job.state = 'waiting';
    this.waiting.push(job);
    // Not from inside the caller's add(): a processor starts on a later turn, as with Redis.
    queueMicrotask(() => this.worker?.pump());
  }

  private delay(job: LocalJob, runAt: number): void {
    this.clearTimer(job);
    job.state = 'delayed';
    job.runAt = runAt;
    this.arm(job, runAt);
  }

  /** A timer can fire a millisecond before Date.now() reaches its time: then it waits on. */
  private arm(job: LocalJob, runAt: number): void {
    if (this.closed) return;
    const due = () => (Date.now() < runAt ? this.arm(job, runAt) : this.enqueue(job));
    // unref: a pending delay alone does not keep the process alive.
    this.timers.set(job, setTimeout(due, Math.max(0, runAt - Date.now())).unref());
  }

  private clearTimer(job: LocalJob): void {
    clearTimeout(this.timers.get(job));
    this.timers.delete(job);
  }

  private finish(job: LocalJob, state: 'completed' | 'failed'): void {
    this.clearTimer(job); // a processor that asked for a delay and then finished anyway
    job.state = state;
    job.token = undefined;
    job.finishedOn = Date.now();
    this.release(job);
    const list = state === 'completed' ? this.completed : this.failed;
    list.push(job);
    const keep = keepCount(state === 'completed' ? job.opts.removeOnComplete : job.opts.removeOnFail);
    while (list.length > keep) this.forget(list.shift()!);
    const parent = job.parent;
    if (parent?.pending.delete(job.id) && parent.pending.size === 0 && parent.state === 'waiting-children') this.ready(parent);
  }

  private release(job: LocalJob): boolean {
    const id = job.opts.deduplication?.id;
    if (id === undefined || this.dedup.get(id) !== job) return false;
    this.dedup.delete(id);
    return true;
  }

  /** Removes a job that has not run (a scheduler's next iteration). */
  private discard(job: LocalJob): void {
    this.clearTimer(job);
    this.release(job);
    this.forget(job);
  }

  private forget(job: LocalJob): void {
    if (this.jobs.get(job.id) === job) this.jobs.delete(job.id);
    job.state = 'unknown';
  }

  private scheduleIteration(id: string, scheduler: Scheduler, at: number | undefined): LocalJob | undefined {
    scheduler.next = undefined;
    if (at === undefined) return undefined; // the pattern has no further time
    const { name, data, opts } = scheduler.template;
    const jobId = `repeat:${id}:${at}`; // BullMQ's id for the iteration: one job per slot
    const existing = this.existing({ jobId });
    const job = existing ?? this.create(name, data, { ...opts, jobId });
    job.schedulerId = id;
    scheduler.next = job;
    if (!existing) this.delay(job, at);
    return job;
  }

  /** An iteration started: the next one waits for the pattern's next time after it. */
  private nextIteration(id: string, started: LocalJob): void {
    const scheduler = this.schedulers.get(id);
    if (scheduler?.next !== started) return;
    this.scheduleIteration(id, scheduler, getNextMillis(Math.max(Date.now(), started.runAt ?? 0), scheduler.repeat));
  }
}

function keepCount(opt: JobOptions['removeOnComplete']): number {
  if (opt === true) return 0;
  if (typeof opt === 'number') return opt;
  if (typeof opt === 'object') return opt.count;
  return DEFAULT_KEEP;
}

/** BullMQ's built-in backoffs: fixed, or exponential (delay × 2^(attempt − 1)). */
function backoff(opt: JobOptions['backoff'], attemptsMade: number): number {
  if (opt === undefined) return 0;
  const { type, delay = 0 } = typeof opt === 'number' ? { type: 'fixed' as const, delay: opt } : opt;
  return type === 'fixed' ? delay : Math.round(2 ** (attemptsMade - 1) * delay);
}
