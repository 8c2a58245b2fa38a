import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { startBackupWorker } from '../backup/index.js';
import { loadConfig } from '../core/config.js';
import { createPool } from '../core/db.js';
import { createQueues } from '../jobs/index.js';
import { postCsv, postJson } from './support/http.js';
import { createTestServices, databaseUrl, EMBEDDED, REDIS_URL, uniqueName, type TestServices } from './support/services.js';

/** Safe by default (issue 11, items 5 and 6): binding, CSRF, the key, bounds on heavy work, no internals in answers. */

const KEY = 'safety-test-key-0123456789';
const bearer = { authorization: `Bearer ${KEY}` };
const ROOT = path.resolve(import.meta.dirname, '..');

let s: TestServices;
let app: ReturnType<typeof createApp>;
/** The same service with API_KEY set. */
let keyed: ReturnType<typeof createApp>;

beforeAll(async () => {
  s = await createTestServices({ LOAD_WAIT_MS: '100', BACKUP_WAIT_MS: '100', WAREHOUSE_REFRESH_WAIT_MS: '100' });
  app = createApp(s);
  keyed = createApp({ ...s, config: { ...s.config, API_KEY: KEY } });
});
afterAll(() => s?.cleanup());

/** An answer names no absolute folder of the server, no host, no driver text. */
function expectNoInternals(text: string): void {
  expect(text).not.toContain(s.config.DATA_DIR);
  expect(text).not.toContain(tmpdir());
  expect(text).not.toMatch(/127\.0\.0\.1|localhost|ECONNREFUSED|EEXIST|ENOTDIR|ENOENT|SELECT |INSERT |duckdb\b/i);
}

describe('HOST by default', () => {
  test('127.0.0.1 without API_KEY, 0.0.0.0 with it, and HOST when set', () => {
    expect(loadConfig({}).HOST).toBe('127.0.0.1');
    expect(loadConfig({ HOST: '' }).HOST).toBe('127.0.0.1');
    expect(loadConfig({ API_KEY: KEY }).HOST).toBe('0.0.0.0');
    expect(loadConfig({ HOST: '0.0.0.0' }).HOST).toBe('0.0.0.0');
    expect(loadConfig({ HOST: '::1', API_KEY: KEY }).HOST).toBe('::1');
  }, 90_000);

  /** Starts `main.ts` with `env`; resolves with its log lines up to "listening" and a way to stop it. */
  async function start(env: Record<string, string>): Promise<{ port: number; lines: { msg: string; host?: string; level: string }[]; stop: () => Promise<void> }> {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'hrsafe-'));
    const queuePrefix = uniqueName('hrq');
    const dbName = uniqueName('hrtest');
    const { HOST: _host, API_KEY: _key, ...inherited } = process.env;
    const child = spawn(process.execPath, ['--import', 'tsx', 'main.ts'], {
      cwd: ROOT,
      env: {
        ...inherited,
        PORT: '0',
        DATABASE_URL: databaseUrl(dbName),
        REDIS_URL: EMBEDDED ? '' : REDIS_URL,
        DATA_DIR: dataDir,
        QUEUE_PREFIX: queuePrefix,
        LOG_LEVEL: 'info',
        LOG_FORMAT: 'json',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const lines: { msg: string; host?: string; level: string; port?: number }[] = [];
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`no "listening" line; stderr: ${stderr}`));
      }, 60_000);
      let rest = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        const parts = (rest + chunk).split('\n');
        rest = parts.pop()!;
        for (const line of parts.filter(Boolean)) {
          lines.push(JSON.parse(line));
          const last = lines[lines.length - 1]!;
          // The warning about open writes follows the listening line at once, in the same callback.
          if (last.msg.startsWith('listening')) setTimeout(() => (clearTimeout(timer), resolve(last.port!)), 300);
        }
      });
    });
    return {
      port,
      lines,
      async stop() {
        if (child.exitCode === null) {
          child.kill('SIGTERM');
          await once(child, 'exit');
        }
        const admin = createPool(databaseUrl('postgres'), 1);
        await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
        await admin.end();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  }

  /** An address of this machine that is not loopback, if it has one. */
  const outward = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

  test('a server started without API_KEY listens on loopback only and says that writes are open', async () => {
    const server = await start({});
    try {
      const listening = server.lines.find((l) => l.msg.startsWith('listening'))!;
      expect(listening.host).toBe('127.0.0.1');
      const warning = server.lines.find((l) => l.msg.startsWith('writes are open'));
      expect(warning).toMatchObject({ level: 'warn' });
      expect(warning!.msg).toMatch(/API_KEY is unset, so anyone on this machine/);
      expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200);
      if (outward) {
        // From the network (this machine's own outward address), nothing answers.
        await expect(fetch(`http://${outward}:${server.port}/health`)).rejects.toThrow();
      }
    } finally {
      await server.stop();
    }
  }, 120_000);

  test('with API_KEY it listens on every interface, and writes need the key', async () => {
    const server = await start({ API_KEY: KEY });
    try {
      expect(server.lines.find((l) => l.msg.startsWith('listening'))!.host).toBe('0.0.0.0');
      expect(server.lines.some((l) => l.msg.startsWith('writes are open'))).toBe(false);
      const base = `http://${outward ?? '127.0.0.1'}:${server.port}`;
      expect((await fetch(`${base}/health`)).status).toBe(200);
      const post = (headers: Record<string, string>) =>
        fetch(`${base}/ingest/departments`, { method: 'POST', headers: { 'content-type': 'text/csv', ...headers }, body: '1,Sales\n' });
      expect((await post({})).status).toBe(401);
      expect((await post(bearer)).status).toBe(200);
    } finally {
      await server.stop();
    }
  }, 120_000);
});

describe('state-changing requests from another site', () => {
  const restore = (headers: Record<string, string>) => app.request('/backups/jobs/restore', { method: 'POST', headers });

  test('are refused 403 whatever the body: none, JSON, multipart, text', async () => {
    const crossSite = { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' };
    // A body-less restore, as a page can send with fetch(…, {method: 'POST', mode: 'no-cors'}).
    let res = await restore(crossSite);
    expect(res.status).toBe(403);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('forbidden');
    expect(body.error.message).toMatch(/another site \(Origin https:\/\/evil\.example\)/);
    const form = new FormData();
    form.append('departments', new Blob(['1,Evil\n']), 'd.csv');
    res = await app.request('/loads', { method: 'POST', headers: crossSite, body: form });
    expect(res.status).toBe(403);
    expect((await postJson(app, '/ingest/departments', [{ id: 1, department: 'Evil' }], crossSite)).status).toBe(403);
    expect((await postCsv(app, '/ingest/departments', '1,Evil\n', { origin: 'https://evil.example' })).status).toBe(403);
    expect((await app.request('/warehouse/refresh', { method: 'POST', headers: { 'sec-fetch-site': 'same-site' } })).status).toBe(403);
    // Sandboxed frames and file: pages send "Origin: null".
    expect((await restore({ origin: 'null' })).status).toBe(403);
    // Nothing was written.
    expect((await s.pool.query('SELECT count(*)::int AS n FROM departments')).rows[0].n).toBe(0);
    expect((await s.pool.query('SELECT count(*)::int AS n FROM loads')).rows[0].n).toBe(0);
  }, 90_000);

  test("pass from the service's own pages, from TRUSTED_ORIGINS, and from clients that are not browsers", async () => {
    const ok = (res: Response) => expect(res.status).not.toBe(403);
    // curl, the CLI, scripts: neither header.
    ok(await postCsv(app, '/ingest/jobs', '1,Clerk\n'));
    // The dashboard's own fetch: same-origin, and its Origin is this host.
    ok(await postCsv(app, '/ingest/jobs', '1,Clerk\n', { 'sec-fetch-site': 'same-origin', origin: 'http://localhost' }));
    ok(await postCsv(app, '/ingest/jobs', '1,Clerk\n', { origin: 'http://localhost', host: 'localhost' }));
    const trusting = createApp({ ...s, config: { ...s.config, TRUSTED_ORIGINS: ['https://intranet.example'] } });
    ok(await postCsv(trusting, '/ingest/jobs', '1,Clerk\n', { origin: 'https://intranet.example', 'sec-fetch-site': 'cross-site' }));
    expect((await postCsv(trusting, '/ingest/jobs', '1,Clerk\n', { origin: 'https://other.example' })).status).toBe(403);
    // Reading is never refused: a GET changes nothing.
    expect((await app.request('/loads', { headers: { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' } })).status).toBe(200);
  }, 90_000);

  test('TRUSTED_ORIGINS must hold origins', () => {
    expect(loadConfig({ TRUSTED_ORIGINS: 'https://a.example, http://b.example:8080' }).TRUSTED_ORIGINS).toEqual(['https://a.example', 'http://b.example:8080']);
    expect(() => loadConfig({ TRUSTED_ORIGINS: 'a.example/path' })).toThrow(/TRUSTED_ORIGINS/);
  }, 90_000);
});

type Doc = { paths: Record<string, Record<string, { security?: unknown[] }>> };

describe('with API_KEY set', () => {
  /** A concrete URL for a documented path. */
  const fill = (p: string) => p.replace('{table}', 'jobs').replace('{id}', '20990101T000000000Z-abcdef');

  test('row-level and heavy routes need the key, GETs included; the document marks exactly those', async () => {
    const doc = (await (await keyed.request('/openapi.json')).json()) as Doc;
    const marked: string[] = [];
    const open: string[] = [];
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const name = `${method.toUpperCase()} ${p}`;
        (op.security?.length ? marked : open).push(name);
        const res = await keyed.request(fill(p), { method: method.toUpperCase() });
        // What the document says is what the service does.
        if (op.security?.length) expect([name, res.status]).toEqual([name, 401]);
        else expect([name, res.status]).not.toEqual([name, 401]);
      }
    }
    expect(marked.sort()).toEqual([
      'GET /backups/{id}/verify',
      'GET /departments',
      'GET /departments/{id}',
      'GET /hired_employees',
      'GET /hired_employees/{id}',
      'GET /jobs',
      'GET /jobs/{id}',
      'GET /loads/{id}/rejects',
      'POST /backups',
      'POST /backups/{table}/restore',
      'POST /ingest/{table}',
      'POST /landing/scan',
      'POST /loads',
      'POST /uploads',
      'POST /uploads/{id}/load',
      'POST /warehouse/refresh',
    ]);
    // Aggregates, the lists and the service's own description stay open.
    expect(open).toEqual(
      // PUT /uploads/{id}: the upload URL of the local storage, authorized by its signature.
      expect.arrayContaining(['GET /health', 'GET /warehouse', 'GET /analytics/hires-by-quarter', 'GET /loads', 'GET /loads/{id}', 'GET /backups', 'GET /landing', 'PUT /uploads/{id}']),
    );
    for (const url of ['/', '/dashboard.js', '/docs', '/openapi.json']) expect((await keyed.request(url)).status).toBe(200);
    // HEAD is a GET.
    expect((await keyed.request('/loads/0b9f5c1e-2d4a-4f7e-9a51-3c2b1d0e8f77/rejects', { method: 'HEAD' })).status).toBe(401);
  }, 90_000);

  test('the key opens them; a wrong one does not', async () => {
    const id = '0b9f5c1e-2d4a-4f7e-9a51-3c2b1d0e8f77';
    expect((await keyed.request(`/loads/${id}/rejects`, { headers: bearer })).status).toBe(404);
    expect((await keyed.request(`/loads/${id}/rejects`, { headers: { authorization: 'Bearer not-the-key-0123456789' } })).status).toBe(401);
    expect((await keyed.request('/backups/20990101T000000000Z-abcdef/verify', { headers: bearer })).status).toBe(404);
  }, 90_000);
});

describe('heavy work is bounded', () => {
  test('uploads past UPLOAD_CONCURRENCY are refused 429 with Retry-After while one streams', async () => {
    const one = createApp({ ...s, config: { ...s.config, UPLOAD_CONCURRENCY: 1 } });
    // A body that stays open until the test ends it: the first upload holds its place meanwhile.
    let finish!: () => void;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('1,Clerk\n'));
        finish = () => controller.close();
      },
    });
    const first = one.request('/loads?table=jobs', { method: 'POST', headers: { 'content-type': 'text/csv' }, body, duplex: 'half' } as RequestInit);
    await new Promise((r) => setTimeout(r, 200));
    const second = await postCsv(one, '/loads?table=jobs', '2,Clerk\n');
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('10');
    expect(((await second.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'too_many_requests',
      message: expect.stringMatching(/UPLOAD_CONCURRENCY/),
    });
    finish();
    expect((await first).status).toBe(202);
    // Its place is free again.
    expect((await postCsv(one, '/loads?table=jobs', '2,Clerk\n')).status).toBe(202);
  }, 90_000);

  test('a JSON body past 64 KiB is refused 413 on every route that reads one, declared or chunked, read no further', async () => {
    // A body of the right shape with a long string in it, so a validator that read it whole would accept it.
    const routes = ['/backups', '/backups/jobs/restore', '/uploads', '/loads'];
    for (const route of routes) {
      const declared = await postJson(app, route, { tables: ['jobs'], table: 'jobs', bytes: 1, path: 'x'.repeat(70 * 1024) });
      expect({ route, status: declared.status }).toEqual({ route, status: 413 });
      expect(((await declared.json()) as { error: { code: string; details: unknown } }).error).toMatchObject({
        code: 'payload_too_large',
        details: { limitBytes: 64 * 1024 },
      });
      // Chunked (no Content-Length) and endless: the service stops reading at the limit.
      let pulled = 0;
      const chunk = new TextEncoder().encode(' '.repeat(16 * 1024));
      const endless = new ReadableStream<Uint8Array>({
        pull(controller) {
          pulled += chunk.byteLength;
          controller.enqueue(chunk);
        },
      });
      const chunked = await app.request(route, { method: 'POST', headers: { 'content-type': 'application/json' }, body: endless, duplex: 'half' } as RequestInit);
      expect({ route, status: chunked.status }).toEqual({ route, status: 413 });
      expect(pulled).toBeLessThan(256 * 1024);
    }
    // A small body still passes the cap (and is judged by the route); an upload's PUT streams its
    // file under LOAD_MAX_BYTES whatever type the client gave it.
    const file = Buffer.from(Array.from({ length: 8000 }, (_, i) => `${i + 1},Job ${i + 1}\n`).join(''));
    expect(file.length).toBeGreaterThan(64 * 1024);
    const made = await postJson(app, '/uploads', { table: 'jobs', bytes: file.length });
    expect(made.status).toBe(201);
    const { url } = (await made.json()) as { url: string };
    const put = await app.request(url, { method: 'PUT', body: file, headers: { 'content-type': 'application/json', 'content-length': String(file.length) } });
    expect(put.status, await put.clone().text()).toBe(200);
  }, 90_000);

  test('backups and restores queue up to BACKUP_QUEUE_MAX, then 429', async () => {
    // No worker runs in this suite's services: jobs stay waiting.
    const t = await createTestServices({ BACKUP_QUEUE_MAX: '2', BACKUP_WAIT_MS: '100' });
    try {
      const a = createApp(t);
      expect((await a.request('/backups', { method: 'POST' })).status).toBe(202);
      expect((await a.request('/backups', { method: 'POST' })).status).toBe(202);
      const refused = await a.request('/backups', { method: 'POST' });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('30');
      expect((await a.request('/backups/jobs/restore', { method: 'POST' })).status).toBe(429);
    } finally {
      await t.cleanup();
    }
  }, 90_000);

  test('verifications past VERIFY_CONCURRENCY are refused 429 with Retry-After', async () => {
    const t = await createTestServices({ VERIFY_CONCURRENCY: '1' });
    const stop = await startBackupWorker(t);
    try {
      await t.pool.query(`INSERT INTO departments SELECT g, 'D' || g FROM generate_series(1, 5) g`);
      await t.pool.query(`INSERT INTO jobs SELECT g, 'J' || g FROM generate_series(1, 5) g`);
      await t.pool.query(
        `INSERT INTO hired_employees SELECT g, 'E' || g, timestamptz '2021-01-01' + g * interval '1 minute', 1 + g % 5, 1 + g % 5 FROM generate_series(1, 50000) g`,
      );
      const a = createApp(t);
      const made = await a.request('/backups?wait=true', { method: 'POST' });
      expect(made.status).toBe(200);
      const { id } = ((await made.json()) as { id: string }[])[0]!;
      const answers = await Promise.all([1, 2, 3].map(() => a.request(`/backups/${id}/verify`)));
      const statuses = answers.map((r) => r.status).sort();
      expect(statuses[0]).toBe(200);
      expect(statuses).toContain(429);
      const busy = answers.find((r) => r.status === 429)!;
      expect(busy.headers.get('retry-after')).toBe('5');
      // One at a time is fine.
      expect((await a.request(`/backups/${id}/verify`)).status).toBe(200);
    } finally {
      await stop();
      await t.cleanup();
    }
  }, 90_000);
});

describe('no internals in answers', () => {
  test('a load path outside the landing folder names DATA_DIR/landing, not the server folder', async () => {
    for (const p of ['../x.csv', '/etc/passwd']) {
      const res = await postJson(app, '/loads', { table: 'jobs', path: p });
      expect(res.status).toBe(400);
      const text = await res.text();
      expect(text).toContain('DATA_DIR/landing');
      expectNoInternals(text);
    }
  }, 90_000);

  test('loads, backups and the warehouse show paths relative to DATA_DIR', async () => {
    const t = await createTestServices();
    const stop = await startBackupWorker(t);
    try {
      const a = createApp(t);
      const load = (await (await postCsv(a, '/loads?table=jobs', '1,Clerk\n')).json()) as { id: string; file: string };
      expect(load.file).toMatch(/^landing\/uploads\/\d{4}-\d{2}-\d{2}\/[0-9a-f-]{36}\.jobs\.csv$/);
      const listed = await (await a.request('/loads')).text();
      expect(listed).toContain(load.file);
      expectNoInternals(listed);

      const made = await a.request('/backups?wait=true', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"tables":["jobs"]}' });
      const [entry] = (await made.json()) as { id: string; file: string }[];
      expect(entry!.file).toBe(`backups/${entry!.id}/jobs.avro`);
      const list = await (await a.request('/backups')).text();
      expectNoInternals(list);
      const verify = (await (await a.request(`/backups/${entry!.id}/verify`)).json()) as { tables: { file: string }[] };
      expect(verify.tables[0]!.file).toBe(`backups/${entry!.id}/jobs.avro`);

      // A damaged file: the 422 of verify and of restore name it under backups/, nothing more.
      await writeFile(path.join(t.config.dirs.backups, entry!.id, 'jobs.avro'), 'not avro at all');
      const damaged = await (await a.request(`/backups/${entry!.id}/verify`)).text();
      expect(damaged).toContain('"ok":false');
      expectNoInternals(damaged);
      const refused = await postJson(a, '/backups/jobs/restore', { backup: entry!.id });
      expect(refused.status).toBe(422);
      const text = await refused.text();
      expect(text).toContain(`backups/${entry!.id}/jobs.avro`);
      expectNoInternals(text);

      const warehouse = (await (await a.request('/warehouse')).json()) as { path: string; parquetManifest: string };
      expect(warehouse).toMatchObject({ path: 'warehouse/hr.duckdb', parquetManifest: 'warehouse/parquet/manifest.json' });
    } finally {
      await stop();
      await t.cleanup();
    }
  }, 90_000);

  test('/health says a dependency is down without its host or error text, and the embedded one without DATA_DIR', async () => {
    const deadPool = createPool('postgres://postgres@127.0.0.1:1/none', 1);
    const deadRedis = createQueues({ ...s.config, REDIS_URL: 'redis://127.0.0.1:1' }, s.log);
    try {
      const res = await createApp({ ...s, pool: deadPool, queues: deadRedis }).request('/health');
      expect(res.status).toBe(503);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ down: ['postgres', 'redis'], postgres: { status: 'down', error: expect.any(String) } });
      expectNoInternals(text);
    } finally {
      await deadPool.end();
      await deadRedis.close();
    }
    const embedded = await createTestServices({}, { embedded: true });
    try {
      const text = await (await createApp(embedded).request('/health')).text();
      expect(text).toContain('DATA_DIR/postgres');
      expect(text).not.toContain(embedded.config.DATA_DIR);
    } finally {
      await embedded.cleanup();
    }
  }, 90_000);

  test('a failed warehouse refresh answers 500 naming the job, not the failure text', async () => {
    const t = await createTestServices({ WAREHOUSE_REFRESH_WAIT_MS: '60000' });
    // The warehouse folder cannot be made: every attempt fails with a file-system error naming it.
    await mkdir(t.config.DATA_DIR, { recursive: true });
    await writeFile(t.config.dirs.warehouse, 'a file where the folder should be');
    const { startWarehouseWorker } = await import('../warehouse/index.js');
    const stop = await startWarehouseWorker(t);
    try {
      const res = await createApp(t).request('/warehouse/refresh?wait=true', { method: 'POST' });
      expect(res.status).toBe(500);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ error: { code: 'refresh_failed', message: expect.stringMatching(/worker log has the details under job/) } });
      expectNoInternals(text);
    } finally {
      await stop();
      await t.cleanup();
    }
  }, 120_000);
});
