/**
 * Which version files (versions/hr-N.duckdb) this process has open, and which one it rewrites.
 *
 * Between processes DuckDB's own file locks keep a writer and readers apart: a read-only open
 * takes a shared lock, a read-write open an exclusive one, and the second comer fails. Inside one
 * process they do not: POSIX locks belong to the process, so a read-write open succeeds next to a
 * read-only instance of the same process, and closing either drops the locks of both. The readers
 * and the refresh of one process (`npm start`, the tests) therefore check in here first.
 */
const readers = new Map<string, number>();
const writing = new Set<string>();

/** Registers a read-only open of `file`; false when this process is rewriting it. */
export function holdForRead(file: string): boolean {
  if (writing.has(file)) return false;
  readers.set(file, (readers.get(file) ?? 0) + 1);
  return true;
}

export function releaseRead(file: string): void {
  const n = (readers.get(file) ?? 0) - 1;
  if (n > 0) readers.set(file, n);
  else readers.delete(file);
}

/** Claims `file` for rewriting; false when a reader of this process has it open. */
export function claimForWrite(file: string): boolean {
  if (readers.has(file) || writing.has(file)) return false;
  writing.add(file);
  return true;
}

export function releaseWrite(file: string): void {
  writing.delete(file);
}
