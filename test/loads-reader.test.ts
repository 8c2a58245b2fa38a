import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { TABLES } from '../core/tables.js';
import { ChunkReader, type Chunk } from '../loads/reader.js';

/** The reader alone: chunk boundaries, physical lines and resuming from a checkpoint. */
let dir: string;
let file: string;
const csv =
  '\uFEFFid,job\r\n' + // 1
  '1,"Clerk\r\nII"\r\n' + // 2-3
  '\r\n\r\n' + // 4-5
  '2,Cook\r\n' + // 6
  'x,Bad\r\n' + // 7
  '3,"Say ""hi""",extra\r\n' + // 8
  '4,"Multi\nline\nname"\n' + // 9-11
  '\n' + // 12
  '5,Last'; // 13

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'loads-reader-'));
  file = path.join(dir, 'jobs.csv');
  await writeFile(file, csv);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function readAll(from = 0, line = 1, chunkRows = 2): Promise<Chunk[]> {
  const r = await ChunkReader.open(file, TABLES.jobs, from, line, chunkRows);
  const out: Chunk[] = [];
  try {
    for (;;) {
      const c = await r.next();
      out.push(c);
      if (c.final) return out;
    }
  } finally {
    await r.close();
  }
}

test('records, rejects and line numbers, across chunks', async () => {
  const chunks = await readAll();
  expect(chunks.map((c) => c.rowsRead)).toEqual([2, 2, 2, 0]);
  expect(chunks.flatMap((c) => c.ids)).toEqual([1, 2, 4, 5]);
  expect(chunks.flatMap((c) => c.rejects.map((r) => [r.position, r.raw]))).toEqual([
    [7, 'x,Bad'],
    [8, '3,"Say ""hi""",extra'],
  ]);
  expect(chunks.map((c) => c.startLine)).toEqual([1, 7, 9, 13]);
  const copy = Buffer.concat(chunks.map((c) => c.copy)).toString();
  expect(copy).toBe('1\tClerk\\r\\nII\n2\tCook\n4\tMulti\\nline\\nname\n5\tLast\n');
});

test('resuming at any checkpoint gives the same records and lines as reading through', async () => {
  const summary = (cs: Chunk[]) => ({
    rows: cs.reduce((n, c) => n + c.rowsRead, 0),
    ids: cs.flatMap((c) => c.ids),
    rejects: cs.flatMap((c) => c.rejects.map((r) => [r.position, r.raw])),
  });
  const whole = summary(await readAll(0, 1, 1000));
  const single = await readAll(0, 1, 1);
  expect(single.length).toBeGreaterThan(5);
  for (let k = 0; k < single.length - 1; k++) {
    const cut = single[k]!;
    const resumed = summary([...single.slice(0, k + 1), ...(await readAll(cut.endOffset, cut.endLine, 1000))]);
    expect(resumed).toEqual(whole);
  }
});
