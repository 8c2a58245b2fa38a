/** Plain-text output: aligned tables, CSV, and a progress line for long work. */

export function table(rows: Record<string, unknown>[], columns?: string[]): string {
  if (rows.length === 0) return '(no rows)';
  const cols = columns ?? Object.keys(rows[0]!);
  const cells = rows.map((r) => cols.map((c) => (r[c] === null || r[c] === undefined ? '' : String(r[c]))));
  const numeric = cols.map((_, i) => cells.every((row) => row[i] === '' || /^-?\d+(\.\d+)?$/.test(row[i]!)));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) =>
    vals.map((v, i) => (numeric[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(cols), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

export function csv(rows: Record<string, unknown>[], columns?: string[]): string {
  const cols = columns ?? Object.keys(rows[0] ?? {});
  const esc = (v: unknown) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [cols.join(','), ...rows.map((r) => cols.map((c) => esc(r[c])).join(','))].join('\n');
}

const n = (v: number) => Math.round(v).toLocaleString('en-US');

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export interface Progress {
  done: number;
  total?: number | undefined;
  rejected: number;
  elapsedSeconds: number;
  label: string;
}

/** One progress line: a bar when the total is known, rows, rows/s, rejects and ETA. */
export function progressLine(p: Progress, width = 24): string {
  const rate = p.elapsedSeconds > 0 ? p.done / p.elapsedSeconds : 0;
  const parts = [p.label];
  if (p.total && p.total > 0) {
    const frac = Math.min(1, p.done / p.total);
    const filled = Math.round(frac * width);
    parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%`);
    parts.push(`${n(p.done)}/${n(p.total)} rows`);
  } else {
    parts.push(`${n(p.done)} rows`);
  }
  parts.push(`${n(rate)} rows/s`, `${n(p.rejected)} rejected`);
  if (p.total && rate > 0 && p.done < p.total) parts.push(`ETA ${duration((p.total - p.done) / rate)}`);
  return parts.join('  ');
}

/** Rewrites one terminal line in place; on a pipe, prints a line every few seconds instead. */
export class ProgressWriter {
  private lastPlain = 0;
  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  update(line: string): void {
    if (this.out.isTTY) {
      this.out.write(`\r${line.slice(0, (this.out.columns ?? 120) - 1).padEnd((this.out.columns ?? 120) - 1)}`);
    } else if (Date.now() - this.lastPlain > 5000) {
      this.lastPlain = Date.now();
      this.out.write(`${line}\n`);
    }
  }

  finish(line: string): void {
    this.out.write(this.out.isTTY ? `\r${line.padEnd((this.out.columns ?? 120) - 1)}\n` : `${line}\n`);
  }
}
