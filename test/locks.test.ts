import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { restoreTable } from '../backup/restore.js';
import { refreshWarehouse } from '../warehouse/index.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * Item 3 of issue 11: a restore meeting a running load that updates rows, another restore of the
 * same table, or a warehouse refresh. Before, the first ended in a PostgreSQL deadlock whose victim
 * was the restore (500 job_failed). Now every writer takes the table lock first and restores take
 * theirs in one order with a lock timeout: no deadlock, and what a client sees is the restore's
 * result or 409 `busy` with Retry-After.
 */

let s: TestServices;
let workers: Workers;
let app: ReturnType<typeof createApp>;
const ROWS = 60_000;

beforeAll(async () => {
  s = await createTestServices({
    LOAD_CHUNK_ROWS: '1500',
    LOAD_BACKOFF_MS: '100',
    // Small enough that a restore after a few chunks takes the bulk path (drop and rebuild
    // indexes under ACCESS EXCLUSIVE), the lock upgrade that deadlocked.
    RESTORE_BULK_ROWS: '1000',
    RESTORE_LOCK_TIMEOUT_MS: '4000',
    WAREHOUSE_CHECK_MS: '0',
  });
  workers = await startWorkers(s);
  app = createApp(s);
  await s.pool.query(`INSERT INTO departments SELECT i, 'Dept ' || i FROM generate_series(1, 5) i`);
  await s.pool.query(`INSERT INTO jobs SELECT i, 'Job ' || i FROM generate_series(1, 4) i`);
  await s.pool.query(
    `INSERT INTO hired_employees SELECT g, 'Employee ' || g, timestamptz '2021-01-01' + g * interval '7 minutes', 1 + g % 5, 1 + g % 4
       FROM generate_series(1, $1) g`,
    [ROWS],
  );
}, 120_000);
afterAll(async () => {
  await workers?.close();
  await s?.cleanup();
});

async function digest(table = 'hired_employees'): Promise<string> {
  const { rows } = await s.pool.query<{ d: string }>(`SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id)) AS d FROM ${table} t`);
  return rows[0]!.d;
}

async function backup(): Promise<string> {
  const res = await app.request('/backups?wait=true', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tables: ['hired_employees'] }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { id: string }[])[0]!.id;
}

async function restore(body: object): Promise<Response> {
  return await app.request('/backups/hired_employees/restore', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/** A restore's answer: its result, or 409 busy with Retry-After; never a 500. */
async function expectRestoreAnswer(res: Response): Promise<'restored' | 'busy'> {
  const body = (await res.json()) as { error?: { code: string } };
  if (res.status === 200) return 'restored';
  expect(res.status, JSON.stringify(body)).toBe(409);
  expect(body.error?.code).toBe('busy');
  expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
  return 'busy';
}

async function loadRow(id: string): Promise<{ status: string; rows_read: number; error: string | null }> {
  const { rows } = await s.pool.query('SELECT status, rows_read, error FROM loads WHERE id = $1', [id]);
  return rows[0];
}

describe('locks', () => {
  test('a restore during a load that updates rows: no deadlock reaches the client, data ends consistent', async () => {
    const id = await backup();
    const before = await digest();
    // The file changes every row: each chunk of the load updates 1500 rows in its own transaction.
    const csv = Array.from({ length: ROWS }, (_, i) => `${i + 1},Updated ${i + 1},2021-06-01T00:00:00Z,${1 + ((i + 3) % 5)},${1 + ((i + 2) % 4)}`).join('\n') + '\n';
    const res = await app.request('/loads?table=hired_employees', { method: 'POST', headers: { 'content-type': 'text/csv' }, body: csv });
    expect(res.status).toBe(202);
    const loadId = ((await res.json()) as { id: string }).id;
    // A few chunks in: the restore then has thousands of rows to bring back (its bulk path).
    for (let i = 0; i < 600; i++) {
      const l = await loadRow(loadId);
      if (l.rows_read >= 6_000 || l.status !== 'queued' && l.status !== 'running') break;
      await sleep(50);
    }
    const answer = await expectRestoreAnswer(await restore({ backup: id }));
    for (let i = 0; i < 1200; i++) {
      const l = await loadRow(loadId);
      if (l.status === 'succeeded' || l.status === 'failed') break;
      await sleep(100);
    }
    const load = await loadRow(loadId);
    expect(load.status, load.error ?? '').toBe('succeeded');
    expect(load.rows_read).toBe(ROWS);
    // Every row is the backup's or the load's, whole: nothing half-written, no row lost.
    const { rows } = await s.pool.query<{ n: number; mixed: number }>(
      `SELECT count(*)::int AS n,
              count(*) FILTER (WHERE NOT (name = 'Updated ' || id AND datetime = '2021-06-01T00:00:00Z')
                                 AND NOT (name = 'Employee ' || id AND datetime = timestamptz '2021-01-01' + id * interval '7 minutes'))::int AS mixed
         FROM hired_employees`,
    );
    expect(rows[0]).toEqual({ n: ROWS, mixed: 0 });
    // The restore job never failed on a deadlock (a busy answer is a clean refusal, not a failure).
    expect(await s.queues.backups.getFailedCount()).toBe(answer === 'busy' ? 1 : 0);
    // And the table comes back exactly once nothing else runs.
    expect(await expectRestoreAnswer(await restore({ backup: id }))).toBe('restored');
    expect(await digest()).toBe(before);
  }, 300_000);

  test('two restores of one table at once: both finish, the table is exactly one of the backups', async () => {
    const a = await backup();
    const digestA = await digest();
    await s.pool.query(`UPDATE hired_employees SET name = 'Renamed ' || id WHERE id % 3 = 0`);
    await s.pool.query(`DELETE FROM hired_employees WHERE id > $1`, [ROWS - 5_000]);
    const b = await backup();
    const digestB = await digest();
    await s.pool.query(`UPDATE hired_employees SET name = 'Third ' || id WHERE id % 2 = 0`);
    // Straight through restoreTable, as two worker processes would run them (one process runs one at a time).
    const results = await Promise.allSettled([
      restoreTable(s, { table: 'hired_employees', backup: a, mode: 'replace' }),
      restoreTable(s, { table: 'hired_employees', backup: b, mode: 'replace' }),
    ]);
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ status: 409, code: 'busy' });
    }
    expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
    expect([digestA, digestB]).toContain(await digest());
    // Over HTTP too: two at once answer 200 or 409 busy, never 500.
    const answers = await Promise.all([restore({ backup: a }), restore({ backup: b })]);
    for (const res of answers) await expectRestoreAnswer(res);
    expect([digestA, digestB]).toContain(await digest());
  }, 300_000);

  test('a restore during a warehouse refresh: both finish, the warehouse then matches PostgreSQL', async () => {
    const id = await backup();
    const before = await digest();
    await s.pool.query(`UPDATE hired_employees SET name = 'Before refresh ' || id WHERE id % 2 = 1`);
    const refreshing = refreshWarehouse(s);
    const restoring = restoreTable(s, { table: 'hired_employees', backup: id, mode: 'replace' });
    const [refreshed, restored] = await Promise.allSettled([refreshing, restoring]);
    expect(refreshed.status, String((refreshed as PromiseRejectedResult).reason)).toBe('fulfilled');
    if (restored.status === 'rejected') expect(restored.reason).toMatchObject({ status: 409, code: 'busy' });
    else expect(await digest()).toBe(before);
    // The next refresh takes what the restore changed.
    await refreshWarehouse(s);
    const { rows } = await s.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM warehouse_changes');
    expect(rows[0]!.n).toBe(0);
    const res = await app.request('/analytics/hires-by-quarter?year=2021');
    expect(res.status).toBe(200);
  }, 300_000);
});
