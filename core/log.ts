import { createRequire } from 'node:module';
import { pino, type Logger, type LoggerOptions } from 'pino';
import type PinoPretty from 'pino-pretty';

export type { Logger };

/** `json`: one JSON object a line (for machines); `pretty`: coloured lines for a person. */
export type LogFormat = 'json' | 'pretty';

/**
 * One logger per process; children carry request or job ids. Without a format, pretty when
 * stdout is a terminal and JSON lines otherwise (a pipe, a file, a container's log collector).
 */
export function createLogger(level: string, base: Record<string, unknown> = {}, format?: LogFormat): Logger {
  const options: LoggerOptions = { level, base: { pid: process.pid, ...base } };
  if ((format ?? (process.stdout.isTTY ? 'pretty' : 'json')) === 'json') {
    return pino({
      ...options,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    });
  }
  // Loaded only here, so the JSON path never pays for it. Synchronous writes: a fatal line just
  // before process.exit() still reaches the terminal.
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  return pino(options, pretty({ sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true, colorize: process.stdout.isTTY === true }));
}
