import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { createTestServices, type TestServices } from './support/services.js';

const CHALLENGE = path.resolve(import.meta.dirname, '../../shared/data/challenge');
const challengeDir = process.env.CHALLENGE_DIR ?? CHALLENGE;

let s: TestServices;
let workers: Workers;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  s = await createTestServices({ LOAD_CHUNK_ROWS: '500', LOAD_BACKOFF_MS: '100' });
  workers = await startWorkers(s);
  app = createApp(s);
});
afterAll(async () => {
  await workers.close();
  await s.cleanup();
});

async function postCsv(table: string, body: string | Buffer, query = '&wait=true') {
  return app.request(`/loads?table=${table}${query}`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body });
}

async function rejectsOf(id: string): Promise<{ line: number; raw: string; errors: { field: string | null; message: string }[] }[]> {
  const res = await app.request(`/loads/${id}/rejects`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('application/x-ndjson');
  const text = await res.text();
  return text === '' ? [] : text.trimEnd().split('\n').map((l) => JSON.parse(l));
}

async function tableDigest(table: string): Promise<string> {
  const { rows } = await s.pool.query(`SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') AS d FROM ${table} t`);
  return rows[0].d;
}

describe('the challenge files, one request per file', () => {
  test('1999 read, 1929 written, 70 rejects with line, raw and reasons', async () => {
    for (const t of ['departments', 'jobs']) {
      const res = await postCsv(t, await readFile(path.join(challengeDir, `${t}.csv`)));
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ table: t, status: 'succeeded', rejected: 0 });
    }
    const res = await postCsv('hired_employees', await readFile(path.join(challengeDir, 'hired_employees.csv')));
    expect(res.status).toBe(200);
    const load = await res.json();
    expect(load).toMatchObject({ status: 'succeeded', rowsRead: 1999, inserted: 1929, updated: 0, unchanged: 0, rejected: 70, error: null });
    expect(await tableDigest('hired_employees')).toMatch(/^1929:/);

    const rejects = await rejectsOf(load.id);
    expect(rejects).toHaveLength(70);
    const lines = (await readFile(path.join(challengeDir, 'hired_employees.csv'), 'utf8')).split('\n');
    for (const r of rejects) {
      expect(r.raw).toBe(lines[r.line - 1]);
      expect(r.errors.length).toBeGreaterThan(0);
      expect(r.errors[0]).toHaveProperty('message');
    }
    expect(rejects[0]).toMatchObject({ line: 2, errors: [{ field: 'job_id', message: 'is required' }] });

    const fetched = await (await app.request(`/loads/${load.id}`)).json();
    expect(fetched).toEqual(load);
    const list = await (await app.request('/loads')).json();
    expect(list.loads[0].id).toBe(load.id);
    expect(list.loads).toHaveLength(3);
  });

  test('loading the same file again changes nothing and says so', async () => {
    const before = await tableDigest('hired_employees');
    await writeFile(path.join(s.config.dirs.landing, 'again.csv'), await readFile(path.join(challengeDir, 'hired_employees.csv')));
    const res = await app.request('/loads?wait=true', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ table: 'hired_employees', path: 'again.csv' }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'succeeded', rowsRead: 1999, inserted: 0, updated: 0, unchanged: 1929, rejected: 70 });
    expect(await tableDigest('hired_employees')).toBe(before);
  });
});
