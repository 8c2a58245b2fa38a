import { randomUUID } from 'node:crypto';
import type { TableName } from '../core/tables.js';
import { AppError, UnavailableError } from '../core/errors.js';
import { errorFromFailure, waitForJob, type Services } from '../jobs/index.js';

import { DONE, FAILED, INBOX, PROCESSING, fileOfKey, inboxStorage, isIgnored, listFolder, parseProcessing, tableOfName } from './inbox-files.js';
import { LANDING_SCAN_JOB, type ScanResult } from './inbox.js';
import { waitForLoads } from './start.js';
import { getLoads, isTerminal, type LoadRow, type LoadStatus } from './store.js';

/** What GET /landing answers. */
export interface LandingView {
  inbox: { name: string; table: TableName | null; bytes: number; modifiedAt: string; ignored: boolean }[];
  processing: { name: string; loadId: string | null; status: LoadStatus | null }[];
  done: FinishedFile[];
  failed: FinishedFile[];
}

export interface FinishedFile {
  name: string;
  /** The file, relative to DATA_DIR. */
  file: string;
  date: string;
  /** The load that read it; null for a file whose name named no table. */
  loadId: string | null;
  status: LoadStatus | null;
  /** The `.rejects.ndjson` (done) or `.error.txt` (failed) beside it, relative to DATA_DIR. */
  companion: string | null;
}

/** Newest done and failed files listed. */
const LATEST = 50;
const COMPANION = /\.(rejects\.ndjson|error\.txt)$/;

/** The inbox, processing/, and the latest files of done/ and failed/, with their loads. */
export async function landingStatus({ config, pool }: Pick<Services, 'config' | 'pool'>): Promise<LandingView> {
  const store = inboxStorage(config);
  const inbox = (await listFolder(store, INBOX, 1_000)).map((f) => ({
    name: f.name,
    table: tableOfName(f.name) ?? null,
    bytes: f.size,
    modifiedAt: f.lastModified.toISOString(),
    ignored: isIgnored(f.name),
  }));
  const claims = (await listFolder(store, PROCESSING, 1_000)).map((f) => ({ f, claim: parseProcessing(f.key) }));
  const [done, failed] = await Promise.all([latest(store, DONE), latest(store, FAILED)]);
  const byId = new Map((await getLoads(pool, claims.flatMap((c) => (c.claim ? [c.claim.loadId] : [])))).map((l) => [l.id, l]));
  const byFile = await loadsOfFiles(pool, [...done, ...failed].map((k) => fileOfKey(config, k.key)));
  const finished = (list: Listed[]): FinishedFile[] =>
    list.map((k) => {
      const load = byFile.get(fileOfKey(config, k.key));
      return {
        name: k.key.slice(k.key.lastIndexOf('/') + 1),
        file: k.key,
        date: k.key.split('/')[2] ?? '',
        loadId: load?.id ?? null,
        status: load?.status ?? null,
        companion: k.companion,
      };
    });
  return {
    inbox,
    processing: claims.map(({ f, claim }) => ({
      name: claim?.name ?? f.name,
      loadId: claim?.loadId ?? null,
      status: (claim && byId.get(claim.loadId)?.status) ?? null,
    })),
    done: finished(done),
    failed: finished(failed),
  };
}

interface Listed {
  key: string;
  companion: string | null;
}

/**
 * The newest LATEST files under done/ or failed/ (day folders, newest first; within a day, by
 * modification time), each with its companion file. One pass over the listing, keeping only the
 * newest: memory stays bounded however many files piled up.
 */
async function latest(store: ReturnType<typeof inboxStorage>, folder: string): Promise<Listed[]> {
  const keep: { key: string; day: string; at: number }[] = [];
  for await (const o of store.list(folder)) {
    const rest = o.key.slice(folder.length).split('/');
    if (rest.length !== 2 || COMPANION.test(o.key)) continue;
    keep.push({ key: o.key, day: rest[0]!, at: o.lastModified.getTime() });
    if (keep.length > LATEST * 2) trim(keep);
  }
  trim(keep);
  const companionOf = async (key: string) => {
    for (const c of [`${key}.rejects.ndjson`, `${key}.error.txt`]) if (await store.exists(c)) return c;
    return null;
  };
  return Promise.all(keep.map(async (k) => ({ key: k.key, companion: await companionOf(k.key) })));
}

function trim(list: { day: string; at: number }[]): void {
  list.sort((a, b) => (a.day === b.day ? b.at - a.at : a.day < b.day ? 1 : -1));
  list.length = Math.min(list.length, LATEST);
}

async function loadsOfFiles(pool: Services['pool'], files: string[]): Promise<Map<string, LoadRow>> {
  if (files.length === 0) return new Map();
  const { rows } = await pool.query<LoadRow>(`SELECT * FROM loads WHERE source = 'inbox' AND file = ANY($1::text[])`, [files]);
  return new Map(rows.map((r) => [r.file, r]));
}

export type ScanOutcome =
  | { done: true; jobId: string; result: ScanResult; loads: LoadRow[]; finished: boolean }
  | { done: false; jobId: string; status: 'queued' | 'running' };

/**
 * POST /landing/scan: queues a scan now. With `wait`, waits for it and then for the loads it
 * started, LOAD_WAIT_MS in all; past that, the current state.
 */
export async function requestScan(services: Services, wait: boolean): Promise<ScanOutcome> {
  const { queues, config, log } = services;
  const jobId = `landing-scan-${randomUUID()}`;
  try {
    await queues.loads.add(LANDING_SCAN_JOB, {}, { jobId, attempts: 1, removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } });
  } catch (err) {
    log.warn({ err }, 'could not queue a landing scan');
    throw new UnavailableError('could not queue the scan: the queue (Redis) is unreachable; try again when it is back');
  }
  if (!wait) return { done: false, jobId, status: 'queued' };
  const deadline = Date.now() + config.LOAD_WAIT_MS;
  const job = await waitForJob(queues.loads, jobId, config.LOAD_WAIT_MS);
  if (job.timedOut) return { done: false, jobId, status: job.state === 'active' ? 'running' : 'queued' };
  if (job.state !== 'completed') {
    const known = errorFromFailure(job.error);
    if (known) throw known;
    // The failure's own text may name paths or hosts: it is in the worker's log.
    throw new AppError(500, 'scan_failed', `the landing scan failed; the worker log has the details under job ${jobId}`, { jobId });
  }
  const result = job.result as ScanResult;
  const loads = await waitForLoads(services, result.started, Math.max(0, deadline - Date.now()));
  return { done: true, jobId, result, loads, finished: loads.every((l) => isTerminal(l.status)) };
}
