import { setImmediate as nextTurn } from 'node:timers/promises';
import { AppError, BadRequestError, UnsupportedMediaTypeError } from '../core/errors.js';
import type { FieldIssue, TableDef } from '../core/tables.js';
import { DEFAULT_FIELD_MAX_BYTES } from '../core/rules.js';
import { DEFAULT_REJECT_RAW_MAX_BYTES } from '../pg/index.js';
import { CsvRows } from './csv-rows.js';
import { JsonRows } from './json-rows.js';

export const MAX_ROWS = 1000;

export interface ParsedBody {
  /** Each row: a JSON value (a row object holds its top-level members only), or a CSV record's fields. */
  rows: unknown[];
  kind: 'json' | 'csv';
  /** The source text of row i, for rejects, cut at the raw cap (REJECT_RAW_MAX_BYTES). */
  rawOf: (i: number) => { raw: string; truncated: boolean };
  /** Reasons the parser found to reject row i whatever the rules say (width, encoding), if any. */
  issuesOf?: (i: number) => FieldIssue[] | undefined;
}

/**
 * A batch body as rows: a JSON array, `{"rows": [...]}`, or CSV records. The body is parsed as it
 * arrives, one slice at a time with a turn of the event loop between slices, so a large body
 * never blocks other requests for long; a limit found while parsing (rows, nesting, syntax)
 * answers at once and the rest of the body is not read.
 */
export async function parseBody(
  body: AsyncIterable<Uint8Array>,
  type: string | undefined,
  table: TableDef,
  { maxRows = MAX_ROWS, rawMaxBytes = DEFAULT_REJECT_RAW_MAX_BYTES, fieldMaxBytes = DEFAULT_FIELD_MAX_BYTES } = {},
): Promise<ParsedBody> {
  const json = type === 'application/json' || type?.endsWith('+json');
  if (!json && type !== 'text/csv' && type !== 'application/csv') {
    throw new UnsupportedMediaTypeError(type, ['application/json', 'text/csv']);
  }
  const chunks = body[Symbol.asyncIterator]();
  try {
    return json
      ? await parseJsonRows(chunks, maxRows, rawMaxBytes)
      : await parseCsvRows(chunks, new CsvRows(table, maxRows, rawMaxBytes, fieldMaxBytes));
  } catch (err) {
    // The answer is known, but a client still sending would see its connection cut instead of
    // it: read the rest (up to INGEST_MAX_BYTES, counted by the source) without parsing it.
    if (err instanceof AppError) await drain(chunks);
    throw err;
  }
}

async function parseJsonRows(chunks: AsyncIterator<Uint8Array>, maxRows: number, rawMaxBytes: number): Promise<ParsedBody> {
  const rows = new JsonRows(maxRows, rawMaxBytes);
  // JSON text is UTF-8 (RFC 8259): a body that is not is refused whole, saying near which byte.
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let read = 0;
  const decode = (chunk?: Uint8Array) => {
    try {
      return chunk ? decoder.decode(chunk, { stream: true }) : decoder.decode();
    } catch {
      throw new BadRequestError(`request body is not valid UTF-8 (near byte ${read})`, { byte: read });
    }
  };
  for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
    rows.write(decode(next.value));
    read += next.value.byteLength;
    await nextTurn();
  }
  rows.write(decode());
  rows.end();
  return { rows: rows.rows, kind: 'json', rawOf: (i) => rows.rawOf(i), issuesOf: (i) => rows.issuesOf(i) };
}

async function parseCsvRows(chunks: AsyncIterator<Uint8Array>, records: CsvRows): Promise<ParsedBody> {
  for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
    const chunk = next.value;
    records.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    await nextTurn();
  }
  records.end();
  return { rows: records.rows, kind: 'csv', rawOf: (i) => records.rawOf(i), issuesOf: (i) => records.issuesOf(i) };
}

async function drain(chunks: AsyncIterator<Uint8Array>): Promise<void> {
  try {
    while (!(await chunks.next()).done);
  } catch {
    // Past the byte limit, or the client went away: the first answer stands.
  }
}
