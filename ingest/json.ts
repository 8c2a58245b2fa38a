import { BadRequestError } from '../core/errors.js';

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
