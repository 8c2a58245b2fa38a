import { EventEmitter } from 'node:events';
import { DelayedError, UnrecoverableError } from 'bullmq';
import { viaJson, type LocalJob } from './local-job.js';

/** What a worker needs from its queue (jobs/local-queue.ts keeps the bookkeeping). */
export interface WorkSource {
  /** The next waiting job, made active under a fresh token; undefined when none waits. */
  take(): LocalJob | undefined;
  complete(job: LocalJob, value: unknown): void;
  /** Retries the job if attempts remain (after its backoff), else fails it. */
  fail(job: LocalJob, err: Error): void;
  /** The worker has stopped; jobs wait for the next one. */
  detach(): void;
}

export type LocalProcessor<D> = (job: LocalJob<D>, token: string) => Promise<unknown>;

type Events<D> = {
  /** After every failed attempt, the job's state already moved on (failed, or delayed/waiting for a retry). */
  failed: [job: LocalJob<D>, err: Error];
  /** Bookkeeping after a job went wrong (a `failed` listener threw): no job's own failure. */
  error: [err: Error];
};

/**
 * Runs an in-process queue's jobs, up to `concurrency` at once, with BullMQ's outcomes: a
 * returned value completes the job; a thrown error spends an attempt (UnrecoverableError fails
 * it at once); DelayedError after `job.moveToDelayed()` gives the job back without spending one.
 */
export class LocalWorker<D = unknown> extends EventEmitter<Events<D>> {
  private readonly active = new Set<Promise<void>>();
  private closing?: Promise<void>;

  constructor(
    private readonly source: WorkSource,
    private readonly processor: LocalProcessor<D>,
    private readonly concurrency: number,
  ) {
    super();
  }

  /** Starts waiting jobs while slots are free; the queue calls it when a job becomes waiting. */
  pump(): void {
    while (!this.closing && this.active.size < this.concurrency) {
      const job = this.source.take();
      if (!job) return;
      const run: Promise<void> = this.run(job).finally(() => {
        this.active.delete(run);
        this.pump();
      });
      this.active.add(run);
    }
  }

  /** Stops taking jobs and waits for the running ones to finish (or give themselves back). */
  close(): Promise<void> {
    this.closing ??= Promise.allSettled([...this.active]).then(() => this.source.detach());
    return this.closing;
  }

  private async run(job: LocalJob): Promise<void> {
    // The job's data type is taken on trust here, as BullMQ's Worker<D> does.
    const typed = job as LocalJob<D>;
    let outcome: { value: unknown } | { err: Error };
    try {
      const value = await this.processor(typed, job.token ?? '');
      outcome = { value: viaJson(value) };
    } catch (e) {
      outcome = { err: e instanceof Error ? e : new Error(String(e)) };
    }
    try {
      if ('value' in outcome) return this.source.complete(job, outcome.value);
      let { err } = outcome;
      if (err instanceof DelayedError || err.name === 'DelayedError') {
        if (job.state === 'delayed') return;
        err = new UnrecoverableError('the processor threw DelayedError without moving the job to delayed first');
      }
      this.source.fail(job, err);
      this.emit('failed', typed, err);
    } catch (err) {
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
    }
  }
}
