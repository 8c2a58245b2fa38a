import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { TestServices } from './services.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

export interface ServerProcess {
  base: string;
  child: ChildProcess;
  alive(): boolean;
  /** Peak resident memory of the process so far, in MB (VmHWM of /proc/<pid>/status). */
  peakRssMb(): number;
  /** The last lines it logged, for a failure message. */
  logTail(): string;
  stop(): Promise<void>;
}

/**
 * The real service (`node main.ts`, API and workers in one process unless `args` say otherwise)
 * on the suite's database, queue prefix and data folder, on a free port of 127.0.0.1. One node
 * process, not `tsx`'s wrapper, so its pid is the process whose memory is measured.
 */
export async function startServerProcess(t: TestServices, env: Record<string, string> = {}, args: string[] = []): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'main.ts', ...args], {
    cwd: ROOT,
    env: {
      ...suiteEnv(t),
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const keep = (d: string) => {
    tail.push(...d.split('\n').filter(Boolean));
    if (tail.length > 50) tail.splice(0, tail.length - 50);
  };
  child.stderr!.setEncoding('utf8').on('data', keep);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start within 60 s:\n${tail.join('\n')}`)), 60_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      keep(d);
      const m = /"port":(\d+)/.exec(d);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code}:\n${tail.join('\n')}`));
    });
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return {
    base: `http://127.0.0.1:${port}`,
    child,
    alive: () => child.exitCode === null && child.signalCode === null,
    peakRssMb() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024;
    },
    logTail: () => tail.join('\n'),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(killer);
    },
  };
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * One HTTP request on a connection of its own (no keep-alive): a socket the server closed while
 * idle cannot be picked for the next request, so a cut connection is the server's doing. Reads
 * the answer even when it comes before the whole body was sent.
 */
export function httpRequest(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string | Uint8Array): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, base), { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A bare worker process (`main.ts --worker`) on the suite's database, queue prefix and data
 * folder, logging warnings to the test's output; the caller kills it (it is not waited for).
 */
export function startWorkerProcess(t: TestServices, settings: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'main.ts', '--worker'], {
    cwd: ROOT,
    env: {
      ...suiteEnv(t),
      LOG_LEVEL: 'warn',
      ...settings,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

/** What a process of the service needs to share the suite's database, queue prefix and data folder (and nothing else of this environment). */
function suiteEnv(t: TestServices): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    DATABASE_URL: t.config.DATABASE_URL,
    REDIS_URL: t.config.REDIS_URL,
    DATA_DIR: t.config.DATA_DIR,
    QUEUE_PREFIX: t.config.QUEUE_PREFIX,
  };
}
