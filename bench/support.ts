/** Helpers shared by the bench scripts: throwaway databases, a real server process, timing. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

export function dbUrl(name: string, base = PG_ADMIN_URL): string {
  const u = new URL(base);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function adminQuery(sql: string, base = PG_ADMIN_URL): Promise<void> {
  const c = new pg.Client({ connectionString: base });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

export interface Server {
  base: string;
  child: ChildProcess;
  /** Peak resident memory of the server so far, in MB (VmHWM). */
  peakRssMb(): number;
  stop(): Promise<void>;
}

export async function startServer(env: Record<string, string>, args: string[] = [], startMs = 30_000): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within ${startMs / 1000} s`)), startMs);
    let buf = '';
    const onData = (d: string) => {
      buf += d;
      const m = /"port":(\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.stdout!.resume(); // keep draining the log so the server never blocks on it
        resolve(Number(m[1]));
      }
    };
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.stderr!.pipe(process.stderr);
    child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  }).catch((err: unknown) => {
    child.kill('SIGKILL'); // a server that did not come up must not outlive the bench
    throw err;
  });
  return {
    base: `http://127.0.0.1:${port}`,
    child,
    peakRssMb() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024;
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Runs psql with a \copy, returning seconds. */
export function timePsql(url: string, command: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const p = spawn('psql', [url, '-v', 'ON_ERROR_STOP=1', '-q', '-c', command], { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('exit', (code) =>
      code === 0 ? resolve((performance.now() - started) / 1000) : reject(new Error(`psql exited with ${code}`)),
    );
  });
}

export const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

export { rng } from '../loads/sample.js';

export { path };

/** A command's wall seconds and peak RSS, from /usr/bin/time, and what it printed. */
export interface Measured {
  wallS: number;
  rssMB: number;
  stdout: string;
}

/** Runs a command under /usr/bin/time in the repository: elapsed seconds and peak RSS of the process. */
export function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', 'TIME %e %M', cmd, ...args], { env, cwd: ROOT });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const m = /TIME ([\d.]+) (\d+)/.exec(err);
      if (code !== 0 || !m) return reject(new Error(`${cmd} ${args.join(' ')} failed (${code}):\n${err}`));
      resolve({ wallS: Number(m[1]), rssMB: Number(m[2]) / 1024, stdout: out });
    });
  });
}
