import fc from 'fast-check';
import { parse } from 'csv-parse/sync';
import { describe, expect, test } from 'vitest';
import { CSV_OPTIONS } from '../core/csv-dialect.js';
import { AppError } from '../core/errors.js';
import { TABLES } from '../core/tables.js';
import { parseBody } from '../ingest/parse.js';

/**
 * The batch parsers against their references, whatever the text and however it arrives in pieces:
 * the JSON scanner accepts exactly what JSON.parse accepts (within the nesting bound) and finds the
 * same rows; the streamed CSV reader finds the records csv-parse/sync finds, and fails where it fails.
 */

async function* pieces(buf: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  for (let at = 0, i = 0; at < buf.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]!);
    yield buf.subarray(at, at + n);
    at += n;
  }
}

const run = (text: string, type: string, sizes: number[]) =>
  parseBody(pieces(Buffer.from(text), sizes), type, TABLES.jobs).then(
    (b) => ({ ok: true as const, rows: b.rows }),
    (err: unknown) => {
      if (!(err instanceof AppError)) throw err;
      return { ok: false as const, status: err.status, message: err.message };
    },
  );

function depth(v: unknown): number {
  if (v === null || typeof v !== 'object') return 0;
  return 1 + Math.max(0, ...Object.values(v as object).map(depth));
}

/** What the scanner makes of a row JSON.parse decoded: members kept, nested values emptied. */
function asScanned(row: unknown): unknown {
  if (Array.isArray(row)) return [];
  if (row === null || typeof row !== 'object') return row;
  return Object.fromEntries(
    Object.entries(row).map(([k, v]) => [k, v !== null && typeof v === 'object' ? (Array.isArray(v) ? [] : {}) : v]),
  );
}

const sizes = fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 5 });
const jsonBody = fc.oneof(
  fc.array(fc.jsonValue({ maxDepth: 4 })).map((rows) => JSON.stringify(rows)),
  fc.array(fc.jsonValue({ maxDepth: 3 })).map((rows) => JSON.stringify({ other: [1, { rows: 2 }], rows })),
  fc.json({ maxDepth: 3 }),
);
const mangled = fc.tuple(jsonBody, fc.nat(), fc.constantFrom('', ',', ']', '}', '"', '\\', '1', ' ', 'e', '-', '\u0000', '[')).map(
  ([t, at, c]) => {
    const p = at % (t.length + 1);
    return t.slice(0, p) + c + t.slice(p + (c === '' ? 1 : 0));
  },
);

describe('JSON bodies', () => {
  test('accepted exactly when JSON.parse accepts them, with the same rows', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(jsonBody, mangled), sizes, async (text, cut) => {
        let ref: unknown;
        let valid = true;
        try {
          ref = JSON.parse(text);
        } catch {
          valid = false;
        }
        const got = await run(text, 'application/json', cut);
        if (!valid) {
          expect(got).toMatchObject({ ok: false, status: 400 });
          return;
        }
        if (depth(ref) > 32) return;
        const rows = Array.isArray(ref) ? ref : ref !== null && typeof ref === 'object' && Array.isArray((ref as { rows?: unknown }).rows) ? (ref as { rows: unknown[] }).rows : undefined;
        if (rows === undefined) {
          expect(got).toMatchObject({ ok: false, status: 400, message: expect.stringMatching(/must be a JSON array/) });
          return;
        }
        expect(got.ok).toBe(true);
        expect(got.ok && got.rows.map((r) => (r !== null && typeof r === 'object' && !Array.isArray(r) ? { ...r } : r))).toEqual(rows.map(asScanned));
      }),
      { numRuns: 3000 },
    );
  });

  test('nesting past 32 levels is a 400 at once, however the body continues', async () => {
    for (const n of [33, 100, 5000]) {
      const got = await run('['.repeat(n) + ']'.repeat(n), 'application/json', [7]);
      expect(got).toMatchObject({ ok: false, status: 400, message: expect.stringMatching(/nested deeper than 32 levels at line 1, column 33/) });
    }
    expect(await run('['.repeat(32) + ']'.repeat(32), 'application/json', [7])).toMatchObject({ ok: true });
  });
});

describe('CSV bodies', () => {
  const field = fc.oneof(
    fc.string({ unit: fc.constantFrom('a', 'b', ',', '"', '\n', '\r', ' ', 'é', '😀'), maxLength: 8 }),
    fc.string({ maxLength: 4 }).map((s) => `"${s.replace(/"/g, '""')}"`),
  );
  const csv = fc
    .tuple(fc.array(fc.array(field, { minLength: 1, maxLength: 4 }), { maxLength: 8 }), fc.constantFrom('\n', '\r\n'), fc.boolean())
    .map(([records, eol, bom]) => (bom ? '\ufeff' : '') + records.map((r) => r.join(',')).join(eol));

  test('the records csv-parse/sync finds, and an error where it fails', async () => {
    await fc.assert(
      fc.asyncProperty(csv, sizes, async (text, cut) => {
        let ref: string[][] | undefined;
        try {
          ref = parse(text, { ...CSV_OPTIONS, raw: false, info: false }) as string[][];
        } catch {
          ref = undefined;
        }
        const got = await run(text, 'text/csv', cut);
        if (ref === undefined) expect(got).toMatchObject({ ok: false, status: 400 });
        else expect(got).toEqual({ ok: true, rows: ref });
      }),
      { numRuns: 3000 },
    );
  });
});

test('a CSV field past FIELD_MAX_BYTES is counted, not kept, and its row is a reject saying how long it was', async () => {
  const name = 'é😀x'.repeat(200_000); // 1.8 MB of 1-, 2- and 4-byte characters, cut anywhere by the pieces
  const text = `1,ok\n2,"${name}"\n3,${'y'.repeat(65_536)}\n`;
  const body = await parseBody(pieces(Buffer.from(text), [16_384, 7, 1000]), 'text/csv', TABLES.jobs);
  expect(body.rows).toHaveLength(3);
  expect(body.issuesOf!(0)).toBeUndefined();
  expect(body.issuesOf!(1)).toEqual([{ field: 'job', message: `is ${Buffer.byteLength(name)} bytes long; at most 65536 are allowed` }]);
  expect((body.rows[1] as string[])[1]).toBe('');
  expect(body.issuesOf!(2)).toBeUndefined(); // exactly at the limit
  expect(body.rawOf(1)).toMatchObject({ truncated: true });
  expect(Buffer.byteLength(body.rawOf(1).raw)).toBeLessThanOrEqual(4096);
});
