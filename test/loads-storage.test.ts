import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { enqueueLoads } from '../loads/enqueue.js';
import { closeStorage, storageOf } from '../loads/source.js';
import { insertLoads } from '../loads/store.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { CHALLENGE_DIR } from './support/http.js';
import { startTestBucket, type TestBucket } from './support/s3.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * Loads through the storage, on the local folder and on a bucket (s3rver on 127.0.0.1, started
 * here): uploads streamed into it, loads read by ranged GETs and resumed by range, loads of a
 * named object (`url`), presigned uploads with their expiry and limits.
 */
const KEY = 'test-api-key-0123456789';
const LIMIT = 200_000; // LOAD_MAX_BYTES: the challenge files fit, a bigger body does not
const PREFIX = 'svc';
const challenge = (table: string) => readFile(path.join(CHALLENGE_DIR, `${table}.csv`));

let bucket: TestBucket;
beforeAll(async () => {
  bucket = await startTestBucket();
});
afterAll(() => bucket?.stop());

describe.each(['local', 'bucket'] as const)('loads on the %s storage', (backend) => {
  let s: TestServices;
  let workers: Workers;
  let app: ReturnType<typeof createApp>;
  const auth = { authorization: `Bearer ${KEY}` };

  beforeAll(async () => {
    s = await createTestServices({
      API_KEY: KEY,
      LOAD_CHUNK_ROWS: '300',
      LOAD_BACKOFF_MS: '100',
      LOAD_MAX_BYTES: String(LIMIT),
      ...(backend === 'bucket' ? bucket.env(PREFIX) : {}),
    });
    workers = await startWorkers(s);
    app = createApp(s);
  });
  afterAll(async () => {
    await workers?.close();
    await closeStorage(s.config);
    await s?.cleanup();
  });

  const storage = () => storageOf(s.config);
  const count = async (table: string) => Number((await s.pool.query(`SELECT count(*) FROM ${table}`)).rows[0].count);
  const post = (url: string, body?: unknown) =>
    app.request(url, {
      method: 'POST',
      headers: { ...auth, ...(body !== undefined && { 'content-type': 'application/json' }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  /** A PUT to an upload URL as a client sends it: no API key. The local one is the service's own route. */
  const put = (url: string, body: Uint8Array<ArrayBuffer>) =>
    backend === 'local' ? app.request(url, { method: 'PUT', body, headers: { 'content-length': String(body.length) } }) : fetch(url, { method: 'PUT', body });
  const shown = (key: string) => (backend === 'local' ? key : `s3://${bucket.bucket}/${PREFIX}/${key}`);

  test('the challenge files uploaded as text/csv: 12 + 183 + 1929 rows and 70 rejects, kept in the storage', async () => {
    const loads = [];
    for (const table of ['departments', 'jobs', 'hired_employees']) {
      const res = await app.request(`/loads?table=${table}&wait=true`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'text/csv' },
        body: new Uint8Array(await challenge(table)),
      });
      expect(res.status).toBe(200);
      loads.push(await res.json());
    }
    expect(loads.map((l) => [l.status, l.inserted, l.rejected])).toEqual([
      ['succeeded', 12, 0],
      ['succeeded', 183, 0],
      ['succeeded', 1929, 70],
    ]);
    expect([await count('departments'), await count('jobs'), await count('hired_employees')]).toEqual([12, 183, 1929]);
    const rejects = (await (await app.request(`/loads/${loads[2].id}/rejects`, { headers: auth })).text()).trimEnd().split('\n');
    expect(rejects).toHaveLength(70);
    const lines = (await challenge('hired_employees')).toString('utf8').split('\n');
    expect(JSON.parse(rejects[0]!)).toMatchObject({ line: 2, raw: lines[1] });

    // The file is an object of the storage, and the answer names it without a host or a path of the server.
    const day = new Date().toISOString().slice(0, 10);
    const key = `landing/uploads/${day}/${loads[2].id}.hired_employees.csv`;
    expect(loads[2].file).toBe(shown(key));
    expect((await (await storage()).stat(key)).size).toBe((await challenge('hired_employees')).length);
    const listed = await (await app.request('/loads?table=hired_employees')).json();
    expect(listed.loads[0].file).toBe(shown(key));
    if (backend === 'bucket') {
      // Nothing was copied to the local disk on the way: DATA_DIR holds no landing folder.
      expect(await readdir(s.config.DATA_DIR)).not.toContain('landing');
    }
  });

  test('a load resumes from its checkpoint by byte range: the rows before it are not read again', async () => {
    // The jobs file with every line from 101 on renamed: a resumed load updates exactly those.
    const lines = (await challenge('jobs')).toString('utf8').split('\n');
    const text = lines.map((l, i) => (i >= 100 && l !== '' ? `${l.split(',')[0]},Renamed ${i + 1}` : l)).join('\n');
    const key = 'landing/resume/jobs.csv';
    await (await storage()).put(key, Buffer.from(text));
    // A load that committed its first 100 lines before the worker died: its checkpoint is line 101.
    const offset = Buffer.byteLength(lines.slice(0, 100).join('\n') + '\n');
    const [load] = await insertLoads(s.pool, [{ id: crypto.randomUUID(), table: 'jobs', file: key, bytes: Buffer.byteLength(text) }]);
    await s.pool.query('UPDATE loads SET next_offset = $2, next_line = 101, rows_read = 100, unchanged = 100 WHERE id = $1', [load!.id, offset]);
    // Rows 1-100 now differ from the object: a load reading those lines again would change them back.
    await s.pool.query(`UPDATE jobs SET job = 'kept' WHERE id <= 100`);
    await enqueueLoads(s, [load!]);
    const done = await waitFor(load!.id);
    expect(done).toMatchObject({ status: 'succeeded', rowsRead: 183, updated: 83, unchanged: 100, rejected: 0 });
    expect(Number((await s.pool.query(`SELECT count(*) FROM jobs WHERE job = 'kept'`)).rows[0].count)).toBe(100);
    expect(Number((await s.pool.query(`SELECT count(*) FROM jobs WHERE job LIKE 'Renamed %'`)).rows[0].count)).toBe(83);
  });

  test('presigned upload: POST /uploads, PUT the file without the key, POST /uploads/{id}/load', async () => {
    const body = new Uint8Array(await challenge('departments'));
    expect((await app.request('/uploads', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"table":"departments"}' })).status).toBe(401);
    const created = await post('/uploads', { table: 'departments', bytes: body.length });
    expect(created.status).toBe(201);
    const upload = await created.json();
    expect(upload).toMatchObject({ uploadId: expect.any(String), table: 'departments', method: 'PUT', url: expect.any(String), expiresAt: expect.any(String) });
    expect(new Date(upload.expiresAt).getTime()).toBeGreaterThan(Date.now());
    if (backend === 'local') expect(upload.url).toMatch(new RegExp(`/uploads/${upload.uploadId}\\?expires=\\d+&signature=`));
    else expect(upload.url).toContain(bucket.endpoint);

    // Loading before anything was PUT: 409, no load.
    expect((await post(`/uploads/${upload.uploadId}/load`)).status).toBe(409);
    expect((await app.request(`/loads/${upload.uploadId}`)).status).toBe(404);

    const sent = await put(upload.url, body);
    expect(sent.status).toBe(200);
    const res = await post(`/uploads/${upload.uploadId}/load?wait=true`);
    expect(res.status).toBe(200);
    const load = await res.json();
    expect(load).toMatchObject({ id: upload.uploadId, table: 'departments', status: 'succeeded', rowsRead: 12, unchanged: 12 });
    // Asking again answers the same load.
    const again = await post(`/uploads/${upload.uploadId}/load`);
    expect(again.status).toBe(200);
    expect((await again.json()).id).toBe(load.id);
    expect((await post('/uploads/0b9f5c1e-2d4a-4f7e-9a51-3c2b1d0e8f77/load')).status).toBe(404);
  });

  test('an expired or tampered upload URL: the PUT is refused, nothing is stored, no load starts', async () => {
    const upload = await (await post('/uploads', { table: 'jobs' })).json();
    const { rows } = await s.pool.query<{ file: string }>('SELECT file FROM uploads WHERE id = $1', [upload.uploadId]);
    const key = rows[0]!.file;
    // The same URL as the service makes, signed an hour ago for a minute: expired.
    const expired = await (await storage()).presignPut(key, {
      expiresInSeconds: 60,
      signedAt: new Date(Date.now() - 3600_000),
      serviceUrl: new URL(upload.url).origin + `/uploads/${upload.uploadId}`,
    });
    const body = new Uint8Array(await challenge('jobs'));
    const refused = await put(expired.url, body);
    expect(refused.status).toBe(403);
    if (backend === 'local') {
      expect((await refused.json()).error.code).toBe('url_expired');
      const tampered = upload.url.replace(/signature=[^&]+/, 'signature=AAAA');
      const bad = await put(tampered, body);
      expect(bad.status).toBe(403);
      expect((await bad.json()).error.code).toBe('bad_signature');
    }
    expect(await (await storage()).exists(key)).toBe(false);
    const res = await post(`/uploads/${upload.uploadId}/load`);
    expect(res.status).toBe(409);
    expect((await res.json()).error.message).toMatch(/nothing was uploaded/);
    expect((await app.request(`/loads/${upload.uploadId}`)).status).toBe(404);
  });

  test('upload limits: past LOAD_MAX_BYTES the upload or its load is refused with 413', async () => {
    expect((await post('/uploads', { table: 'jobs', bytes: LIMIT + 1 })).status).toBe(413);
    const upload = await (await post('/uploads', { table: 'jobs' })).json();
    const big = new Uint8Array(LIMIT + 10_000).fill(0x31);
    const sent = await put(upload.url, big);
    if (backend === 'local') {
      // Streamed through the service: cut at the limit, nothing kept.
      expect(sent.status).toBe(413);
    } else {
      expect(sent.status).toBe(200); // the bucket takes any size; the load refuses it
    }
    const res = await post(`/uploads/${upload.uploadId}/load`);
    expect(res.status).toBe(backend === 'local' ? 409 : 413);
    expect((await app.request(`/loads/${upload.uploadId}`)).status).toBe(404);
  });

  test('a size that differs from the one announced is refused before loading', async () => {
    const body = new Uint8Array(await challenge('departments'));
    const upload = await (await post('/uploads', { table: 'departments', bytes: body.length + 5 })).json();
    expect((await put(upload.url, body)).status).toBe(200);
    const res = await post(`/uploads/${upload.uploadId}/load`);
    expect(res.status).toBe(409);
    expect((await res.json()).error.message).toMatch(/has \d+ bytes, not the \d+ announced/);
  });

  if (backend === 'bucket') {
    test('POST /loads {table, url}: an object of the bucket, outside the prefix too; a missing one is 404', async () => {
      const s3 = await storageOf(s.config);
      // The service's storage is s3://bucket/svc; this object is outside that prefix.
      const { openBucket } = await import('../storage/index.js');
      const whole = await openBucket(s.config, bucket.bucket);
      try {
        await whole.put('incoming/departments.csv', await challenge('departments'));
        const res = await post('/loads?wait=true', { table: 'departments', url: `s3://${bucket.bucket}/incoming/departments.csv` });
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({ status: 'succeeded', rowsRead: 12, file: `s3://${bucket.bucket}/incoming/departments.csv` });

        const missing = await post('/loads', { table: 'departments', url: `s3://${bucket.bucket}/incoming/nothing.csv` });
        expect(missing.status).toBe(404);
        expect((await missing.json()).error.message).toBe(`no object s3://${bucket.bucket}/incoming/nothing.csv`);
        const other = await post('/loads', { table: 'departments', url: 's3://someone-else/x.csv' });
        expect(other.status).toBe(400);
        expect((await other.json()).error.message).toMatch(/LOAD_URL_BUCKETS/);
        expect((await post('/loads', { table: 'departments', url: 'http://example.com/x.csv' })).status).toBe(400);
        expect((await post('/loads', { table: 'departments', url: `s3://${bucket.bucket}/a.csv`, path: 'a.csv' })).status).toBe(400);

        // A landing path names landing/ in the bucket.
        await s3.put('landing/drop/jobs.csv', await challenge('jobs'));
        const landed = await post('/loads?wait=true', { table: 'jobs', path: 'drop/jobs.csv' });
        expect(landed.status).toBe(200);
        expect(await landed.json()).toMatchObject({ status: 'succeeded', rowsRead: 183, file: shown('landing/drop/jobs.csv') });
        expect((await post('/loads', { table: 'jobs', path: 'drop/none.csv' })).status).toBe(400);
      } finally {
        await whole.close();
      }
    });

    test('an object gone by the time the load runs: the load fails saying so, and is not retried', async () => {
      const url = `s3://${bucket.bucket}/incoming/gone.csv`;
      const [load] = await insertLoads(s.pool, [{ id: crypto.randomUUID(), table: 'jobs', file: url, bytes: 10 }]);
      await enqueueLoads(s, [load!]);
      const done = await waitFor(load!.id);
      expect(done).toMatchObject({ status: 'failed', attempts: 1 });
      expect(done.error).toBe(`the object ${url} does not exist (deleted or moved after the load was queued?); load it again once it is there`);
    });
  } else {
    test('POST /loads {table, url} needs the bucket storage: 400 saying so', async () => {
      const res = await post('/loads', { table: 'jobs', url: 's3://some-bucket/jobs.csv' });
      expect(res.status).toBe(400);
      expect((await res.json()).error.message).toMatch(/STORAGE_URL=s3:/);
    });
  }

  async function waitFor(id: string): Promise<Record<string, unknown> & { status: string; error: string | null }> {
    for (;;) {
      const load = await (await app.request(`/loads/${id}`)).json();
      if (load.status === 'succeeded' || load.status === 'failed') return load;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});
