import { copyFile, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { backupStorage, listBackups, readManifest, setDir, type BackupEntry, type Manifest } from '../backup/sets.js';
import { startBackupWorker } from '../backup/processor.js';
import { waitForJob } from '../jobs/index.js';
import { createTestServices, type TestServices } from './support/services.js';

let s: TestServices;
let stopWorker: () => Promise<void>;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  s = await createTestServices();
  stopWorker = await startBackupWorker(s);
  app = createApp(s);
  await seed();
});
afterAll(async () => {
  await stopWorker?.();
  await s?.cleanup();
});

async function seed(): Promise<void> {
  const post = (table: string, rows: unknown[]) =>
    app.request(`/ingest/${table}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rows) });
  expect((await post('departments', [1, 2, 3, 4, 5].map((id) => ({ id, department: `Department ${id}` })))).status).toBe(200);
  expect((await post('jobs', [1, 2, 3, 4].map((id) => ({ id, job: `Job ${id}` })))).status).toBe(200);
  // Awkward values: COPY escapes, non-ASCII, microseconds, the ends of the allowed years.
  const res = await post('hired_employees', [
    { id: 1, name: 'Tab\there', datetime: '2021-11-07T02:48:42.123456Z', department_id: 1, job_id: 1 },
    { id: 2, name: 'Back\\slash\nnewline', datetime: '2021-07-27 16:02:08+02:00', department_id: 2, job_id: 2 },
    { id: 3, name: 'Zoë Ünïcødé 名前', datetime: '1900-01-01T00:00:00.000001Z', department_id: 3, job_id: 3 },
    { id: 4, name: 'Last of time', datetime: '2100-12-31T23:59:59.999999Z', department_id: 4, job_id: 4 },
    { id: 5, name: 'Before 1970', datetime: '1969-12-31T23:59:59.5Z', department_id: 5, job_id: 1 },
  ]);
  expect(await res.json()).toMatchObject({ inserted: 5, rejected: 0 });
  await s.pool.query(
    `INSERT INTO hired_employees SELECT g, 'Employee ' || g, timestamptz '2021-01-01' + g * interval '1 hour 7 seconds', 1 + g % 5, 1 + g % 4
       FROM generate_series(6, 3000) g`,
  );
}

async function checksum(table: string): Promise<string> {
  const { rows } = await s.pool.query<{ sum: string }>(`SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS sum FROM ${table} t`);
  return rows[0]!.sum;
}

async function backup(tables?: string[]): Promise<BackupEntry[]> {
  const res = await app.request('/backups?wait=true', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(tables ? { tables } : {}),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as BackupEntry[];
}

async function restore(table: string, body: object = {}): Promise<Response> {
  return app.request(`/backups/${table}/restore`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function setManifest(id: string, edit: (m: Manifest) => void): Promise<void> {
  const m = await readManifest(await backupStorage(s.config), id);
  edit(m);
  await writeFile(path.join(setDir(s.config.dirs.backups, id), 'manifest.json'), JSON.stringify(m));
}

describe('backup and replace restore', () => {
  test('a set holds every table from one snapshot, and restore replace brings a table back exactly', async () => {
    const before = { he: await checksum('hired_employees'), d: await checksum('departments'), j: await checksum('jobs') };
    const entries = await backup();
    expect(entries.map((e) => e.table)).toEqual(['departments', 'jobs', 'hired_employees']);
    expect(new Set(entries.map((e) => e.id)).size).toBe(1);
    expect(entries.find((e) => e.table === 'hired_employees')).toMatchObject({ rows: 3000 });
    const id = entries[0]!.id;
    const m = await readManifest(await backupStorage(s.config), id);
    expect(m).toMatchObject({ id, schemaVersion: expect.any(Number), tables: expect.any(Array) });
    expect(m.tables[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);

    // Change things: delete 100, update 50, insert 10.
    await s.pool.query('DELETE FROM hired_employees WHERE id BETWEEN 101 AND 200');
    await s.pool.query(`UPDATE hired_employees SET name = name || ' (moved)', job_id = 4 WHERE id BETWEEN 1001 AND 1050`);
    await s.pool.query(`INSERT INTO hired_employees SELECT g, 'New ' || g, now(), 1, 1 FROM generate_series(5001, 5010) g`);
    expect(await checksum('hired_employees')).not.toBe(before.he);

    const res = await restore('hired_employees', { backup: id, mode: 'replace' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      table: 'hired_employees',
      backup: id,
      mode: 'replace',
      rows: 3000,
      inserted: 100,
      updated: 50,
      deleted: 10,
      unchanged: 2850,
    });
    expect(await checksum('hired_employees')).toBe(before.he);

    // Restoring again changes nothing; departments and jobs restore to themselves too.
    expect(await (await restore('hired_employees')).json()).toMatchObject({ inserted: 0, updated: 0, deleted: 0, unchanged: 3000 });
    for (const t of ['departments', 'jobs']) expect((await restore(t, { backup: id })).status).toBe(200);
    expect(await checksum('departments')).toBe(before.d);
    expect(await checksum('jobs')).toBe(before.j);
  });

  test('GET /backups lists newest first, by table; verify checks a set on its own', async () => {
    const older = await backup(['jobs']);
    const newer = await backup(['jobs', 'departments']);
    const all = (await (await app.request('/backups')).json()) as BackupEntry[];
    expect(all.map((e) => e.id)).toEqual([...all.map((e) => e.id)].sort().reverse());
    const jobs = (await (await app.request('/backups?table=jobs')).json()) as BackupEntry[];
    expect(jobs.every((e) => e.table === 'jobs')).toBe(true);
    expect(jobs.slice(0, 2).map((e) => e.id)).toEqual([newer[0]!.id, older[0]!.id]);

    const v = await app.request(`/backups/${newer[0]!.id}/verify`);
    expect(v.status).toBe(200);
    expect(await v.json()).toMatchObject({ ok: true, tables: [{ table: 'departments', ok: true }, { table: 'jobs', ok: true }] });
    expect((await app.request(`/backups/${newer[0]!.id}`)).status).toBe(200);
    expect((await app.request('/backups/20990101T000000000Z-abcdef/verify')).status).toBe(404);
  });
});

describe('merge restore', () => {
  test('upserts the backup rows and keeps the others', async () => {
    const [entry] = await backup(['jobs']);
    await s.pool.query(`UPDATE jobs SET job = 'Renamed' WHERE id = 2`);
    await s.pool.query(`INSERT INTO jobs VALUES (50, 'Kept')`);
    const res = await restore('jobs', { backup: entry!.id, mode: 'merge' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ mode: 'merge', inserted: 0, updated: 1, deleted: 0, unchanged: 3 });
    const { rows } = await s.pool.query('SELECT id, job FROM jobs ORDER BY id');
    expect(rows).toEqual([...[1, 2, 3, 4].map((id) => ({ id, job: `Job ${id}` })), { id: 50, job: 'Kept' }]);
    await s.pool.query('DELETE FROM jobs WHERE id = 50');
  });
});

describe('foreign keys', () => {
  test('replacing departments with a backup missing ids still in use answers 409 and changes nothing', async () => {
    const [entry] = await backup(['departments']);
    await s.pool.query(`INSERT INTO departments VALUES (6, 'Department 6'), (7, 'Department 7')`);
    await s.pool.query(`UPDATE hired_employees SET department_id = 6 + id % 2 WHERE id BETWEEN 2001 AND 2010`);
    const before = [await checksum('departments'), await checksum('hired_employees')];
    const res = await restore('departments', { backup: entry!.id });
    expect(res.status).toBe(409);
    const body = (await res.json()) as { error: { code: string; message: string; details: { rows: number; ids: number } } };
    expect(body.error.code).toBe('conflict');
    expect(body.error.details).toMatchObject({ rows: 10, ids: 2 });
    expect(body.error.message).toContain('10 hired_employees rows');
    expect([await checksum('departments'), await checksum('hired_employees')]).toEqual(before);
    // merge keeps 6 and 7, so it is fine.
    expect((await restore('departments', { backup: entry!.id, mode: 'merge' })).status).toBe(200);
  });

  test('restoring hired_employees that name departments gone since answers 409 and records the rejects', async () => {
    const [entry] = await backup(['hired_employees']);
    await s.pool.query('DELETE FROM hired_employees WHERE department_id IN (6, 7)');
    await s.pool.query('DELETE FROM departments WHERE id IN (6, 7)');
    const before = await checksum('hired_employees');
    const res = await restore('hired_employees', { backup: entry!.id });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { details: { rows: number } } }).error.details.rows).toBe(10);
    expect(await checksum('hired_employees')).toBe(before);
    const { rows } = await s.pool.query(`SELECT count(*)::int AS n FROM rejects WHERE source = 'restore' AND source_id = $1`, [entry!.id]);
    expect(rows[0].n).toBe(10);
  });
});

describe('the query, checked from the route declaration', () => {
  const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;
  const post = (query: string) =>
    app.request(`/backups${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tables: ['jobs'] }) });

  test('?wait=1 answers 200 with the files; ?wait=0 answers 202 with the job; ?wait=yes is a 400 naming wait', async () => {
    let res = await post('?wait=1');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject([{ table: 'jobs', rows: expect.any(Number) }]);

    res = await post('?wait=0');
    expect(res.status).toBe(202);
    const { jobId } = (await res.json()) as { jobId: string };
    expect(await waitForJob(s.queues.backups, jobId, 20_000)).toMatchObject({ state: 'completed' });

    res = await post('?wait=yes');
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toMatchObject({ code: 'bad_request', message: expect.stringMatching(/^wait: /) });
  });

  test('an unknown table in the path or the query is a 404 unknown_table', async () => {
    const [entry] = await backup(['jobs']);
    for (const res of [
      await restore('employees'),
      await app.request('/backups?table=employees'),
      await app.request(`/backups/${entry!.id}/verify?table=employees`),
    ]) {
      expect(res.status).toBe(404);
      expect(await errorOf(res)).toMatchObject({ code: 'unknown_table' });
    }
  });
});
