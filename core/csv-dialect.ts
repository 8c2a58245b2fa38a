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
