import { appendFile, mkdir, readdir, readFile, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * The landing inbox through the API and the workers of this process: BullMQ on Redis in the
 * `server` project, in-process jobs and PGlite in the `embedded` one (vitest.config.ts). The
 * schedule is off in most cases (the scans are the test's); one case runs it every second.
 * Real worker processes: test/landing-processes.test.ts.
 */
const CHALLENGE = path.resolve(import.meta.dirname, 'fixtures/challenge');
const SETTLE_MS = 1_500;

type Load = { id: string; table: string; status: string; rowsRead: number; inserted: number; unchanged: number; rejected: number; source: string; sourceName: string | null; file: string; error: string | null };
type Scan = { jobId: string; status: string; started: string[]; settling: string[]; refused: string[]; moved: string[]; loads: Load[] };
type Finished = { name: string; file: string; loadId: string | null; status: string | null; companion: string | null };
type Landing = { inbox: { name: string; table: string | null; ignored: boolean }[]; processing: { name: string; loadId: string }[]; done: Finished[]; failed: Finished[] };

let t: TestServices;
let workers: Workers;
let app: ReturnType<typeof createApp>;
const dir = (sub: string) => path.join(t.config.dirs.landing, sub);
const today = () => new Date().toISOString().slice(0, 10);

beforeAll(async () => {
  t = await createTestServices({ LANDING_SCAN_CRON: '', LANDING_SETTLE_MS: String(SETTLE_MS) });
  workers = await startWorkers(t);
  app = createApp(t);
});
afterAll(async () => {
  await workers?.close();
  await t?.cleanup();
});

async function scan(): Promise<Scan> {
  const res = await app.request('/landing/scan?wait=true', { method: 'POST' });
  expect(res.status).toBe(200);
  return res.json();
}

const landing = async (): Promise<Landing> => (await app.request('/landing')).json();
const files = (sub: string) => readdir(dir(sub)).catch(() => [] as string[]);

/** Scans until `done` holds, as the follow-up scans would (at least SETTLE_MS between looks). */
async function scanUntil(done: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    expect(Date.now(), 'the inbox did not settle in time').toBeLessThan(deadline);
    await scan();
    await sleep(300);
  }
}

async function count(table: string): Promise<number> {
  const { rows } = await t.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0]!.n;
}

describe.sequential('landing inbox', () => {
  test('the challenge files dropped in, one written in two halves with a scan between, all load and land in done/', async () => {
    await mkdir(dir('inbox'), { recursive: true });
    await copyFile(path.join(CHALLENGE, 'departments.csv'), path.join(dir('inbox'), 'departments.csv'));
    await copyFile(path.join(CHALLENGE, 'jobs.csv'), path.join(dir('inbox'), 'JOBS_2021.CSV'));
    const hires = await readFile(path.join(CHALLENGE, 'hired_employees.csv'));
    const half = hires.indexOf(0x0a, hires.length >> 1) + 1;
    const hiresFile = path.join(dir('inbox'), 'hired_employees_2021.csv');
    await writeFile(hiresFile, hires.subarray(0, half));

    const first = await scan();
    expect(first.started).toEqual([]);
    expect(first.settling.sort()).toEqual(['JOBS_2021.CSV', 'departments.csv', 'hired_employees_2021.csv']);
    // The second half arrives right after the scan: the half file must never be loaded.
    await appendFile(hiresFile, hires.subarray(half));
    const listed = await landing();
    expect(listed.inbox.map((f) => [f.name, f.table])).toContainEqual(['JOBS_2021.CSV', 'jobs']);

    await scanUntil(async () => (await files('inbox')).length === 0 && (await files('processing')).length === 0);

    expect([await count('departments'), await count('jobs'), await count('hired_employees')]).toEqual([12, 183, 1929]);
    const done = await files(`done/${today()}`);
    expect(done.sort()).toEqual(['JOBS_2021.CSV', 'departments.csv', 'hired_employees_2021.csv', 'hired_employees_2021.csv.rejects.ndjson']);
    const rejects = (await readFile(path.join(dir(`done/${today()}`), 'hired_employees_2021.csv.rejects.ndjson'), 'utf8')).trimEnd().split('\n');
    expect(rejects).toHaveLength(70);

    // The same lines as GET /loads/{id}/rejects; the loads say where they came from.
    const { loads } = (await (await app.request('/loads')).json()) as { loads: Load[] };
    const hiresLoad = loads.find((l) => l.table === 'hired_employees')!;
    expect(hiresLoad).toMatchObject({ source: 'inbox', sourceName: 'hired_employees_2021.csv', status: 'succeeded', rowsRead: 1999, rejected: 70 });
    expect(hiresLoad.file).toBe(`landing/done/${today()}/hired_employees_2021.csv`);
    const api = await (await app.request(`/loads/${hiresLoad.id}/rejects`)).text();
    expect(rejects.join('\n') + '\n').toBe(api);
    expect(loads.filter((l) => l.source === 'inbox')).toHaveLength(3);

    const after = await landing();
    expect(after.inbox).toEqual([]);
    expect(after.processing).toEqual([]);
    const hiresDone = after.done.find((f) => f.name === 'hired_employees_2021.csv')!;
    expect(hiresDone).toMatchObject({ loadId: hiresLoad.id, status: 'succeeded', companion: `landing/done/${today()}/hired_employees_2021.csv.rejects.ndjson` });
    expect(after.done.find((f) => f.name === 'departments.csv')).toMatchObject({ status: 'succeeded', companion: null });
  }, 120_000);

  test('the same content dropped again loads again and reports unchanged; the earlier file is kept', async () => {
    await copyFile(path.join(CHALLENGE, 'jobs.csv'), path.join(dir('inbox'), 'jobs.csv'));
    let load: Load | undefined;
    await scanUntil(async () => {
      const { loads } = (await (await app.request('/loads?table=jobs&limit=1')).json()) as { loads: Load[] };
      load = loads[0];
      return load?.sourceName === 'jobs.csv' && (await files('inbox')).length === 0 && (await files('processing')).length === 0;
    });
    expect(load).toMatchObject({ status: 'succeeded', inserted: 0, unchanged: 183, source: 'inbox' });
    expect(await files(`done/${today()}`)).toContain('jobs.csv');
    expect(await count('jobs')).toBe(183);
  }, 60_000);

  test('a name that names no table goes to failed/ at once with the reason; dot-files and *.tmp are left alone', async () => {
    await writeFile(path.join(dir('inbox'), 'employees.csv'), '1,Ada,2021-01-01T00:00:00Z,1,1\n');
    await writeFile(path.join(dir('inbox'), '.departments.csv'), '1,Sales\n');
    await writeFile(path.join(dir('inbox'), 'departments.csv.tmp'), '1,Sales\n');
    const first = await scan();
    expect(first.refused).toEqual(['employees.csv']);
    expect(first.settling).toEqual([]);
    const failed = await files(`failed/${today()}`);
    expect(failed).toEqual(expect.arrayContaining(['employees.csv', 'employees.csv.error.txt']));
    expect(await readFile(path.join(dir(`failed/${today()}`), 'employees.csv.error.txt'), 'utf8')).toMatch(/names no table.*departments\*\.csv/s);
    await sleep(SETTLE_MS + 200);
    expect((await scan()).started).toEqual([]);
    expect((await files('inbox')).sort()).toEqual(['.departments.csv', 'departments.csv.tmp']);
    const listed = await landing();
    expect(listed.inbox.every((f) => f.ignored)).toBe(true);
    expect(listed.failed.find((f) => f.name === 'employees.csv')).toMatchObject({ loadId: null, companion: `landing/failed/${today()}/employees.csv.error.txt` });
  }, 60_000);

  test('a load that fails moves its file to failed/ with <name>.error.txt', async () => {
    // Binary bytes: the load fails as bad input (not retried).
    await writeFile(path.join(dir('inbox'), 'departments_broken.csv'), Buffer.alloc(4096, 0));
    await scanUntil(async () => (await files('inbox')).filter((f) => !f.startsWith('.') && !f.endsWith('.tmp')).length === 0 && (await files('processing')).length === 0);
    const failed = await files(`failed/${today()}`);
    expect(failed).toEqual(expect.arrayContaining(['departments_broken.csv', 'departments_broken.csv.error.txt']));
    const why = await readFile(path.join(dir(`failed/${today()}`), 'departments_broken.csv.error.txt'), 'utf8');
    expect(why).toMatch(/departments load [0-9a-f-]{36} failed/);
    const listed = await landing();
    const entry = listed.failed.find((f) => f.name === 'departments_broken.csv')!;
    expect(entry).toMatchObject({ status: 'failed' });
    expect(entry.loadId).toMatch(/^[0-9a-f-]{36}$/);
  }, 60_000);

  test('several scans at once take each file exactly once', async () => {
    for (const n of [1, 2, 3, 4]) await writeFile(path.join(dir('inbox'), `departments_${n}.csv`), `${100 + n},Dept ${n}\n`);
    await scan(); // first look
    await sleep(SETTLE_MS + 200);
    const answers = await Promise.all(
      Array.from({ length: 6 }, async () => (await app.request('/landing/scan?wait=true', { method: 'POST' })).json() as Promise<Scan>),
    );
    const started = answers.flatMap((a) => a.started ?? []);
    await scanUntil(async () => (await files('processing')).length === 0);
    const { rows } = await t.pool.query<{ source_name: string; n: number }>(
      `SELECT source_name, count(*)::int AS n FROM loads WHERE source_name LIKE 'departments\\_%' GROUP BY 1 ORDER BY 1`,
    );
    expect(rows.filter((r) => r.source_name !== 'departments_broken.csv')).toEqual([1, 2, 3, 4].map((n) => ({ source_name: `departments_${n}.csv`, n: 1 })));
    expect(new Set(started).size).toBe(started.length);
    expect(await count('departments')).toBe(16);
  }, 60_000);

  test('POST /landing/scan without wait answers 202 with the job; GET /landing and the scan are in the OpenAPI document', async () => {
    const res = await app.request('/landing/scan', { method: 'POST' });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ status: 'queued', jobId: expect.stringMatching(/^landing-scan-/) });
    expect((await app.request('/landing/scan?wait=maybe', { method: 'POST' })).status).toBe(400);
    const doc = (await (await app.request('/openapi.json')).json()) as { paths: Record<string, Record<string, { security?: unknown }>> };
    expect(doc.paths['/landing/scan']!.post!.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/landing']!.get).toBeDefined();
  });
});

test('on LANDING_SCAN_CRON, a dropped file loads without anyone asking', async () => {
  const s = await createTestServices({ LANDING_SCAN_CRON: '* * * * * *', LANDING_SETTLE_MS: '500' });
  const w = await startWorkers(s);
  try {
    await mkdir(path.join(s.config.dirs.landing, 'inbox'), { recursive: true });
    await copyFile(path.join(CHALLENGE, 'departments.csv'), path.join(s.config.dirs.landing, 'inbox', 'departments.csv'));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { rows } = await s.pool.query<{ status: string }>(`SELECT status FROM loads WHERE source = 'inbox'`);
      const done = await readdir(path.join(s.config.dirs.landing, 'done')).catch(() => []);
      if (rows[0]?.status === 'succeeded' && done.length > 0) break;
      expect(Date.now(), 'the scheduled scan did not load the file').toBeLessThan(deadline);
      await sleep(200);
    }
    const { rows } = await s.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM departments');
    expect(rows[0]!.n).toBe(12);
  } finally {
    await w.close();
    await s.cleanup();
  }
}, 90_000);
