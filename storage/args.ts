import { StorageNotFoundError } from './errors.js';
import { MAX_PRESIGN_SECONDS, type Body, type ByteRange } from './storage.js';

/** The body's chunks as bytes (a Readable with an encoding set yields strings). */
export async function* toBytes(body: Body): AsyncGenerator<Uint8Array> {
  if (body instanceof Uint8Array) {
    yield body;
    return;
  }
  for await (const chunk of body as AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>) {
    yield typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
  }
}

export function checkRange(range: ByteRange): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || start < 0) throw new RangeError(`range start must be a whole number ≥ 0, got ${start}`);
  if (end !== undefined && (!Number.isSafeInteger(end) || end < start)) {
    throw new RangeError(`range end must be a whole number ≥ start (${start}), got ${end}`);
  }
}

export function checkExpiry(seconds: number): number {
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PRESIGN_SECONDS) {
    throw new RangeError(`expiresInSeconds must be a whole number from 1 to ${MAX_PRESIGN_SECONDS} (7 days)`);
  }
  return seconds;
}

/** `exists` for every backend: a stat that finds nothing is false; any other failure is thrown. */
export async function existsByStat(stat: () => Promise<unknown>): Promise<boolean> {
  try {
    await stat();
    return true;
  } catch (err) {
    if (err instanceof StorageNotFoundError) return false;
    throw err;
  }
}
