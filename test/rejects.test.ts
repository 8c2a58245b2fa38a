import { afterAll, beforeAll, expect, test } from 'vitest';
import { storeRejects, type Reject } from '../pg/index.js';
import { rejectsOf } from '../loads/index.js';
import { createTestServices, type TestServices } from './support/services.js';

/** The rejects table takes whatever a reject holds, in bounded statements, and reads back in bounded pages. */
let s: TestServices;
beforeAll(async () => {
  s = await createTestServices({}, { embedded: false });
});
afterAll(() => s?.cleanup());

const LOAD = '00000000-0000-4000-8000-000000000001';

test('3,000 rejects of long raw text with NUL, lone surrogates and odd keys: all stored, cut and marked, in several statements', async () => {
  const rejects: Reject[] = Array.from({ length: 3000 }, (_, i) => ({
    position: i + 1,
    raw: i % 3 === 0 ? `${i},${'é\u0000\ud800'.repeat(3000)}` : `${i},short`,
    errors: [{ field: i % 2 ? '\u0000key\udc00' : 'job', message: 'must not contain the NUL character' }],
    ...(i === 1 ? { truncated: true } : {}),
  }));
  await storeRejects(s.pool, 'load', LOAD, 'jobs', rejects, { rawMaxBytes: 4096 });
  const { rows } = await s.pool.query(
    `SELECT count(*)::int AS n, max(octet_length(raw))::int AS longest, count(*) FILTER (WHERE raw_truncated)::int AS cut,
            count(*) FILTER (WHERE raw LIKE '%\u2400%' AND raw LIKE '%\ufffd%')::int AS visible,
            count(*) FILTER (WHERE errors->0->>'field' = '\u2400key\ufffd')::int AS keys
       FROM rejects WHERE source_id = $1`,
    [LOAD],
  );
  expect(rows[0]).toEqual({ n: 3000, longest: 4096, cut: 1001, visible: 1000, keys: 1500 });

  // Read back as GET /loads/{id}/rejects streams them: every line once, in order, in small pages.
  const lines: { line: number; truncated?: boolean }[] = [];
  let pages = 0;
  for await (const page of rejectsOf(s.pool, LOAD, { pageRows: 1000, pageBytes: 1024 * 1024 })) {
    pages++;
    for (const l of page.split('\n').filter(Boolean)) lines.push(JSON.parse(l));
  }
  expect(lines.map((l) => l.line)).toEqual(rejects.map((r) => r.position));
  expect(lines.filter((l) => l.truncated).length).toBe(1001);
  expect(pages).toBeGreaterThanOrEqual(4);
});
