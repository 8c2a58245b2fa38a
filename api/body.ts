import { BadRequestError, PayloadTooLargeError } from '../core/errors.js';

/**
 * Reads a request body as UTF-8 text, counting bytes as they arrive so a chunked upload cannot
 * grow past `limit` in memory (Hono's bodyLimit buffers chunked bodies first).
 */
export async function readText(req: Request, limit: number): Promise<string> {
  const declared = Number(req.headers.get('content-length') ?? NaN);
  if (declared > limit) throw tooLarge(limit);
  if (!req.body) return '';
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new BadRequestError('request body is not valid UTF-8');
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

/** JSON.parse with an error that says where (line and column) the text stops being JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const at = /position (\d+)/.exec(message);
    let where: { line: number; column: number } | undefined;
    if (at) {
      const pos = Number(at[1]);
      const before = text.slice(0, pos);
      const line = before.split('\n').length;
      where = { line, column: pos - before.lastIndexOf('\n') };
    } else if (/end of JSON input/.test(message)) {
      const lines = text.split('\n');
      where = { line: lines.length, column: lines.at(-1)!.length + 1 };
    }
    throw new BadRequestError(
      `body is not valid JSON${where ? ` at line ${where.line}, column ${where.column}` : ''}: ${message}`,
      where,
    );
  }
}
