import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import avro from 'avsc';
import { expect, test } from 'vitest';
import { avroType, codecs, parseWriterSchema } from '../backup/avro.js';
import { isoToMicros, microsToIso } from '../pg/index.js';
import { AvroDeflateWriter } from '../backup/avro-writer.js';
import { TABLES } from '../core/tables.js';

/** The file format on its own, no database: many blocks, odd records, and the timestamp mapping. */

test('files of many blocks read back, in order, with avsc', async () => {
  const rows = Array.from({ length: 30_000 }, (_, i) => ({
    id: i + 1,
    name: i % 1000 === 0 ? 'x'.repeat(5000) : `Employee ${i} — ü`,
    datetime: (i - 15_000) * 86_400_000_123,
    department_id: 1 + (i % 7),
    job_id: 1 + (i % 11),
  }));
  const chunks: Buffer[] = [];
  const writer = new AvroDeflateWriter(avroType(TABLES.hired_employees), { blockSize: 4096, level: 1, metadata: { 'hr.table': Buffer.from('x') } });
  await pipeline(Readable.from(rows), writer, new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }));
  const back: Record<string, unknown>[] = [];
  let blocks = 0;
  const decoder = new avro.streams.BlockDecoder({ codecs, parseHook: (s: avro.Schema) => parseWriterSchema(s, true) });
  decoder.on('block', () => blocks++);
  await pipeline(Readable.from([Buffer.concat(chunks)]), decoder, new Writable({ objectMode: true, write: (r, _e, cb) => (back.push({ ...r }), cb()) }));
  expect(blocks).toBeGreaterThan(100);
  expect(back).toEqual(rows);
});

test('timestamps: microseconds to ISO and back, years 1 to 9999, before and after 1970', () => {
  for (const iso of ['0001-01-01T00:00:00.000000Z', '1969-12-31T23:59:59.999999Z', '1970-01-01T00:00:00.000000Z', '2000-02-29T12:34:56.000789Z', '9999-12-31T23:59:59.999999Z']) {
    expect(microsToIso(isoToMicros(iso))).toBe(iso);
  }
  for (let i = 0; i < 10_000; i++) {
    const ms = Math.floor((Math.random() - 0.5) * 2 * 8.64e12);
    expect(microsToIso(ms * 1000 + 456)).toBe(new Date(ms).toISOString().replace('Z', '456Z'));
  }
});
