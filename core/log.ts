import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout; one logger per process, children carry request or job ids. */
export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { pid: process.pid, ...base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
