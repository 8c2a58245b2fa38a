/**
 * tables/ — reading the stored rows back: keyset pages on id, one row by id, and the whole
 * (filtered) selection as CSV straight from PostgreSQL's COPY. Owns the SQL of those reads and
 * the `from` / `to` bound rule. May import: core/.
 */
export { checkBound } from './filters.js';
export { DEFAULT_LIMIT, exportCsv, MAX_LIMIT, readPage, readRow, type Page, type Row } from './read.js';
export { exportSelect, type HireFilter, type Selection } from './sql.js';
