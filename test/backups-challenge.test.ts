import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { startBackupWorker } from '../backup/processor.js';
import { ingestChallenge } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

/** The challenge files, ingested through the API, backed up, wiped, restored: identical tables. */
const TABLES = ['departments', 'jobs', 'hired_employees'] as const;

let s: TestServices;
let stopWorker: () => Promise<void>;

beforeAll(async () => {
  s = await createTestServices();
  stopWorker = await startBackupWorker(s);
});
afterAll(async () => {
  await stopWorker?.();
  await s?.cleanup();
});

async function checksum(table: string): Promise<string> {
  const { rows } = await s.pool.query<{ sum: string; n: number }>(
    `SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS sum, count(*)::int AS n FROM ${table} t`,
  );
  return `${rows[0]!.n}:${rows[0]!.sum}`;
}

test('a backup of the challenge data restores to identical tables', async () => {
  const app = createApp(s);
  await ingestChallenge(app, TABLES);
  const before = await Promise.all(TABLES.map(checksum));
  expect(Number(before[2]!.split(':')[0])).toBeGreaterThan(1000);

  const res = await app.request('/backups?wait=true', { method: 'POST' });
  expect(res.status).toBe(200);
  const id = ((await res.json()) as { id: string }[])[0]!.id;

  await s.pool.query('DELETE FROM hired_employees');
  await s.pool.query('DELETE FROM departments');
  await s.pool.query('DELETE FROM jobs');
  for (const table of TABLES) {
    const r = await app.request(`/backups/${table}/restore`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ backup: id }),
    });
    expect(r.status).toBe(200);
  }
  expect(await Promise.all(TABLES.map(checksum))).toEqual(before);
});
