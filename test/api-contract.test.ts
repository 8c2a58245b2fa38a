import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { createTestServices, type TestServices } from './support/services.js';

// No worker runs here: a job that is asked for stays queued, so every wait runs out.
let s: TestServices;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  s = await createTestServices({ LOAD_WAIT_MS: '100', BACKUP_WAIT_MS: '100', WAREHOUSE_REFRESH_WAIT_MS: '100' });
  app = createApp(s);
});
afterAll(() => s.cleanup());

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema: unknown;
  description?: string;
}
type Doc = { paths: Record<string, Record<string, { parameters?: Parameter[]; description?: string }>> };

async function openapi(): Promise<Doc> {
  const res = await app.request('/openapi.json');
  expect(res.status).toBe(200);
  return (await res.json()) as Doc;
}

describe('/openapi.json', () => {
  test('lists every route with its path and query parameters', async () => {
    const doc = await openapi();
    const listed: Record<string, string[]> = {};
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        listed[`${method.toUpperCase()} ${path}`] = (op.parameters ?? []).map((p) => `${p.in}:${p.name}`).sort();
      }
    }
    expect(listed).toEqual({
      'POST /ingest/{table}': ['path:table'],
      'POST /loads': ['query:table', 'query:wait'],
      'GET /loads': ['query:limit', 'query:status', 'query:table'],
      'GET /loads/{id}': ['path:id'],
      'GET /loads/{id}/rejects': ['path:id'],
      'POST /uploads': [],
      'PUT /uploads/{id}': ['path:id', 'query:expires', 'query:signature'],
      'POST /uploads/{id}/load': ['path:id', 'query:wait'],
      'GET /landing': [],
      'POST /landing/scan': ['query:wait'],
      'POST /backups': ['query:wait'],
      'GET /backups': ['query:table'],
      'GET /backups/{id}': ['path:id'],
      'GET /backups/{id}/verify': ['path:id', 'query:table'],
      'POST /backups/{table}/restore': ['path:table'],
      'GET /warehouse': [],
      'POST /warehouse/refresh': ['query:wait'],
      'GET /analytics/hires-by-quarter': ['query:format', 'query:year'],
      'GET /analytics/departments-above-mean': ['query:format', 'query:year'],
      'GET /health': [],
      'GET /departments': ['query:after', 'query:format', 'query:limit'],
      'GET /departments/{id}': ['path:id'],
      'GET /jobs': ['query:after', 'query:format', 'query:limit'],
      'GET /jobs/{id}': ['path:id'],
      'GET /hired_employees': ['query:after', 'query:department_id', 'query:format', 'query:from', 'query:job_id', 'query:limit', 'query:to'],
      'GET /hired_employees/{id}': ['path:id'],
    });
  });

  test('no API route is served without being in it (only the dashboard files and the docs themselves)', async () => {
    const doc = await openapi();
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replaceAll(/\{(\w+)\}/g, ':$1')}`)),
    );
    const served = new Set(app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`));
    const undocumented = [...served].filter((r) => !documented.has(r)).sort();
    expect(undocumented).toEqual(['GET /', 'GET /dashboard.js', 'GET /docs', 'GET /docs/assets/:version/:file', 'GET /openapi.json']);
  });

  test('wait is one parameter, the same on every route that has it, and each route names its wait setting', async () => {
    const doc = await openapi();
    const routes = [
      ['/loads', 'LOAD_WAIT_MS'],
      ['/uploads/{id}/load', 'LOAD_WAIT_MS'],
      ['/landing/scan', 'LOAD_WAIT_MS'],
      ['/backups', 'BACKUP_WAIT_MS'],
      ['/warehouse/refresh', 'WAREHOUSE_REFRESH_WAIT_MS'],
    ] as const;
    const waits = routes.map(([path]) => doc.paths[path]!.post!.parameters!.find((p) => p.name === 'wait'));
    expect(waits[0]).toMatchObject({ in: 'query', required: false, schema: { type: 'string' } });
    expect([...(waits[0]!.schema as { enum: string[] }).enum].sort()).toEqual(['0', '1', 'false', 'true']);
    for (const w of waits) expect(w).toEqual(waits[0]);
    for (const [path, setting] of routes) expect(doc.paths[path]!.post!.description).toContain(setting);
  });
});

describe('?wait on every route that has it', () => {
  const csv = { 'content-type': 'text/csv' };
  const json = { 'content-type': 'application/json' };
  const requests = {
    'POST /loads': (q: string) => app.request(`/loads?table=jobs&${q}`, { method: 'POST', headers: csv, body: '1,Clerk\n' }),
    'POST /backups': (q: string) => app.request(`/backups?${q}`, { method: 'POST', headers: json, body: '{}' }),
    'POST /warehouse/refresh': (q: string) => app.request(`/warehouse/refresh?${q}`, { method: 'POST' }),
    'POST /uploads/{id}/load': (q: string) => app.request(`/uploads/0b9f5c1e-2d4a-4f7e-9a51-3c2b1d0e8f77/load?${q}`, { method: 'POST' }),
    'POST /landing/scan': (q: string) => app.request(`/landing/scan?${q}`, { method: 'POST' }),
  };

  test.each(Object.entries(requests))('%s: anything but true, false, 1, 0 is a 400 naming wait, and starts nothing', async (_, send) => {
    const queued = async () => {
      const counts = await Promise.all([s.queues.loads, s.queues.backups, s.queues.warehouse].map((q) => q.getJobCounts('waiting', 'delayed', 'prioritized')));
      return counts.flatMap((c) => Object.values(c)).reduce((a, b) => a + b, 0);
    };
    const before = await queued();
    for (const bad of ['yes', 'TRUE', '', '2']) {
      const res = await send(`wait=${bad}`);
      expect(res.status).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string; details: { field: string }[] } };
      expect(error.code).toBe('bad_request');
      expect(error.message).toMatch(/^wait: /);
      expect(error.details[0]!.field).toBe('wait');
    }
    expect(await queued()).toBe(before);
  });

  test('POST /loads?wait=1 with no worker: 202 with the load as it is after LOAD_WAIT_MS', async () => {
    const res = await requests['POST /loads']('wait=1');
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ table: 'jobs', status: 'queued' });
  });

  test('POST /backups?wait=1 with no worker: 202 with the job and its state after BACKUP_WAIT_MS', async () => {
    const res = await requests['POST /backups']('wait=1');
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ jobId: expect.any(String), status: 'queued' });
  });

  test('POST /warehouse/refresh?wait=1 with no worker: 202 with the job and its state after WAREHOUSE_REFRESH_WAIT_MS', async () => {
    const res = await requests['POST /warehouse/refresh']('wait=1');
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ jobId: expect.any(String), status: 'queued' });
  });

  test('POST /landing/scan?wait=1 with no worker: 202 with the scan job and its state after LOAD_WAIT_MS', async () => {
    const res = await requests['POST /landing/scan']('wait=1');
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ jobId: expect.stringMatching(/^landing-scan-/), status: 'queued' });
  });

  test('a restore always waits: 202 with the job and its state after BACKUP_WAIT_MS', async () => {
    const res = await app.request('/backups/jobs/restore', { method: 'POST', headers: json, body: '{}' });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ jobId: expect.any(String), status: 'queued' });
  });
});
