import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { Pool } from '../core/db.js';
import type { Services, QueueJob } from '../jobs/index.js';
import type { Storage } from '../storage/index.js';
import {
  DONE,
  FAILED,
  INBOX,
  PROCESSING,
  fileOfKey,
  freeKey,
  inboxStorage,
  isIgnored,
  keyOfLoadFile,
  listFolder,
  moveIfThere,
  parseProcessing,
  processingKey,
  startInboxLoads,
  tableOfName,
  utcDate,
  type ClaimedFile,
} from './inbox-files.js';
import { getLoad, getLoads, isTerminal, rejectsOf, type LoadRow } from './store.js';

/**
 * The landing inbox: a scan (a job on the `loads` queue, on LANDING_SCAN_CRON and on
 * POST /landing/scan) takes the complete files of landing/inbox/ and starts their loads.
 *
 * 1. processing/: files whose load has ended move on (done/ or failed/); a file whose load record
 *    was never written (the worker died right after taking it) gets it now.
 * 2. inbox/: a name that names no table moves to failed/ at once, with `<name>.error.txt`. A file
 *    is taken once two looks at least LANDING_SETTLE_MS apart (this scan's and an earlier one's,
 *    kept in `landing_looks`) find the same size and modification time; dot-files and `*.tmp`
 *    are left alone. Taking is a rename into processing/: of several workers, one wins it.
 * 3. The taken files become ordinary loads, hired_employees after departments and jobs.
 * Files seen for the first time make the scan queue a follow-up scan LANDING_SETTLE_MS later, so
 * a dropped file loads within seconds, not at the next cron tick.
 */
export const LANDING_SCAN_JOB = 'landing-scan';
export const LANDING_SCHEDULER_ID = 'landing-scan';
const FOLLOW_UP_ID = 'landing-scan-follow-up';
/** Files taken per scan; the rest wait for the next one. */
const MAX_TAKE = 1_000;
/** A file in processing/ without a load record is adopted only after this long (its taker may still be writing it). */
const ORPHAN_GRACE_MS = 60_000;

export interface ScanJobData {
  followUp?: boolean;
}

export interface ScanResult {
  /** Loads started by this scan, departments and jobs first. */
  started: string[];
  /** Files seen but not yet unchanged for LANDING_SETTLE_MS: a later scan takes them. */
  settling: string[];
  /** Files whose name names no table, moved to failed/. */
  refused: string[];
  /** Files of ended loads moved from processing/ to done/ or failed/. */
  moved: string[];
}

/** Adds, replaces or removes the schedule (LANDING_SCAN_CRON); one per queue however many workers start. */
export async function scheduleLandingScan({ config, queues, log }: Pick<Services, 'config' | 'queues' | 'log'>): Promise<void> {
  if (!config.LANDING_SCAN_CRON) {
    await queues.loads.removeJobScheduler(LANDING_SCHEDULER_ID);
    return;
  }
  await queues.loads.upsertJobScheduler(
    LANDING_SCHEDULER_ID,
    { pattern: config.LANDING_SCAN_CRON, tz: 'UTC' },
    { name: LANDING_SCAN_JOB, data: {}, opts: { attempts: 1, removeOnComplete: 10, removeOnFail: 10 } },
  );
  log.debug({ cron: config.LANDING_SCAN_CRON, settleMs: config.LANDING_SETTLE_MS }, 'landing inbox scan scheduled');
}

/** The scan job's processor. */
export async function runLandingScan(services: Services, job: QueueJob<ScanJobData>): Promise<ScanResult> {
  // A follow-up holds its deduplication id while it runs: let it queue the next one.
  if (job.data.followUp) await job.removeDeduplicationKey().catch(() => false);
  const result = await scanInbox(services);
  if (result.settling.length > 0) {
    await services.queues.loads.add(
      LANDING_SCAN_JOB,
      { followUp: true } satisfies ScanJobData,
      { delay: services.config.LANDING_SETTLE_MS + 250, deduplication: { id: FOLLOW_UP_ID }, attempts: 1, removeOnComplete: 10, removeOnFail: 10 },
    );
  }
  const { started, settling, refused, moved } = result;
  if (started.length + refused.length + moved.length > 0) services.log.info({ started, settling, refused, moved }, 'landing inbox scanned');
  return result;
}

export async function scanInbox(services: Services): Promise<ScanResult> {
  const { config, pool, log } = services;
  const store = inboxStorage(config);
  const result: ScanResult = { started: [], settling: [], refused: [], moved: [] };

  result.moved = await sweepProcessing(services, store);

  const files = (await listFolder(store, INBOX)).filter((f) => !isIgnored(f.name));
  const candidates: typeof files = [];
  for (const f of files) {
    if (tableOfName(f.name)) candidates.push(f);
    else if (await refuseName(store, f.key, f.name)) result.refused.push(f.name);
  }

  const settled = await look(pool, candidates, config.LANDING_SETTLE_MS);
  result.settling = candidates.filter((f) => !settled.has(f.name)).map((f) => f.name);
  const claimed: ClaimedFile[] = [];
  for (const f of candidates.filter((c) => settled.has(c.name)).slice(0, MAX_TAKE)) {
    const loadId = randomUUID();
    const key = processingKey(loadId, f.name);
    // The rename decides: a worker that loses it finds the file gone.
    if (!(await moveIfThere(store, f.key, key))) continue;
    claimed.push({ loadId, table: tableOfName(f.name)!, key, bytes: f.size, name: f.name });
  }
  // Looks of files taken, or gone from the inbox, are of no more use.
  await pool.query('DELETE FROM landing_looks WHERE name = ANY($1::text[]) OR NOT (name = ANY($2::text[]))', [
    claimed.map((c) => c.name),
    candidates.map((c) => c.name),
  ]);
  if (claimed.length > 0) {
    log.info({ files: claimed.map((c) => c.name) }, 'landing inbox: files taken');
    const loads = await startInboxLoads(services, claimed);
    const order = { departments: 0, jobs: 0, hired_employees: 1 } as const;
    result.started = [...loads].sort((a, b) => order[a.table_name] - order[b.table_name]).map((l) => l.id);
  }
  return result;
}

/**
 * Records this look at each candidate and answers the names an earlier look, at least `settleMs`
 * ago, found with the same size and etag (the local store's etag is made of inode, mtime and size).
 */
async function look(pool: Pool, files: readonly { name: string; size: number; etag: string }[], settleMs: number): Promise<Set<string>> {
  if (files.length === 0) return new Set();
  const { rows } = await pool.query<{ name: string; settled: boolean }>(
    `WITH seen AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]) AS s(name, size, etag)),
     up AS (
       INSERT INTO landing_looks (name, size, etag)
       SELECT name, size, etag FROM seen
       ON CONFLICT (name) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag, seen_at = now()
        WHERE landing_looks.size <> EXCLUDED.size OR landing_looks.etag <> EXCLUDED.etag
       RETURNING name)
     SELECT s.name, (l.name IS NOT NULL AND l.size = s.size AND l.etag = s.etag
                     AND l.seen_at <= now() - make_interval(secs => $4::double precision / 1000)) AS settled
       FROM seen s LEFT JOIN landing_looks l ON l.name = s.name`,
    [files.map((f) => f.name), files.map((f) => f.size), files.map((f) => f.etag), settleMs],
  );
  // The CTE's insert is not visible to the outer SELECT: a new or changed file reads the old row
  // (or none) and is not settled, as it should not be.
  return new Set(rows.filter((r) => r.settled).map((r) => r.name));
}

/** Moves a file whose name names no table to failed/<today>/ with the reason beside it. */
async function refuseName(store: Storage, key: string, name: string): Promise<boolean> {
  const target = await freeKey(store, `${FAILED}${utcDate(new Date())}/`, name, randomUUID().slice(0, 8));
  if (!(await moveIfThere(store, key, target))) return false;
  await store.put(
    `${target}.error.txt`,
    Buffer.from(
      `${name}: not loaded: the name names no table. A file dropped into landing/inbox/ must be named ` +
        `departments*.csv, jobs*.csv or hired_employees*.csv (any case); rename it and drop it again.\n`,
    ),
  );
  return true;
}

/**
 * processing/: files of ended loads move on; one without a load record, older than the grace
 * period, gets its load now; a name the inbox did not give goes back to the inbox.
 */
async function sweepProcessing(services: Services, store: Storage): Promise<string[]> {
  const { config, pool, log } = services;
  const files = await listFolder(store, PROCESSING);
  if (files.length === 0) return [];
  const parsed = files.map((f) => ({ ...f, claim: parseProcessing(f.key) }));
  const loads = new Map((await getLoads(pool, parsed.flatMap((p) => (p.claim ? [p.claim.loadId] : [])))).map((l) => [l.id, l]));
  const moved: string[] = [];
  const orphans: ClaimedFile[] = [];
  for (const f of parsed) {
    if (!f.claim) {
      if (!isIgnored(f.name)) await moveIfThere(store, f.key, `${INBOX}${f.name}`);
      continue;
    }
    const load = loads.get(f.claim.loadId);
    if (load) {
      if (isTerminal(load.status) && (await finishInboxLoad(services, load.id))) moved.push(f.claim.name);
      continue;
    }
    const table = tableOfName(f.claim.name);
    const changed = await stat(fileOfKey(config, f.key)).then((s) => s.ctimeMs, () => undefined);
    if (!table || changed === undefined || Date.now() - changed < ORPHAN_GRACE_MS) continue;
    orphans.push({ loadId: f.claim.loadId, table, key: f.key, bytes: f.size, name: f.claim.name });
  }
  for (const o of orphans) {
    try {
      await startInboxLoads(services, [o]);
      log.warn({ loadId: o.loadId, file: o.name }, 'landing inbox: a taken file had no load (its worker stopped); started it');
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') throw err; // another scan adopted it first
    }
  }
  return moved;
}

/**
 * Once an inbox load has ended: its file moves from processing/ to done/<UTC date>/ (with
 * `<name>.rejects.ndjson`, the lines of GET /loads/{id}/rejects, when it has rejects) or to
 * failed/<UTC date>/ (with `<name>.error.txt`), and the load's `file` follows it. Called by the
 * worker when a load job ends and by every scan (for loads ended some other way); one caller at
 * a time per load (an advisory lock), the others do nothing. True when this call moved it.
 * Every query inside goes through the one client: embedded PostgreSQL runs one transaction at a
 * time, so a query on another connection would wait for this one for ever.
 */
export async function finishInboxLoad(services: Pick<Services, 'config' | 'pool'>, loadId: string): Promise<boolean> {
  const { config, pool } = services;
  const store = inboxStorage(config);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ got: boolean }>('SELECT pg_try_advisory_xact_lock(hashtext($1)) AS got', [`landing:${loadId}`]);
    const load = rows[0]?.got ? await getLoad(client, loadId) : undefined;
    const key = load && keyOfLoadFile(config, load.file);
    if (!load || load.source !== 'inbox' || !isTerminal(load.status) || !key?.startsWith(PROCESSING) || !(await store.exists(key))) {
      await client.query('ROLLBACK');
      return false;
    }
    const name = load.source_name ?? parseProcessing(key)?.name ?? key.slice(PROCESSING.length);
    const ok = load.status === 'succeeded';
    const target = await freeKey(store, `${ok ? DONE : FAILED}${utcDate(load.finished_at ?? new Date())}/`, name, load.id.slice(0, 8));
    // Beside it first: once the file shows up in done/ or failed/, what goes with it is there.
    if (ok && load.rejected > 0) await store.put(`${target}.rejects.ndjson`, encode(rejectsOf(client, load.id)));
    if (!ok) await store.put(`${target}.error.txt`, Buffer.from(errorText(load)));
    await store.move(key, target);
    await client.query('UPDATE loads SET file = $2 WHERE id = $1', [load.id, fileOfKey(config, target)]);
    await client.query('COMMIT');
    return true;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

async function* encode(pages: AsyncIterable<string>): AsyncIterable<Uint8Array> {
  for await (const page of pages) yield Buffer.from(page, 'utf8');
}

function errorText(load: LoadRow): string {
  return (
    `${load.source_name ?? 'file'}: the ${load.table_name} load ${load.id} failed` +
    (load.finished_at ? ` at ${load.finished_at.toISOString()}` : '') +
    `:\n${load.error ?? 'no reason recorded'}\n` +
    `Rows read before it stopped: ${load.rows_read} (inserted ${load.inserted}, updated ${load.updated}, unchanged ${load.unchanged}, rejected ${load.rejected}).\n` +
    `Fix the file and drop it into landing/inbox/ again; GET /loads/${load.id} has the load.\n`
  );
}
