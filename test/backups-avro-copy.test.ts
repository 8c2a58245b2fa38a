import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import avro from 'avsc';
import { expect, test } from 'vitest';
import type { Reject } from '../pg/rejects.js';
import { avroType, codecs, parseWriterSchema } from '../backup/avro.js';
import { BinaryCopyWriter, isoToMicros } from '../pg/index.js';
import { AvroDeflateWriter, CopyToAvroWriter } from '../backup/avro-writer.js';
import { avroReading } from '../backup/read.js';
import { AvroToCopy, ValidateToCopy } from '../backup/avro-to-copy.js';
import { TABLES } from '../core/tables.js';

/**
 * The restore's Avro-bytes-to-COPY reader against the reference: avsc's BlockDecoder feeding
 * records to ValidateToCopy (RowBatch for every row). Same COPY bytes, same rejects, whatever the
 * values and however the file is cut into chunks.
 */

const table = TABLES.hired_employees;
const odd = [
  { id: 1, name: 'José Müller', datetime: '2021-01-01T00:00:00.000000Z', department_id: 1, job_id: 1 },
  { id: 2, name: '  padded  ', datetime: '0001-01-01T00:00:00.000000Z', department_id: 1, job_id: 1 },
  { id: 3, name: 'a', datetime: '9999-12-31T23:59:59.999999Z', department_id: 2147483647, job_id: 1 },
  { id: 4, name: 'tab\tinside', datetime: -1, department_id: 1, job_id: 1 },
  { id: 5, name: '', datetime: 0, department_id: 1, job_id: 1 },
  { id: 6, name: 'nul\u0000inside', datetime: 0, department_id: 1, job_id: 1 },
  { id: 7, name: 'year 10000', datetime: 253_402_300_800_000_000n, department_id: 1, job_id: 1 },
  { id: 8, name: 'before year 1', datetime: -62_135_596_800_000_001n, department_id: 1, job_id: 1 },
  { id: 9, name: 'zero department', datetime: 1, department_id: 0, job_id: 1 },
  { id: 0, name: 'zero id', datetime: 1, department_id: 1, job_id: -5 },
  { id: 10, name: '\u00a0nbsp\u00a0', datetime: isoToMicros('1600-06-01T00:00:00.5Z'), department_id: 1, job_id: 1 },
  { id: 11, name: 'x'.repeat(70_000), datetime: isoToMicros('2300-06-01T00:00:00.5Z'), department_id: 1, job_id: 1 },
  { id: 11, name: 'emoji 😀', datetime: 2 ** 53 - 1, department_id: 3, job_id: 4 },
  { id: 12, name: 'end ', datetime: -(2 ** 53) + 1, department_id: 3, job_id: 4 },
  { id: 13, name: '\u2028', datetime: 5, department_id: 3, job_id: 4 },
  // The edges of the rules: the first and last instants of 1900..2100, fields at the limit a
  // restore holds them to (the largest FIELD_MAX_BYTES allowed), astral-plane text.
  { id: 14, name: 'first instant', datetime: isoToMicros('1900-01-01T00:00:00.000000Z'), department_id: 1, job_id: 1 },
  { id: 15, name: 'just before', datetime: (isoToMicros('1900-01-01T00:00:00.000000Z') as number) - 1, department_id: 1, job_id: 1 },
  { id: 16, name: 'last instant', datetime: isoToMicros('2100-12-31T23:59:59.999999Z'), department_id: 1, job_id: 1 },
  { id: 17, name: 'just after', datetime: isoToMicros('2101-01-01T00:00:00.000000Z'), department_id: 1, job_id: 1 },
  { id: 18, name: 'z'.repeat(256 * 1024), datetime: 7, department_id: 1, job_id: 1 },
  { id: 19, name: 'z'.repeat(256 * 1024 + 1), datetime: 7, department_id: 1, job_id: 1 },
  { id: 20, name: '😀'.repeat(10) + ' 𝒜', datetime: 7, department_id: 1, job_id: 1 },
  { id: 14, name: 'the same id again', datetime: 8, department_id: 1, job_id: 1 },
];
const rows = [
  ...odd,
  ...Array.from({ length: 20_000 }, (_, i) => ({
    id: 100 + i,
    name: `Employee ${i} ${'y'.repeat(i % 37)}`,
    datetime: (i - 10_000) * 86_400_000_123,
    department_id: 1 + (i % 12),
    job_id: 1 + (i % 183),
  })),
];

async function file(codec: 'deflate' | 'null'): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) });
  if (codec === 'deflate') {
    const writer = new AvroDeflateWriter(avroType(table), { blockSize: 4096, level: 1, metadata: {} });
    await pipeline(Readable.from(rows), writer, sink);
  } else {
    const encoder = new avro.streams.BlockEncoder(avroType(table) as unknown as avro.Schema, { codec: 'null', blockSize: 3000 });
    await pipeline(Readable.from(rows), encoder, sink);
  }
  return Buffer.concat(chunks);
}

async function run(bytes: Buffer, cut: number[], make: (onReject: (r: Reject) => void) => Transform[]) {
  const rejects: Reject[] = [];
  const out: Buffer[] = [];
  const pieces: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = cut[i % cut.length]!;
    pieces.push(bytes.subarray(at, at + n));
    at += n;
  }
  const stages = make((r) => rejects.push(r));
  await pipeline(Readable.from(pieces), ...(stages as [Transform]), new Writable({ write: (c: Buffer, _e, cb) => (out.push(Buffer.from(c)), cb()) }));
  return { copy: Buffer.concat(out), rejects, last: stages.at(-1) as ValidateToCopy };
}

const reference = (bytes: Buffer, withPosition: boolean) =>
  run(bytes, [1 << 20], (onReject) => [
    new avro.streams.BlockDecoder({ codecs, parseHook: (s: avro.Schema) => parseWriterSchema(s, true) }) as unknown as Transform,
    new ValidateToCopy(table, onReject, { withPosition }),
  ]);

for (const codec of ['deflate', 'null'] as const) {
  test(`${codec} files: the same COPY rows and rejects as RowBatch on decoded records`, async () => {
    const bytes = await file(codec);
    for (const withPosition of [true, false]) {
      const want = await reference(bytes, withPosition);
      expect(want.rejects.map((r) => r.position)).toEqual([1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 18, 20]);
      for (const cut of [[bytes.length], [256 * 1024], [1, 7, 4093], [65_537]]) {
        const got = await run(bytes, cut, (onReject) => [new AvroToCopy(table, onReject, { ...avroReading(table), withPosition })]);
        expect(got.rejects).toEqual(want.rejects);
        expect(got.copy.equals(want.copy)).toBe(true);
        expect([got.last.valid, got.last.rejected, got.last.records, got.last.ascending]).toEqual([
          want.last.valid,
          want.last.rejected,
          want.last.records,
          false,
        ]);
      }
    }
  });
}

test("another table's file, a bad sync marker: the problem is named", async () => {
  const dept = Buffer.concat(
    await (async () => {
      const chunks: Buffer[] = [];
      const enc = new avro.streams.BlockEncoder(avroType(TABLES.departments) as unknown as avro.Schema, { codec: 'deflate' });
      await pipeline(Readable.from([{ id: 1, department: 'x' }]), enc, new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }));
      return chunks;
    })(),
  );
  const other = new AvroToCopy(table, () => {}, avroReading(table));
  await expect(run(dept, [dept.length], () => [other])).rejects.toThrow();
  expect(other.problem).toMatch(/holds hr\.backup\.departments records, not hr\.backup\.hired_employees/);

  const bytes = await file('null');
  const damaged = Buffer.from(bytes);
  damaged[damaged.length - 3]! ^= 0xff; // in the last sync marker
  const bad = new AvroToCopy(table, () => {}, avroReading(table));
  await expect(run(damaged, [damaged.length], () => [bad])).rejects.toThrow();
  expect(bad.problem).toBe('invalid sync marker');
});

/** Every record of an Avro file, as avsc decodes it (timestamps as raw microseconds). */
async function records(bytes: Buffer): Promise<{ blocks: number; recs: Record<string, unknown>[] }> {
  const recs: Record<string, unknown>[] = [];
  let blocks = 0;
  const decoder = new avro.streams.BlockDecoder({ codecs, parseHook: (s: avro.Schema) => parseWriterSchema(s, true) });
  decoder.on('block', () => blocks++);
  await pipeline(Readable.from([bytes]), decoder, new Writable({ objectMode: true, write: (r, _e, cb) => (recs.push({ ...r }), cb()) }));
  return { blocks, recs };
}

test('a backup encodes COPY rows straight to Avro: the records avsc writes, however the COPY stream is cut', async () => {
  // The COPY rows PostgreSQL would send for `rows` (hired_employees' columns, timestamps as microseconds).
  const types = table.columns.map((c) => c.pgType);
  const copyChunks: Buffer[] = [];
  const w = new BinaryCopyWriter((c) => copyChunks.push(Buffer.from(c)), 1000);
  const asMicros = rows.map((r) => ({ ...r, datetime: typeof r.datetime === 'string' ? isoToMicros(r.datetime) : r.datetime }));
  for (const r of asMicros) w.row(types, [r.id, r.name, r.datetime, r.department_id, r.job_id]);
  w.end();
  const copy = Buffer.concat(copyChunks);
  const reference = await records(await file('deflate'));
  expect(reference.recs).toHaveLength(rows.length);
  for (const cut of [[copy.length], [1, 5, 333], [7, 4096, 3], [65_536]]) {
    const pieces: Buffer[] = [];
    for (let at = 0, i = 0; at < copy.length; i++) {
      const n = cut[i % cut.length]!;
      pieces.push(copy.subarray(at, at + n));
      at += n;
    }
    const out: Buffer[] = [];
    const writer = new CopyToAvroWriter(table, avroType(table), { blockSize: 4096, level: 1, metadata: { 'hr.table': Buffer.from('x') } });
    await pipeline(Readable.from(pieces), writer, new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
    expect(writer.rows).toBe(rows.length);
    const ours = await records(Buffer.concat(out));
    expect(ours.blocks).toBeGreaterThan(100);
    expect(ours.recs).toEqual(reference.recs);
  }
  // A COPY stream cut short, or with a NULL, fails the backup.
  const short = new CopyToAvroWriter(table, avroType(table), { blockSize: 4096, level: 1, metadata: {} });
  await expect(pipeline(Readable.from([copy.subarray(0, copy.length - 2)]), short, new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow(
    /ended before its trailer/,
  );
  const nulls: Buffer[] = [];
  const wn = new BinaryCopyWriter((c) => nulls.push(Buffer.from(c)));
  wn.row(types, [1, null, 5, 1, 1]);
  wn.end();
  const withNull = new CopyToAvroWriter(table, avroType(table), { blockSize: 4096, level: 1, metadata: {} });
  await expect(pipeline(Readable.from([Buffer.concat(nulls)]), withNull, new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow(/name is NULL/);
});
