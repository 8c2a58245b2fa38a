import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { rng } from '../loads/sample.js';
import { postJson } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

let s: TestServices;
let app: ReturnType<typeof createApp>;
const logLines: { msg: string; code?: string }[] = [];

beforeAll(async () => {
  s = await createTestServices();
  // The service's log, kept: a batch retried after a deadlock says so there.
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line) logLines.push(JSON.parse(line) as { msg: string });
      done();
    },
  });
  app = createApp({ ...s, log: pino({ level: 'warn' }, sink) });
  const depts = [1, 2, 3].map((id) => ({ id, department: `Dept ${id}` }));
  const jobs = [1, 2, 3].map((id) => ({ id, job: `Job ${id}` }));
  expect((await postJson(app, '/ingest/departments', depts)).status).toBe(200);
  expect((await postJson(app, '/ingest/jobs', jobs)).status).toBe(200);
});
afterAll(() => s.cleanup());

const CLIENTS = 8;
const SIZE = 400;
const STEP = 100; // each batch starts a quarter batch after the one before: neighbours share 3/4 of their ids

/** Batch c: ids c*STEP+1 .. c*STEP+SIZE, shuffled, every value saying which batch wrote it. */
function batch(c: number) {
  const rows = Array.from({ length: SIZE }, (_, k) => {
    const id = c * STEP + 1 + k;
    return { id, name: `Employee ${id} from ${c}`, datetime: `202${c}-01-02T03:04:05Z`, department_id: 1 + (c % 3), job_id: 1 + ((c + 1) % 3) };
  });
  const rand = rng(c + 1);
  for (let k = rows.length - 1; k > 0; k--) {
    const j = Math.floor(rand() * (k + 1));
    [rows[k], rows[j]] = [rows[j]!, rows[k]!];
  }
  return rows;
}

test('concurrent batches with overlapping ids: all written whole, no deadlock, one row per id from one batch in a single order', async () => {
  for (let round = 0; round < 3; round++) {
    await s.pool.query('TRUNCATE hired_employees');
    logLines.length = 0;
    const answers = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        const res = await postJson(app, '/ingest/hired_employees', batch(c));
        return { status: res.status, body: (await res.json()) as { received: number; inserted: number; updated: number; unchanged: number; rejected: number } };
      }),
    );
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(a.body).toMatchObject({ received: SIZE, rejected: 0 });
      expect(a.body.inserted + a.body.updated + a.body.unchanged).toBe(SIZE);
    }
    expect(logLines.filter((l) => l.code === '40P01' || /deadlock/.test(l.msg))).toEqual([]);
    expect(logLines.filter((l) => /retrying/.test(l.msg))).toEqual([]);

    const distinct = (CLIENTS - 1) * STEP + SIZE;
    const { rows } = await s.pool.query<{ id: number; name: string; datetime: Date; department_id: number; job_id: number }>(
      'SELECT id, name, datetime, department_id, job_id FROM hired_employees ORDER BY id',
    );
    expect(rows.length).toBe(distinct);
    // Each id was inserted by exactly one batch; every other batch naming it updated it.
    expect(answers.reduce((n, a) => n + a.body.inserted, 0)).toBe(distinct);

    // Every row is whole and from one batch that named its id...
    const winner = new Map<number, number>();
    for (const r of rows) {
      const c = Number(/ from (\d+)$/.exec(r.name)![1]);
      expect(r.id).toBeGreaterThan(c * STEP);
      expect(r.id).toBeLessThanOrEqual(c * STEP + SIZE);
      expect(r).toEqual({ id: r.id, name: `Employee ${r.id} from ${c}`, datetime: new Date(`202${c}-01-02T03:04:05Z`), department_id: 1 + (c % 3), job_id: 1 + ((c + 1) % 3) });
      winner.set(r.id, c);
    }
    // ...ids named by one batch only hold its values...
    for (let id = 1; id <= STEP; id++) expect(winner.get(id)).toBe(0);
    for (let id = distinct - STEP + 1; id <= distinct; id++) expect(winner.get(id)).toBe(CLIENTS - 1);
    // ...and the batches applied in one order: where two batches share ids, the later one holds
    // all of the ids they share that either holds (never some ids one way and some the other).
    for (let a = 0; a < CLIENTS; a++) {
      for (let b = a + 1; b < CLIENTS; b++) {
        const shared = [...winner].filter(([id, c]) => id > b * STEP && id <= a * STEP + SIZE && (c === a || c === b));
        expect(new Set(shared.map(([, c]) => c)).size).toBeLessThanOrEqual(1);
      }
    }
  }
});
