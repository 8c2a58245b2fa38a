import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import avro from 'avsc';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { avroType } from '../backup/avro.js';
import { backupStorage, listIds, newBackupId, prune, readManifest, setDir, type BackupEntry, type Manifest } from '../backup/sets.js';
import { TABLES } from '../core/tables.js';
import { startBackupWorker } from '../backup/processor.js';
import { refreshWarehouse } from '../warehouse/refresh.js';
import { createTestServices, EMBEDDED, type TestServices } from './support/services.js';

/** Damaged, foreign and rule-breaking backup files, a crash half-way, and bad requests. */

let s: TestServices;
let stopWorker: () => Promise<void>;
let app: ReturnType<typeof createApp>;
let good: string;
/** The ordered md5 of hired_employees when `good` was taken. */
let goodSum: string;

beforeAll(async () => {
  // Low, so a 20,000-row restore takes the bulk path (indexes and foreign keys rebuilt).
  s = await createTestServices({ RESTORE_BULK_ROWS: '1000' });
  stopWorker = await startBackupWorker(s);
  app = createApp(s);
  await s.pool.query(`INSERT INTO departments SELECT g, 'Department ' || g FROM generate_series(1, 5) g`);
  await s.pool.query(`INSERT INTO jobs SELECT g, 'Job ' || g FROM generate_series(1, 5) g`);
  await s.pool.query(
    `INSERT INTO hired_employees SELECT g, 'Employee ' || g, timestamptz '2021-01-01' + g * interval '17 minutes', 1 + g % 5, 1 + g % 5
       FROM generate_series(1, 20000) g`,
  );
  good = (await backup())[0]!.id;
  goodSum = await checksum('hired_employees');
});
afterAll(async () => {
  await stopWorker?.();
  await s?.cleanup();
});

async function backup(): Promise<BackupEntry[]> {
  const res = await app.request('/backups?wait=true', { method: 'POST' });
  expect(res.status).toBe(200);
  return (await res.json()) as BackupEntry[];
}

const post = (url: string, body: unknown) =>
  app.request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function checksum(table: string): Promise<string> {
  const { rows } = await s.pool.query<{ sum: string }>(`SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS sum FROM ${table} t`);
  return rows[0]!.sum;
}

const fileOf = (id: string, table: string) => path.join(setDir(s.config.dirs.backups, id), `${table}.avro`);

/** Makes the manifest agree with whatever the file now holds, so only deeper checks can tell. */
async function blessFile(id: string, table: string, rows?: number): Promise<void> {
  const file = fileOf(id, table);
  const data = await readFile(file);
  const m = await readManifest(await backupStorage(s.config), id);
  const entry = m.tables.find((t) => t.table === table)!;
  entry.bytes = data.length;
  entry.sha256 = createHash('sha256').update(data).digest('hex');
  if (rows !== undefined) entry.rows = rows;
  await writeFile(path.join(setDir(s.config.dirs.backups, id), 'manifest.json'), JSON.stringify(m));
}

/** A fresh copy of the good set to damage. */
async function copyOfGood(): Promise<string> {
  const id = newBackupId();
  const from = setDir(s.config.dirs.backups, good);
  const to = setDir(s.config.dirs.backups, id);
  await mkdir(to);
  for (const f of await readdir(from)) await copyFile(path.join(from, f), path.join(to, f));
  const m = JSON.parse(await readFile(path.join(to, 'manifest.json'), 'utf8')) as Manifest;
  await writeFile(path.join(to, 'manifest.json'), JSON.stringify({ ...m, id }));
  return id;
}

async function expect422(id: string, table: string, problem: RegExp): Promise<void> {
  await s.pool.query(`UPDATE hired_employees SET name = 'changed' WHERE id = 7`);
  await s.pool.query(`UPDATE jobs SET job = 'changed' WHERE id = 2`);
  const before = await checksum(table);
  const res = await post(`/backups/${table}/restore`, { backup: id });
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(res.status, JSON.stringify(body)).toBe(422);
  expect(body.error.message).toMatch(problem);
  expect(await checksum(table)).toBe(before);
  const v = (await (await app.request(`/backups/${id}/verify?table=${table}`)).json()) as { ok: boolean; tables: { problem?: string }[] };
  expect(v.ok).toBe(false);
  expect(v.tables[0]!.problem).toMatch(problem);
}

describe('bulk restore', () => {
  test('into an emptied table: the exact rows back, and the same indexes and foreign keys', async () => {
    const shape = async () =>
      (
        await s.pool.query(
          `SELECT pg_get_indexdef(indexrelid) AS def FROM pg_index WHERE indrelid = 'hired_employees'::regclass
           UNION ALL SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'hired_employees'::regclass AND contype <> 'n'
           ORDER BY 1`,
        )
      ).rows;
    const before = { sum: await checksum('hired_employees'), shape: await shape() };
    expect(before.shape).toHaveLength(8); // 3 indexes; primary key, 2 checks, 2 foreign keys
    await s.pool.query('TRUNCATE hired_employees');
    const res = await post('/backups/hired_employees/restore', { backup: good });
    expect(await res.json()).toMatchObject({ inserted: 20000, updated: 0, deleted: 0 });
    expect(await checksum('hired_employees')).toBe(before.sum);
    expect(await shape()).toEqual(before.shape);
  });
});

describe('damaged files answer 422 and change nothing', () => {
  test('a flipped byte', async () => {
    const id = await copyOfGood();
    const file = fileOf(id, 'hired_employees');
    const data = await readFile(file);
    data[Math.floor(data.length / 2)]! ^= 0xff;
    await writeFile(file, data);
    await expect422(id, 'hired_employees', /SHA-256|corrupt/);
    // Even with a manifest that agrees, the blocks themselves are checked.
    await blessFile(id, 'hired_employees');
    await expect422(id, 'hired_employees', /corrupt/);
  });

  test('a truncated file', async () => {
    const id = await copyOfGood();
    const file = fileOf(id, 'hired_employees');
    await truncate(file, Math.floor((await stat(file)).size / 2));
    await expect422(id, 'hired_employees', /truncated/);
    await blessFile(id, 'hired_employees');
    await expect422(id, 'hired_employees', /records, the manifest says 20000/);
  });

  test("another table's file", async () => {
    const id = await copyOfGood();
    await copyFile(fileOf(id, 'departments'), fileOf(id, 'jobs'));
    await blessFile(id, 'jobs');
    await expect422(id, 'jobs', /holds hr\.backup\.departments records, not hr\.backup\.jobs/);
  });

  test('a missing file', async () => {
    const id = await copyOfGood();
    await truncate(fileOf(id, 'jobs'), 0);
    await expect422(id, 'jobs', /bytes, the manifest says/);
  });
});

describe('rows that break the data rules', () => {
  test('refuse the restore with 422, and are kept as rejects', async () => {
    // A hand-made backup, as another tool (or a bug) might write it.
    const id = newBackupId();
    const dir = setDir(s.config.dirs.backups, id);
    await mkdir(dir);
    const rows = [
      { id: 1, department: 'Fine' },
      { id: 2, department: '   ' },
      { id: 0, department: 'Zero' },
    ];
    const encoder = new avro.streams.BlockEncoder(avroType(TABLES.departments) as unknown as avro.Schema, { codec: 'deflate' });
    await pipeline(Readable.from(rows), encoder, createWriteStream(path.join(dir, 'departments.avro')));
    await writeFile(
      path.join(dir, 'manifest.json'),
      JSON.stringify({ format: 1, id, snapshotAt: new Date().toISOString(), finishedAt: new Date().toISOString(), schemaVersion: 1, reason: 'test', tables: [{ table: 'departments', file: 'departments.avro', rows: 3, bytes: 0, sha256: '', codec: 'deflate' }] }),
    );
    await blessFile(id, 'departments');
    const before = await checksum('departments');
    const res = await post('/backups/departments/restore', { backup: id, mode: 'merge' });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: { details: { rejected: number; rejects: { position: number }[] } } };
    expect(body.error.details.rejected).toBe(2);
    expect(body.error.details.rejects.map((r) => r.position)).toEqual([1, 2]);
    expect(await checksum('departments')).toBe(before);
    const stored = await s.pool.query(`SELECT position, errors FROM rejects WHERE source = 'restore' AND source_id = $1 ORDER BY position`, [id]);
    expect(stored.rows).toEqual([
      { position: 1, errors: [{ field: 'department', message: 'must not be empty' }] },
      { position: 2, errors: [{ field: 'id', message: 'must be in 1..2147483647' }] },
    ]);
  });
});

// A second process backs up the suite's database: the embedded PostgreSQL belongs to this process.
describe.skipIf(EMBEDDED)('a crash during a backup', () => {
  test('leaves no file that looks finished, and nothing listed', async () => {
    const listed = await listIds(await backupStorage(s.config));
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/crash-backup.ts'], {
      env: { ...process.env, DATABASE_URL: s.config.DATABASE_URL, REDIS_URL: s.config.REDIS_URL, DATA_DIR: s.config.DATA_DIR, LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('READY') && resolve());
      child.on('exit', (code) => reject(new Error(`crash-backup exited early with ${code}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    const names = await readdir(s.config.dirs.backups);
    const partial = names.filter((n) => n.endsWith('.partial'));
    expect(partial).toHaveLength(1);
    const inside = await readdir(path.join(s.config.dirs.backups, partial[0]!));
    expect(inside.length).toBeGreaterThan(0);
    expect(inside.every((f) => f.endsWith('.part'))).toBe(true);
    expect(await listIds(await backupStorage(s.config))).toEqual(listed);

    // The dot-folder of a crashed run goes once it is a day old.
    await prune(await backupStorage(s.config), 0, Date.now() + 25 * 3600_000, s.config.dirs.backups);
    expect((await readdir(s.config.dirs.backups)).filter((n) => n.endsWith('.partial'))).toEqual([]);
  });
});

describe('bad requests', () => {
  test('unknown table or backup 404, bad body 400', async () => {
    expect((await post('/backups/nope/restore', {})).status).toBe(404);
    expect((await post('/backups/jobs/restore', { backup: '../../etc' })).status).toBe(404);
    expect((await post('/backups/jobs/restore', { backup: '20000101T000000000Z-abcdef' })).status).toBe(404);
    expect((await post('/backups/jobs/restore', { mode: 'sideways' })).status).toBe(400);
    expect((await post('/backups?wait=true', { tables: ['nope'] })).status).toBe(400);
    // A table named in a path or query that does not exist is a 404, on every route (api/params.ts).
    expect((await app.request('/backups?table=nope')).status).toBe(404);
    expect((await app.request('/backups/nope')).status).toBe(404);
    const doc = (await (await app.request('/openapi.json')).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/backups', '/backups/{id}', '/backups/{id}/verify', '/backups/{table}/restore']),
    );
  });
});

describe('restore into an empty table (rows copied straight in)', () => {
  /** A hand-made hired_employees backup, as another tool (or a bug) might write it; 1,500 fine rows follow `first`, so the restore is bulk-sized. */
  async function handMade(first: object[]): Promise<string> {
    const rows = [...first, ...Array.from({ length: 1500 }, (_, i) => row(10_000 + i, `Filler ${i}`))];
    const id = newBackupId();
    const dir = setDir(s.config.dirs.backups, id);
    await mkdir(dir);
    const encoder = new avro.streams.BlockEncoder(avroType(TABLES.hired_employees) as unknown as avro.Schema, { codec: 'deflate' });
    await pipeline(Readable.from(rows), encoder, createWriteStream(path.join(dir, 'hired_employees.avro')));
    await writeFile(
      path.join(dir, 'manifest.json'),
      JSON.stringify({ format: 1, id, snapshotAt: new Date().toISOString(), finishedAt: new Date().toISOString(), schemaVersion: 1, reason: 'test', tables: [{ table: 'hired_employees', file: 'hired_employees.avro', rows: rows.length, bytes: 0, sha256: '', codec: 'deflate' }] }),
    );
    await blessFile(id, 'hired_employees');
    return id;
  }
  const row = (id: number, name: string, department_id = 1) => ({ id, name, datetime: '2021-03-04T05:06:07.123456Z', department_id, job_id: 2 });
  const indexes = async () =>
    (await s.pool.query(`SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'hired_employees'::regclass`)).rows[0]!.n as number;

  test('ids out of order or repeated: the later row wins, names are trimmed, the warehouse sees the insert', async () => {
    const id = await handMade([row(3, 'Third'), row(1, '  One  '), row(2, 'Two'), row(1, 'One again ')]);
    await s.pool.query('TRUNCATE hired_employees');
    await s.pool.query('DELETE FROM warehouse_changes');
    const res = await post('/backups/hired_employees/restore', { backup: id });
    expect(await res.json()).toMatchObject({ rows: 1504, inserted: 1503, updated: 0, deleted: 0, unchanged: 0 });
    const { rows } = await s.pool.query(`SELECT id, name FROM hired_employees WHERE id < 10 ORDER BY id`);
    expect(rows).toEqual([{ id: 1, name: 'One again' }, { id: 2, name: 'Two' }, { id: 3, name: 'Third' }]);
    const changes = await s.pool.query(`SELECT lo, hi FROM warehouse_changes WHERE table_name = 'hired_employees' ORDER BY lo`);
    expect(changes.rows).toEqual([{ lo: 1, hi: 3 }, { lo: 10_000, hi: 11_499 }]);
    expect(await indexes()).toBe(3);
  });

  test('in id order the rows go straight in: one whole-table change for the warehouse, its trigger back on after', async () => {
    await refreshWarehouse(s);
    await s.pool.query('DELETE FROM hired_employees');
    await s.pool.query('DELETE FROM warehouse_changes');
    const res = await post('/backups/hired_employees/restore', { backup: good });
    expect(await res.json()).toMatchObject({ rows: 20000, inserted: 20000, updated: 0, deleted: 0, unchanged: 0 });
    expect(await checksum('hired_employees')).toBe(goodSum);
    expect(await indexes()).toBe(3);
    // One row for the whole table, as TRUNCATE logs, instead of 20,000 rows held for the insert trigger.
    const changes = await s.pool.query(`SELECT lo, hi FROM warehouse_changes WHERE table_name = 'hired_employees'`);
    expect(changes.rows).toEqual([{ lo: null, hi: null }]);
    const trigger = await s.pool.query(`SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'hired_employees'::regclass AND tgname = 'warehouse_ins'`);
    expect(trigger.rows).toEqual([{ tgenabled: 'A' }]);
    // The warehouse takes the table whole again and holds exactly its rows.
    const r = await refreshWarehouse(s);
    expect(r.exported).toContainEqual(expect.objectContaining({ table: 'hired_employees', kind: 'base', rows: 20000 }));
    // And writes after the restore are captured as before.
    await s.pool.query(`UPDATE hired_employees SET name = 'Changed' WHERE id = 7`);
    const after = await s.pool.query(`SELECT lo, hi FROM warehouse_changes WHERE table_name = 'hired_employees'`);
    expect(after.rows).toEqual([{ lo: 7, hi: 7 }]);
    await s.pool.query(`UPDATE hired_employees SET name = 'Employee 7' WHERE id = 7`);
  });

  test('the foreign keys stay in place and valid, and still refuse a row naming a missing department', async () => {
    await s.pool.query('DELETE FROM hired_employees');
    const keys = () =>
      s.pool.query(`SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'hired_employees'::regclass AND contype = 'f' ORDER BY conname`);
    const before = (await keys()).rows;
    expect(before).toHaveLength(2);
    const res = await post('/backups/hired_employees/restore', { backup: good });
    expect(await res.json()).toMatchObject({ inserted: 20000, updated: 0, deleted: 0, unchanged: 0 });
    expect((await keys()).rows).toEqual(before.map((k) => ({ ...k, convalidated: true })));
    const err = await s.pool.query(`INSERT INTO hired_employees VALUES (9999999, 'Nobody', now(), 999, 1)`).catch((e: { code?: string }) => e);
    expect((err as { code?: string }).code).toBe('23503');
  });

  test('a department that does not exist answers 409, keeps the rejects, and leaves the table empty', async () => {
    const id = await handMade([row(1, 'A'), row(2, 'B', 99), row(5, 'C'), row(7, 'D', 98)]);
    await s.pool.query('TRUNCATE hired_employees');
    const res = await post('/backups/hired_employees/restore', { backup: id });
    expect(res.status).toBe(409);
    const body = (await res.json()) as { error: { details: { rows: number; rejects: { position: number }[] } } };
    expect(body.error.details.rows).toBe(2);
    expect(body.error.details.rejects.map((r) => r.position)).toEqual([1, 3]);
    expect((await s.pool.query(`SELECT count(*)::int AS n FROM hired_employees`)).rows[0]!.n).toBe(0);
    expect(await indexes()).toBe(3);
    const stored = await s.pool.query(`SELECT position FROM rejects WHERE source = 'restore' AND source_id = $1 ORDER BY position`, [id]);
    expect(stored.rows.map((r) => Number(r.position))).toEqual([1, 3]);
  });

  test('a rule breaker answers 422 and a damaged file 422, the table stays empty', async () => {
    const bad = await handMade([row(1, 'A'), row(2, ' ')]);
    await s.pool.query('TRUNCATE hired_employees');
    const res = await post('/backups/hired_employees/restore', { backup: bad });
    expect(res.status).toBe(422);
    const damaged = await copyOfGood();
    const file = fileOf(damaged, 'hired_employees');
    const data = await readFile(file);
    data[Math.floor(data.length / 2)]! ^= 0xff;
    await writeFile(file, data);
    expect((await post('/backups/hired_employees/restore', { backup: damaged })).status).toBe(422);
    expect((await s.pool.query(`SELECT count(*)::int AS n FROM hired_employees`)).rows[0]!.n).toBe(0);
    expect(await indexes()).toBe(3);
    // And the good set still restores.
    const ok = await post('/backups/hired_employees/restore', { backup: good });
    expect(await ok.json()).toMatchObject({ inserted: 20000, updated: 0, deleted: 0, unchanged: 0 });
  });
});
