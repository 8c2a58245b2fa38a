import { randomUUID } from 'node:crypto';
import { mkdir, readdir, stat, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { runRetention } from '../loads/retention.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { postCsv, postJson } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

/** Retention of uploads and rejects, and uploads refused on a full disk (issue 11, item 7). */

type Load = { id: string; status: string; file: string; rejected: number; error: string | null; fileRemovedAt: string | null };

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) if (e.isFile()) out.push(e.name);
  return out;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('a disk nearly full', () => {
  let s: TestServices;
  beforeAll(async () => {
    s = await createTestServices();
  });
  afterAll(() => s?.cleanup());

  const uploads = () => filesUnder(path.join(s.config.dirs.landing, 'uploads'));
  const loadCount = async () => (await s.pool.query('SELECT count(*)::int AS n FROM loads')).rows[0].n as number;

  test('refuses an upload with 507 before writing, below MIN_FREE_DISK_BYTES', async () => {
    const app = createApp({ ...s, config: { ...s.config, MIN_FREE_DISK_BYTES: 2 ** 60 } });
    const res = await postCsv(app, '/loads?table=jobs', '1,Clerk\n');
    expect(res.status).toBe(507);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('insufficient_storage');
    expect(error.message).toMatch(/nearly full.*MIN_FREE_DISK_BYTES.*nothing was kept/);
    expect(error.message).not.toContain(s.config.DATA_DIR);
    const form = new FormData();
    form.append('jobs', new Blob(['1,Clerk\n']), 'jobs.csv');
    expect((await app.request('/loads', { method: 'POST', body: form })).status).toBe(507);
    expect(await uploads()).toEqual([]);
    expect(await loadCount()).toBe(0);
  }, 90_000);

  test('stops an upload with 507 when the disk fills while it streams, and removes the partial file', async () => {
    // Leave 128 MiB of room on this disk: the upload passes the first check and fills it.
    await mkdir(s.config.dirs.landing, { recursive: true });
    const fs = await statfs(s.config.dirs.landing);
    const free = fs.bavail * fs.bsize;
    const app = createApp({ ...s, config: { ...s.config, MIN_FREE_DISK_BYTES: free - 128 * 2 ** 20 } });
    const chunk = new TextEncoder().encode('1,Clerk\n'.repeat(2 ** 17)); // 1 MiB
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 2 ** 30) return controller.close();
        sent += chunk.byteLength;
        controller.enqueue(chunk);
      },
    });
    const res = await app.request('/loads?table=jobs', { method: 'POST', headers: { 'content-type': 'text/csv' }, body, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(507);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('insufficient_storage');
    // Refused on the way, not at the start, and long before the body's end.
    expect(sent).toBeGreaterThan(16 * 2 ** 20);
    expect(sent).toBeLessThan(2 ** 30);
    expect(await uploads()).toEqual([]);
    expect(await loadCount()).toBe(0);
  }, 120_000);
});

describe('retention', () => {
  let s: TestServices;
  let workers: Workers | undefined;
  let app: ReturnType<typeof createApp>;
  beforeAll(async () => {
    // A second-by-second schedule and about 1.7 s of retention, so the test sees it work.
    s = await createTestServices({ UPLOAD_RETENTION_DAYS: '0.00002', REJECT_RETENTION_DAYS: '0.00002', RETENTION_CRON: '* * * * * *' });
    app = createApp(s);
  });
  afterAll(async () => {
    await workers?.close();
    await s?.cleanup();
  }, 90_000);

  const getLoad = async (id: string) => (await (await app.request(`/loads/${id}`)).json()) as Load;

  test('removes the uploads of finished loads and old rejects; the loads keep their records, and landing files stay', async () => {
    // Queued before any worker runs; its file goes missing before it starts.
    const early = (await (await postCsv(app, '/loads?table=departments', '1,Sales\n')).json()) as Load;
    workers = await startWorkers(s);
    const { rm } = await import('node:fs/promises');
    await rm(path.join(s.config.DATA_DIR, early.file));

    const uploaded = (await (await postCsv(app, '/loads?table=jobs&wait=true', '1,Clerk\n0,Bad id\n')).json()) as Load;
    expect(uploaded).toMatchObject({ status: 'succeeded', rejected: 1 });
    await writeFile(path.join(s.config.dirs.landing, 'mine.csv'), '2,Driver\n');
    const own = (await (await postJson(app, '/loads?wait=true', { table: 'jobs', path: 'mine.csv' })).json()) as Load;
    expect(own.status).toBe('succeeded');
    expect((await postCsv(app, '/ingest/jobs', '3,Cook\n-1,Bad\n')).status).toBe(200);
    // An upload no load names (its request died before recording it), from long ago.
    const orphanDir = path.join(s.config.dirs.landing, 'uploads', '2000-01-01');
    await mkdir(orphanDir, { recursive: true });
    await writeFile(path.join(orphanDir, `${randomUUID()}.jobs.csv`), '9,Ghost\n');

    const failed = await until('the early load to fail', async () => {
      const l = await getLoad(early.id);
      return l.status === 'failed' ? l : undefined;
    });
    expect(failed.error).toMatch(/the file of this load no longer exists: an upload is removed UPLOAD_RETENTION_DAYS after its load finished/);

    const removed = await until('the upload to be removed', async () => {
      const l = await getLoad(uploaded.id);
      return l.fileRemovedAt ? l : undefined;
    });
    // The record stays, with its figures.
    expect(removed).toMatchObject({ status: 'succeeded', rejected: 1, file: uploaded.file });
    await expect(stat(path.join(s.config.DATA_DIR, uploaded.file))).rejects.toThrow();
    await until('the rejects to be pruned', async () =>
      (await s.pool.query('SELECT count(*)::int AS n FROM rejects')).rows[0].n === 0 ? true : undefined,
    );
    const rejects = await app.request(`/loads/${uploaded.id}/rejects`);
    expect(rejects.status).toBe(200);
    expect(await rejects.text()).toBe('');
    // The user's own landing file is theirs: kept, and its load not marked.
    expect((await stat(path.join(s.config.dirs.landing, 'mine.csv'))).isFile()).toBe(true);
    expect((await getLoad(own.id)).fileRemovedAt).toBeNull();
    await until('the orphan to be removed', async () => ((await filesUnder(orphanDir)).length === 0 ? true : undefined));
    // The tables keep what was loaded.
    expect((await s.pool.query('SELECT id FROM jobs ORDER BY id')).rows.map((r) => r.id)).toEqual([1, 2, 3]);
  }, 120_000);

  test('0 days keeps everything', async () => {
    const keep = { ...s.config, UPLOAD_RETENTION_DAYS: 0, REJECT_RETENTION_DAYS: 0 };
    await postCsv(app, '/ingest/jobs', '-2,Bad\n');
    expect(await runRetention({ ...s, config: keep }, Date.now() + 365 * 86_400_000)).toEqual({ uploadsRemoved: 0, orphansRemoved: 0, rejectsRemoved: 0 });
  }, 90_000);
});
