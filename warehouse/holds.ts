import { stat } from 'node:fs/promises';

/**
 * Which version files (versions/hr-N.duckdb) this process has open, and which one it rewrites.
 * Files are named by device and inode (fileId), which no path spelling or symbolic link changes.
 *
 * Between processes DuckDB's own file locks keep a writer and readers apart: a read-only open
 * takes a shared lock, a read-write open an exclusive one, and the second comer fails. Inside one
 * process they do not: POSIX locks belong to the process, so a read-write open succeeds next to a
 * read-only instance of the same process, and closing either drops the locks of both. The readers
 * and the refresh of one process (`npm start`, the tests) therefore check in here first.
 */
const readers = new Map<string, number>();

/** `dev:ino` of a file, or null when it is gone. */
export async function fileId(file: string): Promise<string | null> {
  const s = await stat(file).catch(() => null);
  return s && `${s.dev}:${s.ino}`;
}

const writing = new Set<string>();

/** Registers a read-only open of the file `id`; false when this process is rewriting it. */
export function holdForRead(id: string): boolean {
  if (writing.has(id)) return false;
  readers.set(id, (readers.get(id) ?? 0) + 1);
  return true;
}

export function releaseRead(id: string): void {
  const n = (readers.get(id) ?? 0) - 1;
  if (n > 0) readers.set(id, n);
  else readers.delete(id);
}

/** Claims the file `id` for rewriting; false when a reader of this process has it open. */
export function claimForWrite(id: string): boolean {
  if (readers.has(id) || writing.has(id)) return false;
  writing.add(id);
  return true;
}

export function releaseWrite(id: string): void {
  writing.delete(id);
}
