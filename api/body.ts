import { PayloadTooLargeError } from '../core/errors.js';

/**
 * A request body as it arrives, in pieces of at most `sliceBytes`, its bytes counted on the way
 * so a chunked upload cannot pass `limit` (Hono's bodyLimit buffers chunked bodies first). The
 * consumer parses each piece before the next is read; when it stops early (a limit found while
 * parsing), the rest of the upload is left unread.
 */
export async function* bodyChunks(req: Request, limit: number, sliceBytes = 16 * 1024): AsyncGenerator<Uint8Array> {
  const declared = Number(req.headers.get('content-length') ?? NaN);
  if (declared > limit) throw tooLarge(limit);
  if (!req.body) return;
  const reader = req.body.getReader();
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      size += value.byteLength;
      if (size > limit) throw tooLarge(limit);
      for (let o = 0; o < value.byteLength; o += sliceBytes) yield value.subarray(o, o + sliceBytes);
    }
  } finally {
    reader.releaseLock();
  }
}

function tooLarge(limit: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`request body is larger than ${limit} bytes`, { limitBytes: limit });
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
export function mediaType(header: string | undefined): string | undefined {
  const t = header?.split(';')[0]?.trim().toLowerCase();
  return t ? t : undefined;
}

/** Whether a media type (from mediaType) is JSON: application/json or any +json type. */
export function isJson(type: string | undefined): boolean {
  return type === 'application/json' || type?.endsWith('+json') === true;
}
