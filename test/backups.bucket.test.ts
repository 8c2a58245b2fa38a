import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { startBackupWorker } from '../backup/processor.js';
import { backupStorage, listIds, partialKey, type BackupEntry } from '../backup/sets.js';
import { closeStorageFor, type Storage } from '../storage/index.js';
import { startTestBucket, type TestBucket } from './support/s3.js';
import { createTestServices, EMBEDDED, type TestServices } from './support/services.js';

/**
 * The core backup cases once more with STORAGE_URL on a bucket (s3rver on 127.0.0.1): sets are
 * written as multipart uploads, listed, verified and restored streaming from the bucket, and
 * nothing lands in DATA_DIR.
 */

let bucket: TestBucket;
let s: TestServices;
let store: Storage;
let stopWorker: () => Promise<void>;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  bucket = await startTestBucket();
  s = await createTestServices({ ...bucket.env('suite-backups'), BACKUP_KEEP: '3', RESTORE_BULK_ROWS: '1000' });
  store = await backupStorage(s.config);
  stopWorker = await startBackupWorker(s);
  app = createApp(s);
  await s.pool.query(`INSERT INTO departments SELECT g, 'Department ' || g FROM generate_series(1, 5) g`);
  await s.pool.query(`INSERT INTO jobs SELECT g, 'Job ' || g FROM generate_series(1, 4) g`);
  await s.pool.query(
    `INSERT INTO hired_employees SELECT g, 'Employee ' || g || ' Zoë', timestamptz '2021-01-01' + g * interval '1 hour 7.000123 seconds', 1 + g % 5, 1 + g % 4
       FROM generate_series(1, 5000) g`,
  );
}, 60_000);
afterAll(async () => {
  await stopWorker?.();
  if (s) await closeStorageFor(s.config);
  await s?.cleanup();
  await bucket?.stop();
});

const post = (url: string, body: unknown) =>
  app.request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function backup(tables?: string[]): Promise<BackupEntry[]> {
  const res = await post('/backups?wait=true', tables ? { tables } : {});
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as BackupEntry[];
}

async function checksum(table: string): Promise<string> {
  const { rows } = await s.pool.query<{ sum: string }>(`SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS sum FROM ${table} t`);
  return rows[0]!.sum;
}

async function keys(prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list('backups/')) if (o.key.startsWith(prefix)) out.push(o.key);
  return out;
}

describe.skipIf(EMBEDDED)('backups in a bucket', () => {
  test('a set goes to the bucket (nothing in DATA_DIR); replace and merge restores stream from it', async () => {
    const before = await checksum('hired_employees');
    const entries = await backup();
    const id = entries[0]!.id;
    expect(entries.map((e) => e.file)).toEqual(['departments', 'jobs', 'hired_employees'].map((t) => `backups/${id}/${t}.avro`));
    expect((await keys(`backups/${id}/`)).sort()).toEqual(
      [...entries.map((e) => e.file), `backups/${id}/manifest.json`].sort(),
    );
    expect(await keys('backups/.')).toEqual([]); // no partial objects left
    expect(await readdir(s.config.DATA_DIR)).not.toContain('backups');

    await s.pool.query('DELETE FROM hired_employees WHERE id BETWEEN 101 AND 200');
    await s.pool.query(`UPDATE hired_employees SET name = 'moved' WHERE id BETWEEN 1001 AND 1050`);
    const res = await post('/backups/hired_employees/restore', { backup: id });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ rows: 5000, inserted: 100, updated: 50, deleted: 0, unchanged: 4850 });
    expect(await checksum('hired_employees')).toBe(before);

    // Into an empty table (the direct, bulk path), and a merge.
    await s.pool.query('TRUNCATE hired_employees');
    expect(await (await post('/backups/hired_employees/restore', {})).json()).toMatchObject({ inserted: 5000 });
    expect(await checksum('hired_employees')).toBe(before);
    await s.pool.query(`UPDATE jobs SET job = 'Renamed' WHERE id = 2`);
    expect(await (await post('/backups/jobs/restore', { mode: 'merge' })).json()).toMatchObject({ updated: 1, unchanged: 3 });
  });

  test('list, manifest and verify read the bucket; a damaged or missing object answers 422 naming its key', async () => {
    const [entry] = await backup(['jobs']);
    const id = entry!.id;
    const listed = (await (await app.request('/backups?table=jobs')).json()) as BackupEntry[];
    expect(listed[0]).toMatchObject({ id, file: `backups/${id}/jobs.avro`, rows: 4 });
    expect(await (await app.request(`/backups/${id}`)).json()).toMatchObject({ id, tables: [{ table: 'jobs', rows: 4 }] });
    expect(await (await app.request(`/backups/${id}/verify`)).json()).toMatchObject({ ok: true });

    // Same length, one byte changed: only the checksum can tell.
    const bytes: Buffer[] = [];
    for await (const c of await store.get(entry!.file)) bytes.push(c as Buffer);
    const data = Buffer.concat(bytes);
    data[data.length - 20] = data[data.length - 20]! ^ 0xff;
    await store.put(entry!.file, data);
    const before = await checksum('jobs');
    const res = await post('/backups/jobs/restore', { backup: id });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(new RegExp(`backups/${id}/jobs\\.avro is unusable`));
    expect(await checksum('jobs')).toBe(before);

    await store.delete(entry!.file);
    const v = (await (await app.request(`/backups/${id}/verify`)).json()) as { ok: boolean; tables: { problem?: string }[] };
    expect(v).toMatchObject({ ok: false, tables: [{ problem: 'the file is missing' }] });
    expect((await post('/backups/jobs/restore', { backup: id })).status).toBe(422);
  });

  test('an unfinished set is never listed and is pruned after a day; BACKUP_KEEP keeps the newest sets', async () => {
    const id = '20200101T000000000Z-abcdef';
    await store.put(partialKey(id, 'jobs.avro'), Buffer.from('half a file'));
    expect(await listIds(store)).not.toContain(id);
    for (let i = 0; i < 3; i++) await backup(['departments']);
    const ids = await listIds(store);
    expect(ids).toHaveLength(3); // BACKUP_KEEP=3: the older sets' objects are gone
    expect(new Set((await keys('backups/')).filter((k) => !k.startsWith('backups/.')).map((k) => k.split('/')[1])).size).toBe(3);
    // The partial object is recent: kept until it is a day old.
    expect(await keys('backups/.')).toHaveLength(1);
    const { prune } = await import('../backup/sets.js');
    await prune(store, 0, Date.now() + 25 * 3600_000);
    expect(await keys('backups/.')).toEqual([]);
    expect(await listIds(store)).toEqual(ids);
  });
});
