import { checkDatetime, FieldError } from '../core/rules.js';

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;

/**
 * A `from` / `to` bound: the ingest rule for date-times (so the same text means the same instant
 * everywhere), plus a date alone, which means its midnight UTC (`--from 2021-01-01`).
 * Returns the normalized date-time, or why it is not one.
 */
export function checkBound(v: string): string | FieldError {
  const s = v.trim();
  const r = checkDatetime(DATE_ONLY.test(s) ? `${s}T00:00:00Z` : s);
  if (r instanceof FieldError) {
    if (!r.message.startsWith('must be')) return r;
    return new FieldError(`must be a date (YYYY-MM-DD, midnight UTC) or a date-time: ${r.message.slice('must be '.length)}`);
  }
  // PostgreSQL would round a fraction past microseconds; the rule truncates it.
  return r.replace(/(\.\d{6})\d+/, '$1');
}
