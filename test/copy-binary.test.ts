import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BinaryCopyReader, BinaryCopyWriter, microsToIso, type CopyType, type CopyValue } from '../pg/index.js';
import { freshDatabase } from './support/services.js';

/**
 * The binary COPY codec (pg/copy-binary.ts) on its own: rows written and read back whatever the
 * chunking, and both directions against a real PostgreSQL.
 */

const TYPES: CopyType[] = ['integer', 'text', 'timestamptz', 'bigint'];
const MIN_SAFE = Number.MIN_SAFE_INTEGER;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** 2000-01-01 in Unix microseconds (PostgreSQL's epoch). */
const PG_EPOCH = BigInt(Date.UTC(2000, 0, 1)) * 1000n;
/** Where the reader's timestamp fast path ends: ±(2^53 - 2^50) microseconds from 2000-01-01. */
const EDGE = 2n ** 53n - 2n ** 50n;

/** As the reader gives it back: a number when safe, else a bigint. */
const exact = (v: CopyValue): CopyValue => (typeof v === 'bigint' && v >= BigInt(MIN_SAFE) && v <= BigInt(MAX_SAFE) ? Number(v) : v);
const us = (iso: string): bigint => BigInt(Date.parse(iso)) * 1000n;

const ROWS: CopyValue[][] = [
  [1, 'plain', 0, 0],
  [-2147483648, '', -1, -(2n ** 63n)],
  [2147483647, 'Zoë 名前 😀 \u2028\u00a0', 1, 2n ** 63n - 1n],
  [3, 'x'.repeat(70_000), MIN_SAFE, MAX_SAFE],
  [4, 'ü'.repeat(30_000), MAX_SAFE, MIN_SAFE],
  [5, 'tab\tnew\nline\\ "q" \u0001', BigInt(MAX_SAFE) + 1n, 2n ** 53n],
  [6, '😀', BigInt(MIN_SAFE) - 1n, 5n], // 5n comes back as 5
  [7, 'year 1', us('0001-01-01T00:00:00Z'), -1],
  [8, 'year 9999', us('9999-12-31T23:59:59Z') + 999_999n, 1],
  [9, 'fast path edges', PG_EPOCH + EDGE - 1n, Number(PG_EPOCH)],
  [10, 'fast path edges', PG_EPOCH + EDGE, 2 ** 21 * 2 ** 32 - 1],
  [11, 'fast path edges', PG_EPOCH - EDGE + 1n, -(2 ** 21 * 2 ** 32) + 1],
  [12, 'fast path edges', PG_EPOCH - EDGE, -(2n ** 53n)],
  [17, 'fast path edges', PG_EPOCH - EDGE + 2n ** 32n, 0],
  [13, 'safe after the shift only', BigInt(MIN_SAFE) + PG_EPOCH, 0],
  [14, 'PostgreSQL min', us('-004713-11-24T00:00:00Z'), 0],
  // 294276-12-31T23:59:59.999999Z, past what a JS Date holds: one microsecond before PostgreSQL's END_TIMESTAMP.
  [15, 'PostgreSQL max', 9_223_371_331_200_000_000n - 1n + PG_EPOCH, 0],
  [16, null, null, null],
  ...Array.from({ length: 500 }, (_, i): CopyValue[] => [100 + i, `row ${i} ${'y'.repeat(i % 97)}`, (i - 250) * 30_000_000_000_001, i * 2 ** 40]),
];
const EXPECTED = ROWS.map((r) => r.map(exact));

function write(rows: CopyValue[][], chunkBytes?: number): Buffer[] {
  const out: Buffer[] = [];
  const w = new BinaryCopyWriter((c) => out.push(c), chunkBytes);
  for (const r of rows) w.row(TYPES, r);
  w.end();
  return out;
}

function cut(bytes: Buffer, sizes: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    pieces.push(bytes.subarray(at, at + n));
    at += n;
  }
  return pieces;
}

function read(pieces: Buffer[], types = TYPES): { rows: CopyValue[][]; reader: BinaryCopyReader } {
  const reader = new BinaryCopyReader(types, { nulls: true });
  const rows: CopyValue[][] = [];
  for (const p of pieces) reader.read(p, (values) => rows.push([...values]));
  reader.end();
  return { rows, reader };
}

test('rows come back exactly, however the bytes are cut', () => {
  const bytes = Buffer.concat(write(ROWS));
  // A small chunk size makes the writer emit often and grow for rows larger than a chunk.
  expect(Buffer.concat(write(ROWS, 64)).equals(bytes)).toBe(true);
  let seed = 7;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % 300;
  const cuts = [[bytes.length], [1], [2], [3], [7], [19], [20], [4093], [65_536], Array.from({ length: 1000 }, () => random())];
  for (const sizes of cuts) {
    const { rows, reader } = read(cut(bytes, sizes));
    expect(rows).toEqual(EXPECTED);
    expect([reader.rows, reader.ended]).toEqual([ROWS.length, true]);
  }
});

test('broken data is refused, naming the problem', () => {
  const bytes = Buffer.concat(write(ROWS.slice(0, 3)));
  expect(() => read([bytes.subarray(0, bytes.length - 5)])).toThrow('COPY data ended in the middle of a row');
  expect(() => read([bytes.subarray(0, 10)])).toThrow('COPY data ended before its header');
  expect(() => read([Buffer.concat([bytes, Buffer.from([0])])])).toThrow('data after the end of the COPY data');
  expect(() => read([Buffer.from(bytes).fill(0x41, 0, 6)])).toThrow('not a binary COPY stream');
  expect(() => read([bytes], ['integer', 'text', 'timestamptz'])).toThrow('COPY row 1 has 4 fields, expected 3');
  expect(() => read([bytes], ['integer', 'text', 'integer', 'bigint'])).toThrow('COPY row 1: a integer field of 8 bytes');
  const noNulls = new BinaryCopyReader(TYPES, { names: ['id', 'name', 'at', 'n'] });
  expect(() => noNulls.read(Buffer.concat(write([[1, null, 0, 0]])), () => {})).toThrow('COPY row 1: name is NULL');
  // Without the trailer the rows are all there (PostgreSQL takes that too); `ended` tells.
  const { rows, reader } = read([bytes.subarray(0, bytes.length - 2)]);
  expect([rows.length, reader.ended]).toEqual([3, false]);
  expect(() => write([[1.5, 'x', 0, 0]])).toThrow(RangeError);
  expect(() => write([[1, 'x', 0.5, 0]])).toThrow(RangeError);
  expect(() => write([[1, 'x', 0, 2 ** 60]])).toThrow(RangeError);
  expect(() => write([[1, 5, 0, 0]])).toThrow(TypeError);
  expect(() => write([[1, 'x', '2020-01-01', 0]])).toThrow(TypeError);
});

describe('against PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let client: pg.Client;
  const TABLE = '(i integer, s text, ts timestamptz, b bigint)';
  /** Each row as PostgreSQL sees it: exact microseconds, the bigint, and the UTC time as `microsToIso` would write it. */
  const seen = (t: string) =>
    client
      .query<{ i: number; s: string | null; us: string | null; b: string | null; iso: string | null }>(
        `SELECT i, s, b::text AS b,
                -- Days and time of day, since extract(epoch) overflows int64 near the end of time.
                ((u::date - date '1970-01-01')::numeric * 86400000000 + extract(epoch FROM u::time) * 1000000)::numeric(40, 0)::text AS us,
                to_char(u, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS iso
           FROM (SELECT *, ts AT TIME ZONE 'UTC' AS u FROM ${t}) x ORDER BY i`,
      )
      .then((r) => r.rows);
  const copyOut = async (sql: string): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    await pipeline(client.query(copyTo(sql)), new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }));
    return Buffer.concat(chunks);
  };

  beforeAll(async () => {
    db = await freshDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  test("COPY FROM STDIN takes the writer's bytes: every value lands exactly", async () => {
    await client.query(`CREATE TABLE w ${TABLE}`);
    await pipeline(Readable.from(write(ROWS, 4096)), client.query(copyFrom('COPY w FROM STDIN (FORMAT binary)')));
    const rows = await seen('w');
    const sent = [...ROWS].sort((a, b) => (a[0] as number) - (b[0] as number));
    expect(rows.map((r) => [r.i, r.s, r.us, r.b])).toEqual(sent.map(([i, s, t, b]) => [i, s, t === null ? null : String(t), b === null ? null : String(b)]));
    // The epoch shift, seen from the other side: PostgreSQL's own UTC rendering of years 1..9999.
    let checked = 0;
    for (const [k, r] of rows.entries()) {
      const t = sent[k]![2] as number | bigint | null;
      if (t !== null && t >= us('0001-01-01T00:00:00Z') && t < us('+010000-01-01T00:00:00Z')) {
        expect(r.iso).toBe(microsToIso(t));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(500);
  });

  test('COPY TO STDOUT is read exactly, and written back unchanged', async () => {
    await client.query(`CREATE TABLE r ${TABLE}`);
    await client.query(
      `INSERT INTO r VALUES
         (1, '', '0001-01-01 00:00:00.000001+00', 0), (2, 'Zoë 名前 😀', '9999-12-31 23:59:59.999999+00', -9223372036854775808),
         (3, NULL, NULL, NULL), (4, 'min', '4714-11-24 00:00:00+00 BC', 9223372036854775807),
         (5, 'max', '294276-12-31 23:59:59.999999+00', 1), (6, 'before 1970', '1969-12-31 23:59:59.999999+00', -1),
         (7, 'before 1685', '1600-02-29 12:00:00.000001+00', 2), (8, 'after 2255', '2300-06-01 00:00:00.5+00', 3)`,
    );
    await client.query(
      `INSERT INTO r SELECT 100 + g, repeat('é', g % 50), timestamptz '1500-01-01' + g * interval '200 days 7 hours 3.000017 seconds', g * 123456789012
         FROM generate_series(1, 5000) g`,
    );
    const bytes = await copyOut('COPY (SELECT * FROM r ORDER BY i) TO STDOUT (FORMAT binary)');
    const want = (await seen('r')).map((r) => [r.i, r.s, r.us, r.b]);
    for (const sizes of [[bytes.length], [1, 2, 3, 5, 8, 13], [65_536]]) {
      const { rows } = read(cut(bytes, sizes));
      expect(rows.map(([i, s, t, b]) => [i, s, t === null ? null : String(t), b === null ? null : String(b)])).toEqual(want);
    }
    // Infinite timestamps too go through unchanged: PostgreSQL -> reader -> writer -> PostgreSQL.
    await client.query(`INSERT INTO r VALUES (9, 'infinity', 'infinity', 4), (10, '-infinity', '-infinity', 5)`);
    await client.query(`CREATE TABLE back ${TABLE}`);
    const all = read(cut(await copyOut('COPY (SELECT * FROM r ORDER BY i) TO STDOUT (FORMAT binary)'), [1000])).rows;
    await pipeline(Readable.from(write(all)), client.query(copyFrom('COPY back FROM STDIN (FORMAT binary)')));
    const sum = (t: string) => client.query(`SELECT count(*)::int AS n, md5(string_agg(x::text, ',' ORDER BY i)) AS m FROM ${t} x`).then((r) => r.rows[0]);
    expect(await sum('back')).toEqual(await sum('r'));
    expect((await sum('back')).n).toBe(5010);
  });
});
