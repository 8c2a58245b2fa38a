import { CsvError, parse } from 'csv-parse/sync';
import { CSV_OPTIONS, cleanRaw } from '../core/csv-dialect.js';
import { BadRequestError, UnsupportedMediaTypeError } from '../core/errors.js';
import { isHeader, type TableDef } from '../core/tables.js';
import { parseJson } from './json.js';

export const MAX_ROWS = 1000;

export interface ParsedBody {
  /** Each row: a JSON value, or a CSV record's fields. */
  rows: unknown[];
  kind: 'json' | 'csv';
  /** The raw text of row i, for rejects: computed only for rows that are rejected. */
  rawOf: (i: number) => string;
}

/** A batch body as rows: a JSON array, `{"rows": [...]}`, or CSV records. */
export function parseBody(text: string, type: string | undefined, table: TableDef): ParsedBody {
  if (type === 'application/json' || type?.endsWith('+json')) {
    if (text.trim() === '') throw new BadRequestError('body is empty; send a JSON array of rows or {"rows": [...]}');
    const body = parseJson(text);
    const rows = Array.isArray(body)
      ? body
      : body !== null && typeof body === 'object' && Array.isArray((body as { rows?: unknown }).rows)
        ? (body as { rows: unknown[] }).rows
        : undefined;
    if (!rows) throw new BadRequestError('body must be a JSON array of rows or an object {"rows": [...]}');
    return { rows, kind: 'json', rawOf: (i) => JSON.stringify(rows[i]) ?? String(rows[i]) };
  }
  if (type === 'text/csv' || type === 'application/csv') {
    let records: { record: string[]; raw: string }[];
    try {
      records = parse(text, CSV_OPTIONS) as unknown as { record: string[]; raw: string }[];
    } catch (err) {
      if (err instanceof CsvError) {
        const line = (err as CsvError & { lines?: number }).lines;
        throw new BadRequestError(`body is not valid CSV${line ? ` near line ${line}` : ''}: ${err.message}`, {
          line,
        });
      }
      throw err;
    }
    if (records.length > 0 && isHeader(records[0]!.record, table)) records.shift();
    return { rows: records.map((r) => r.record), kind: 'csv', rawOf: (i) => cleanRaw(records[i]!.raw) };
  }
  throw new UnsupportedMediaTypeError(type, ['application/json', 'text/csv']);
}

