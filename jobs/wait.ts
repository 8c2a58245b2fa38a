import { setTimeout as sleep } from 'node:timers/promises';
import type { JobQueue, JobState } from './queues.js';

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
    if (state === 'completed' || state === 'failed') {
      // A BullMQ job is a snapshot read before getState(): if it finished in between, its result
      // and reason are not in the snapshot yet. Read it again now that it is final.
      const final = (await queue.getJob(id)) ?? job;
      if (state === 'completed') return { state, timedOut: false, result: final.returnvalue };
      // A failed attempt with attempts left goes back to waiting/delayed; only the last one is final.
      return { state, timedOut: false, error: final.failedReason };
    }
    if (Date.now() >= deadline) return { state, timedOut: true };
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
  }
}
