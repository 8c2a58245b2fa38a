import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { createPool, type Pool, type PoolClient } from '../core/db.js';
import { migrate } from '../core/migrate.js';
import { TABLES } from '../core/tables.js';
import {
  diffStatement,
  findMissingReferences,
  missingFlag,
  referenceChecks,
  referencesTo,
  unknownReference,
  upsertIfDifferent,
} from '../pg/index.js';
import { freshDatabase } from './support/services.js';

/**
 * The SQL pg/upsert.ts and pg/references.ts build, run on a real database: what is written, what
 * is not touched at all (same xmin), which references are missing, and what stays locked.
 */

const employees = TABLES.hired_employees;
const [department, job] = referenceChecks(employees);
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await freshDatabase();
  pool = createPool(db.url, 4);
  await migrate(pool);
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

beforeEach(async () => {
  await pool.query('TRUNCATE hired_employees, departments, jobs');
  await pool.query(`INSERT INTO departments VALUES (1, 'Sales'), (2, 'Legal'), (3, 'Ops')`);
  await pool.query(`INSERT INTO jobs VALUES (1, 'Clerk')`);
  await pool.query(`INSERT INTO hired_employees VALUES (1, 'Ann', '2021-01-01Z', 1, 1), (2, 'Bob', '2021-01-01Z', 1, 1)`);
});

async function withClient<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release(true);
  }
}

const xmins = async () =>
  Object.fromEntries((await pool.query<{ id: number; x: string }>('SELECT id, xmin::text AS x FROM hired_employees')).rows.map((r) => [r.id, r.x]));
const employeesNow = async () =>
  (await pool.query('SELECT id, name, department_id FROM hired_employees ORDER BY id')).rows;

describe('upsertIfDifferent', () => {
  for (const skipEqual of [false, true]) {
    test(`inserts new ids, updates changed rows, leaves identical ones unwritten (skipEqual ${skipEqual})`, async () => {
      const before = await xmins();
      const written = await withClient(async (c) => {
        await c.query('CREATE TEMP TABLE src (seq bigint GENERATED ALWAYS AS IDENTITY, id integer, name text, datetime timestamptz, department_id integer, job_id integer)');
        await c.query(`INSERT INTO src (id, name, datetime, department_id, job_id) VALUES
          (3, 'Cy', '2021-01-01Z', 2, 1), (1, 'Ann', '2021-01-01Z', 1, 1), (2, 'Bob', '2021-01-01Z', 2, 1)`);
        const sql = upsertIfDifferent(employees, { from: 'src', skipEqual });
        return (await c.query(`WITH up AS (${sql}) SELECT id, inserted FROM up ORDER BY id`)).rows;
      });
      expect(written).toEqual([
        { id: 2, inserted: false },
        { id: 3, inserted: true },
      ]);
      const after = await xmins();
      expect(after[1]).toBe(before[1]); // identical: not rewritten
      expect(after[2]).not.toBe(before[2]);
      expect(await employeesNow()).toEqual([
        { id: 1, name: 'Ann', department_id: 1 },
        { id: 2, name: 'Bob', department_id: 2 },
        { id: 3, name: 'Cy', department_id: 2 },
      ]);
    });
  }

  test('keeps the last row of an id (lastBy) and only rows passing `where`', async () => {
    const written = await withClient(async (c) => {
      await c.query('CREATE TEMP TABLE src (id integer, name text, datetime timestamptz, department_id integer, job_id integer, pos integer, ok boolean)');
      await c.query(`INSERT INTO src VALUES
        (2, 'Bob', '2021-01-01Z', 3, 1, 2, true), (2, 'Bo', '2021-01-01Z', 1, 1, 1, true),
        (4, 'Di', '2021-01-01Z', 1, 1, 3, false), (1, 'Ann', '2021-01-01Z', 1, 1, 4, true)`);
      const sql = upsertIfDifferent(employees, { from: 'src', where: 'ok', lastBy: 'pos' });
      return (await c.query(`WITH up AS (${sql}) SELECT id, inserted FROM up ORDER BY id`)).rows;
    });
    expect(written).toEqual([{ id: 2, inserted: false }]);
    expect(await employeesNow()).toEqual([
      { id: 1, name: 'Ann', department_id: 1 },
      { id: 2, name: 'Bob', department_id: 3 },
    ]);
  });
});

describe('diffStatement', () => {
  for (const mode of ['merge', 'replace'] as const) {
    test(`lists what differs (${mode}): new ids, changed rows${mode === 'replace' ? ', ids the stage lacks' : ''}; equal rows are left out`, async () => {
      const ops = await withClient(async (c) => {
        await c.query('BEGIN');
        await c.query('CREATE TEMP TABLE stage (id integer, name text, datetime timestamptz, department_id integer, job_id integer, pos bigint) ON COMMIT DROP');
        await c.query(`INSERT INTO stage VALUES (1, 'Ann', '2021-01-01Z', 2, 1, 0), (3, 'Cy', '2021-01-01Z', 1, 1, 1)`);
        await c.query(`INSERT INTO hired_employees VALUES (5, 'Eve', '2021-01-01Z', 1, 1)`);
        await c.query(`UPDATE hired_employees SET department_id = 2 WHERE id = 1`);
        await c.query(`INSERT INTO stage VALUES (5, 'Eve', '2021-01-01Z', 1, 1, 2)`);
        await c.query(diffStatement(employees, 'stage', 'diff', mode));
        const { rows } = await c.query('SELECT id, name, op FROM diff ORDER BY id');
        await c.query('ROLLBACK');
        return rows;
      });
      // 1 and 5 equal the table; 2 is only in the table; 3 only in the stage.
      expect(ops).toEqual([
        ...(mode === 'replace' ? [{ id: 2, name: null, op: 'd' }] : []),
        { id: 3, name: 'Cy', op: 'i' },
      ]);
    });
  }

  test('a changed row is an update carrying the staged values', async () => {
    const ops = await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query('CREATE TEMP TABLE stage (id integer, name text, datetime timestamptz, department_id integer, job_id integer, pos bigint) ON COMMIT DROP');
      await c.query(`INSERT INTO stage VALUES (2, 'Bobby', '2021-01-01Z', 1, 1, 0)`);
      await c.query(diffStatement(employees, 'stage', 'diff', 'merge'));
      const { rows } = await c.query('SELECT id, name, op FROM diff ORDER BY id');
      await c.query('ROLLBACK');
      return rows;
    });
    expect(ops).toEqual([{ id: 2, name: 'Bobby', op: 'u' }]);
  });
});

describe('reference checks', () => {
  test('come from the data dictionary, both ways', () => {
    expect(referenceChecks(employees).map((r) => [r.column, r.references, r.index])).toEqual([
      ['department_id', 'departments', 3],
      ['job_id', 'jobs', 4],
    ]);
    expect(referenceChecks(TABLES.departments)).toEqual([]);
    expect(referencesTo('jobs').map(({ child, check }) => [child.name, check.column])).toEqual([['hired_employees', 'job_id']]);
    expect(unknownReference(department!, 200)).toEqual({ field: 'department_id', message: 'unknown department_id 200' });
  });

  test('missingFlag marks rows naming an id that does not exist', async () => {
    const { rows } = await pool.query(
      `SELECT v.id, ${missingFlag(department!, 'v')}, ${missingFlag(job!, 'v')}
         FROM (VALUES (1, 1, 1), (2, 9, 1), (3, 3, 7)) v(id, department_id, job_id) ORDER BY v.id`,
    );
    expect(rows).toEqual([
      { id: 1, missing_department_id: false, missing_job_id: false },
      { id: 2, missing_department_id: true, missing_job_id: false },
      { id: 3, missing_department_id: false, missing_job_id: true },
    ]);
  });

  test('findMissingReferences returns the absent ids; with lock, the present ones cannot be deleted until commit', async () => {
    const blocked = async (id: number) => {
      try {
        await pool.query('SELECT 1 FROM departments WHERE id = $1 FOR UPDATE NOWAIT', [id]);
        return false;
      } catch (err) {
        if ((err as { code?: string }).code === '55P03') return true;
        throw err;
      }
    };
    await withClient(async (c) => {
      await c.query('BEGIN');
      expect(await findMissingReferences(c, department!, [2, 9, 1, 2, 9])).toEqual(new Set([9]));
      expect(await blocked(2)).toBe(false); // no lock asked for
      expect(await findMissingReferences(c, department!, [2, 9, 1, 2], { lock: true })).toEqual(new Set([9]));
      expect(await blocked(1)).toBe(true);
      expect(await blocked(2)).toBe(true);
      expect(await blocked(3)).toBe(false); // not named
      // FOR KEY SHARE, as a foreign key locks: the row can still be renamed, not deleted.
      await pool.query(`UPDATE departments SET department = 'Legal dept' WHERE id = 2`);
      await c.query('COMMIT');
    });
    expect(await blocked(2)).toBe(false);
    expect((await pool.query('SELECT department FROM departments WHERE id = 2')).rows[0]).toEqual({ department: 'Legal dept' });
  });
});
