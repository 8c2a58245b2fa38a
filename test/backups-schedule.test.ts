import { afterAll, beforeAll, expect, test } from 'vitest';
import { backupStorage, listIds, readManifest } from '../backup/sets.js';
import { startBackupWorker } from '../backup/processor.js';
import { createTestServices, type TestServices } from './support/services.js';

let s: TestServices;
let stopWorker: (() => Promise<void>) | undefined;

beforeAll(async () => {
  // Every second (six-field cron), keeping the newest two sets.
  s = await createTestServices({ BACKUP_CRON: '* * * * * *', BACKUP_KEEP: '2' });
  await s.pool.query(`INSERT INTO departments VALUES (1, 'Only')`);
});
afterAll(async () => {
  await stopWorker?.();
  await s?.cleanup();
});

test('BACKUP_CRON backs every table up on schedule and BACKUP_KEEP keeps the newest sets', async () => {
  stopWorker = await startBackupWorker(s);
  const deadline = Date.now() + 20_000;
  while ((await s.queues.backups.getCompletedCount()) < 3) {
    if (Date.now() > deadline) throw new Error('the schedule did not fire three times in 20 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  await stopWorker();
  stopWorker = undefined;
  const ids = await listIds(await backupStorage(s.config));
  expect(ids).toHaveLength(2);
  const m = await readManifest(await backupStorage(s.config), ids[0]!);
  expect(m.reason).toBe('schedule');
  expect(m.tables.map((t) => [t.table, t.rows])).toEqual([
    ['departments', 1],
    ['jobs', 0],
    ['hired_employees', 0],
  ]);
  // One schedule, however many workers start; a worker started without BACKUP_CRON removes it.
  expect(await s.queues.backups.getJobSchedulers()).toHaveLength(1);
  const stop = await startBackupWorker({ ...s, config: { ...s.config, BACKUP_CRON: undefined } });
  await stop();
  expect(await s.queues.backups.getJobSchedulers()).toHaveLength(0);
});
