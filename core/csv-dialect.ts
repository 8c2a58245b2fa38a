import type { Options } from 'csv-parse';

/**
 * csv-parse settings shared by the batch API and file loads: RFC 4180, BOM stripped, LF or CRLF
 * (even mixed), blank lines skipped, ragged records kept so they become rejects, not errors.
 */
export const CSV_OPTIONS = {
  bom: true,
  relax_column_count: true,
  skip_empty_lines: true,
  record_delimiter: ['\r\n', '\n'],
  raw: true,
  info: true,
} as const satisfies Options;

/** csv-parse's `raw` can carry the line break before or after a record; the record is between. */
export function cleanRaw(raw: string): string {
  let start = 0;
  let end = raw.length;
  while (start < end && (raw.charCodeAt(start) === 10 || raw.charCodeAt(start) === 13)) start++;
  while (end > start && (raw.charCodeAt(end - 1) === 10 || raw.charCodeAt(end - 1) === 13)) end--;
  return raw.slice(start, end);
}

/**
 * csv-parse's synchronous core, driven directly: each record arrives while `info.bytes` is the
 * exact byte offset where it ends, and `state.record` holds the fields of the record being read.
 * Not a documented entry point, so this fails loudly if a csv-parse upgrade moves it.
 */
export interface CsvApi {
  parse(buf: Buffer | undefined, end: boolean, push: (record: string[]) => void, close: () => void): Error | undefined;
  info: { bytes: number };
  state: { record: string[]; field: { buf: Buffer; length: number } };
}

export function csvApi(parser: unknown): CsvApi {
  const api = (parser as { api?: CsvApi }).api;
  const field = api?.state?.field;
  if (
    typeof api?.parse !== 'function' ||
    typeof api.info?.bytes !== 'number' ||
    !Array.isArray(api.state?.record) ||
    !Buffer.isBuffer(field?.buf) ||
    typeof field.length !== 'number'
  ) {
    throw new Error('csv-parse no longer exposes Parser#api (parse, info.bytes, state.record, state.field); core/csv-dialect.ts needs updating');
  }
  return api;
}
