import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { blobCopyStats } from '../pg/blob-copy.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { CHALLENGE_DIR } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * Embedded loads write through PGlite's /dev/blob (pg/blob-copy.ts) with the per-row FK triggers
 * skipped for the chunk's transaction. The challenge files, loaded on a PostgreSQL server and on
 * the embedded database side by side, must give the same rows, the same figures and the same
 * rejects; loading them again must change nothing on either.
 */
interface Side {
  s: TestServices;
  workers: Workers;
  app: ReturnType<typeof createApp>;
}
const sides: Record<'server' | 'embedded', Side> = {} as never;

beforeAll(async () => {
  for (const mode of ['server', 'embedded'] as const) {
    // Small chunks: many transactions, the direct COPY and the staging-table upsert both used.
    const s = await createTestServices({ LOAD_CHUNK_ROWS: '300' }, { embedded: mode === 'embedded' });
    sides[mode] = { s, workers: await startWorkers(s), app: createApp(s) };
  }
});
afterAll(async () => {
  for (const side of Object.values(sides)) {
    await side.workers?.close();
    await side.s?.cleanup();
  }
});

async function load(side: Side, table: string) {
  const res = await side.app.request(`/loads?table=${table}&wait=true`, {
    method: 'POST',
    headers: { 'content-type': 'text/csv' },
    body: new Uint8Array(await readFile(path.join(CHALLENGE_DIR, `${table}.csv`))),
  });
  expect(res.status).toBe(200);
  const l = (await res.json()) as Record<string, unknown>;
  const rejects = (await (await side.app.request(`/loads/${l.id as string}/rejects`)).text()).trimEnd().split('\n');
  const { id: _id, file: _file, startedAt: _s, finishedAt: _f, createdAt: _c, ...figures } = l;
  return { figures, rejects };
}

async function digest(side: Side, table: string): Promise<string> {
  const { rows } = await side.s.pool.query(`SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') AS d FROM ${table} t`);
  return rows[0].d;
}

test('the challenge files give the same rows, figures and rejects embedded (through the blob) as on a server, twice', async () => {
  for (const round of [1, 2]) {
    const before = blobCopyStats.statements;
    for (const table of ['departments', 'jobs', 'hired_employees']) {
      const server = await load(sides.server, table);
      const embedded = await load(sides.embedded, table);
      expect(embedded).toEqual(server);
      expect(await digest(sides.embedded, table)).toBe(await digest(sides.server, table));
    }
    if (round === 1) expect(blobCopyStats.statements).toBeGreaterThan(before); // the embedded loads took the blob path
  }
  const { rows } = await sides.embedded.s.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM hired_employees');
  expect(rows[0]!.n).toBe(1929);
});
