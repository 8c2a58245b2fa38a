import { InvalidStorageKeyError } from './errors.js';

/**
 * Keys are relative paths with `/` between segments, the same on every backend: no leading `/`,
 * no empty, `.` or `..` segment, no backslash, no control character (NUL included), at most
 * 1024 bytes (S3's limit). `.storage-tmp` is the local backend's scratch folder, reserved.
 */
export const TEMP_FOLDER = '.storage-tmp';
const MAX_KEY_BYTES = 1024;

function problem(key: string, { prefix }: { prefix: boolean }): string | null {
  if (typeof key !== 'string') return 'not a string';
  if (!prefix && key.length === 0) return 'empty';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `longer than ${MAX_KEY_BYTES} bytes`;
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'control characters (NUL included) are not allowed';
  if (key.includes('\\')) return 'backslashes are not allowed; use /';
  if (key.startsWith('/')) return 'absolute paths are not allowed';
  const segments = key.split('/');
  // A prefix may end with `/` (everything inside a folder) or stop mid-segment.
  if (prefix && segments.at(-1) === '') segments.pop();
  for (const s of segments) {
    if (s === '') return 'empty segment (// or a trailing /)';
    if (s === '.' || s === '..') return '"." and ".." segments are not allowed';
  }
  if (segments[0] === TEMP_FOLDER) return `${TEMP_FOLDER}/ is reserved`;
  return null;
}

/** Throws InvalidStorageKeyError unless `key` names an object. */
export function checkKey(key: string): string {
  const p = problem(key, { prefix: false });
  if (p) throw new InvalidStorageKeyError(key, p);
  return key;
}

/** Throws unless `prefix` is empty (everything) or a key's beginning. */
export function checkPrefix(prefix: string): string {
  const p = problem(prefix, { prefix: true });
  if (p) throw new InvalidStorageKeyError(prefix, p);
  return prefix;
}
