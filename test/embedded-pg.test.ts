import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BLOB_BYTES, blobCopyStats } from '../pg/blob-copy.js';
import { copyIn, isEmbeddedPostgres } from '../pg/copy-in.js';
import { createPool, type Pool } from '../core/db.js';
import { EmbeddedPostgresLockedError, startEmbeddedPostgres, type EmbeddedPostgres } from '../pg/embedded.js';
import { TABLES } from '../core/tables.js';

/** The embedded PostgreSQL itself: what `npm start` uses without DATABASE_URL. */
let dir: string;
let pg: EmbeddedPostgres;
let pool: Pool;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'hrtest-pglite-'));
  pg = await startEmbeddedPostgres({ dataDir: path.join(dir, 'postgres') });
  pool = createPool(pg.url, 8);
});
afterAll(async () => {
  await pool?.end();
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('concurrent transactions and parameterized queries on several connections each get their own answers', async () => {
  await pool.query('CREATE TABLE t (id integer PRIMARY KEY, v text)');
  let wrong = 0;
  const writer = async (k: number) => {
    for (let j = 0; j < 60; j++) {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        await c.query('INSERT INTO t VALUES ($1, $2)', [k * 1000 + j, `v${j}`]);
        const { rows } = await c.query<{ v: string }>('SELECT v FROM t WHERE id = $1', [k * 1000 + j]);
        if (rows[0]?.v !== `v${j}`) wrong++;
        await c.query('COMMIT');
      } finally {
        c.release();
      }
    }
  };
  const reader = async () => {
    for (let i = 0; i < 200; i++) {
      const { rows } = await pool.query<{ n: number; s: string }>('SELECT $1::int + 1 AS n, $2::text AS s', [i, `x${i}`]);
      if (rows[0]?.n !== i + 1 || rows[0]?.s !== `x${i}`) wrong++;
    }
  };
  await Promise.all([writer(1), writer(2), writer(3), reader(), reader(), reader()]);
  expect(wrong).toBe(0);
  expect((await pool.query('SELECT count(*)::int AS n FROM t')).rows[0].n).toBe(180);
});

describe('copyIn without COPY FROM STDIN', () => {
  const he = TABLES.hired_employees;
  beforeAll(async () => {
    await pool.query(`CREATE TABLE he (id integer PRIMARY KEY, name text, datetime timestamptz, department_id integer, job_id integer)`);
  });

  test('reads COPY text, escapes and NULLs included', async () => {
    const c = await pool.connect();
    try {
      expect(await isEmbeddedPostgres(c)).toBe(true);
      const sink = await copyIn(c, 'he', he.columns);
      const lines = ['1\tTab\\there\t2021-11-07T02:48:42.123456Z\t1\t2\n', '2\tBack\\\\slash\\nnewline\t\\N\t3\t4\n'];
      // Split mid-line: a row may arrive in two writes.
      await pipeline(Readable.from([Buffer.from(lines[0]!.slice(0, 7)), Buffer.from(lines[0]!.slice(7) + lines[1])]), sink);
      const { rows } = await c.query(`SELECT id, name, to_char(datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS dt FROM he ORDER BY id`);
      expect(rows).toEqual([
        { id: 1, name: 'Tab\there', dt: '2021-11-07 02:48:42.123456' },
        { id: 2, name: 'Back\\slash\nnewline', dt: null },
      ]);
    } finally {
      c.release();
    }
  });

  test('reads COPY binary as the server writes it, to the microsecond at both ends of time', async () => {
    await pool.query(`CREATE TABLE he_src (LIKE he)`);
    await pool.query(
      `INSERT INTO he_src VALUES (10, 'Zoë 名前', '0001-01-01T00:00:00.000001Z', 1, 1), (11, 'Last', '9999-12-31T23:59:59.999999Z', 2, 2),
                                 (12, 'Before 1970', '1969-12-31T23:59:59.5Z', 3, 3)`,
    );
    const { to } = await import('pg-copy-streams');
    const src = await pool.connect();
    const dst = await pool.connect();
    try {
      const out = src.query(to('COPY (SELECT id, name, datetime, department_id, job_id FROM he_src ORDER BY id) TO STDOUT (FORMAT binary)'));
      await pipeline(out, await copyIn(dst, 'he', he.columns, 'binary'));
    } finally {
      src.release();
      dst.release();
    }
    const sum = (t: string) => pool.query(`SELECT md5(string_agg(x::text, ',' ORDER BY id)) AS m FROM ${t} x WHERE id >= 10`).then((r) => r.rows[0].m);
    expect(await sum('he')).toBe(await sum('he_src'));
  });

  test('a duplicate key fails with the same SQLSTATE a COPY would give', async () => {
    const c = await pool.connect();
    try {
      const err = await pipeline(Readable.from(['1\tAgain\t\\N\t1\t1\n']), await copyIn(c, 'he', he.columns)).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('23505');
    } finally {
      c.release();
    }
  });
});

test('a second process cannot open the same folder, and the data outlives a restart', async () => {
  await pool.query('CREATE TABLE kept (v text)');
  await pool.query(`INSERT INTO kept VALUES ('still here')`);
  // The folder is ours while we run: a second opener is refused (the pid file names this process).
  await expect(startEmbeddedPostgres({ dataDir: path.join(dir, 'postgres') })).rejects.toBeInstanceOf(EmbeddedPostgresLockedError);
  await pool.end();
  await pg.stop();
  pg = await startEmbeddedPostgres({ dataDir: path.join(dir, 'postgres') });
  pool = createPool(pg.url, 2);
  expect((await pool.query('SELECT v FROM kept')).rows).toEqual([{ v: 'still here' }]);
});

describe('COPY text through the blob of the PGlite in this process', () => {
  const he = TABLES.hired_employees;
  beforeAll(async () => {
    await pool.query(`CREATE TABLE hb (id integer PRIMARY KEY, name text, datetime timestamptz, department_id integer, job_id integer)`);
  });

  test('inside a transaction: escapes, NULLs, split rows and pieces past BLOB_BYTES, rolled back with the transaction', async () => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      const before = blobCopyStats.statements;
      const sink = await copyIn(c, 'hb', he.columns);
      // More than two pieces: the rows must be cut at line ends, never inside one.
      const n = Math.ceil((2.5 * BLOB_BYTES) / 60);
      const lines = ['1\tTab\\there\t2021-11-07T02:48:42.123456Z\t1\t2\n', '2\tBack\\\\slash\\nnewline\t\\N\t3\t4\n'];
      for (let i = 3; i <= n; i++) lines.push(`${i}\tName number ${i} padded to some length\t2021-01-01T00:00:00Z\t${i % 7}\t${i % 11}\n`);
      const text = Buffer.from(lines.join(''));
      // Writes of odd sizes: a row may arrive in two writes.
      const parts: Buffer[] = [];
      for (let at = 0; at < text.length; at += 1_000_003) parts.push(text.subarray(at, at + 1_000_003));
      await pipeline(Readable.from(parts), sink);
      expect(blobCopyStats.statements - before).toBeGreaterThanOrEqual(3);
      const { rows } = await c.query(
        `SELECT id, name, to_char(datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS dt FROM hb WHERE id <= 2 ORDER BY id`,
      );
      expect(rows).toEqual([
        { id: 1, name: 'Tab\there', dt: '2021-11-07 02:48:42.123456' },
        { id: 2, name: 'Back\\slash\nnewline', dt: null },
      ]);
      expect((await c.query('SELECT count(*)::int AS n, max(id) AS m FROM hb')).rows[0]).toEqual({ n, m: n });
      await c.query('ROLLBACK');
      expect((await c.query('SELECT count(*)::int AS n FROM hb')).rows[0].n).toBe(0);
    } finally {
      c.release();
    }
  });

  test('other connections wait for the transaction and never run inside it', async () => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      const sink = await copyIn(c, 'hb', he.columns);
      // Another connection writes while the COPY runs; it must not land in (and roll back with) this transaction.
      const other = pool.query(`INSERT INTO hb VALUES (900, 'Other', NULL, 1, 1)`);
      await pipeline(Readable.from(['100\tMine\t\\N\t1\t1\n']), sink);
      await c.query('ROLLBACK');
      await other;
      expect((await pool.query('SELECT id FROM hb ORDER BY id')).rows).toEqual([{ id: 900 }]);
    } finally {
      c.release();
      await pool.query('DELETE FROM hb');
    }
  });

  test('a duplicate key fails with 23505 and the transaction goes on after a savepoint', async () => {
    const c = await pool.connect();
    try {
      await c.query(`INSERT INTO hb VALUES (1, 'First', NULL, 1, 1)`);
      await c.query('BEGIN');
      await c.query('SAVEPOINT s');
      const err = await pipeline(Readable.from(['2\tNew\t\\N\t1\t1\n1\tAgain\t\\N\t1\t1\n']), await copyIn(c, 'hb', he.columns)).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('23505');
      await c.query('ROLLBACK TO SAVEPOINT s');
      await pipeline(Readable.from(['3\tThird\t\\N\t1\t1\n']), await copyIn(c, 'hb', he.columns));
      await c.query('COMMIT');
      expect((await c.query('SELECT id, name FROM hb ORDER BY id')).rows).toEqual([
        { id: 1, name: 'First' },
        { id: 3, name: 'Third' },
      ]);
    } finally {
      c.release();
      await pool.query('DELETE FROM hb');
    }
  });

  test('outside a transaction the batched inserts are used, with the same result', async () => {
    const c = await pool.connect();
    try {
      const before = blobCopyStats.statements;
      await pipeline(Readable.from(['5\tFive\t2021-01-01T00:00:00Z\t1\t1\n']), await copyIn(c, 'hb', he.columns));
      expect(blobCopyStats.statements).toBe(before);
      expect((await c.query('SELECT id, name FROM hb')).rows).toEqual([{ id: 5, name: 'Five' }]);
    } finally {
      c.release();
      await pool.query('DELETE FROM hb');
    }
  });
});
