import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, expect, test } from 'vitest';

/**
 * The newcomer's path: `npm start -- --demo` with neither DATABASE_URL nor REDIS_URL, as on a
 * machine with only Node.js. The real entry point runs in its own process.
 */
const ROOT = path.resolve(import.meta.dirname, '..');
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'hrtest-demo-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  url: string;
  messages: string[];
}

async function start(): Promise<Started> {
  const env: Record<string, string> = { PATH: process.env.PATH!, DATA_DIR: dataDir, PORT: '0', WAREHOUSE_REFRESH_DEBOUNCE_MS: '100' };
  const child = spawn(process.execPath, ['--import', 'tsx', 'main.ts', '--demo'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const messages: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as { msg: string; port?: number };
      messages.push(m.msg);
      if (m.msg.startsWith('listening on')) resolve(`http://127.0.0.1:${m.port}`);
    });
    child.on('exit', (code) => reject(new Error(`main.ts exited with ${code}: ${stderr}`)));
  });
  return { child, url, messages };
}

async function stop(s: Started): Promise<number | null> {
  s.child.kill('SIGTERM');
  const [code] = await once(s.child, 'exit');
  return code as number | null;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('npm start -- --demo without DATABASE_URL or REDIS_URL serves the metrics of a generated sample, and keeps them', async () => {
  const first = await start();
  try {
    expect(first.messages).toEqual(
      expect.arrayContaining([
        'database: embedded PostgreSQL (PGlite), because DATABASE_URL is unset',
        'jobs: in-process (REDIS_URL unset)',
      ]),
    );
    const get = (p: string) => fetch(first.url + p).then((r) => r.json() as Promise<Record<string, unknown>>);
    const loads = await until('the demo loads', async () => {
      const { loads } = (await get('/loads')) as { loads: { table: string; status: string; inserted: number; rejected: number }[] };
      return loads.length === 3 && loads.every((l) => l.status === 'succeeded') ? loads : undefined;
    });
    const hires = loads.find((l) => l.table === 'hired_employees')!;
    expect(hires.inserted + hires.rejected).toBe(20_000);
    expect(hires.rejected).toBeGreaterThan(0); // 1% break a rule on purpose, and show up as rejects
    const tables = await until('the warehouse', async () => {
      const w = (await get('/warehouse')) as { status: string; tables: Record<string, number> };
      return w.status === 'ready' && w.tables.fact_hires === hires.inserted ? w.tables : undefined;
    });
    expect(tables).toMatchObject({ dim_department: 12, dim_job: 183 });
    const above = (await fetch(`${first.url}/analytics/departments-above-mean?year=2021`).then((r) => r.json())) as { hired: number }[];
    expect(above.length).toBeGreaterThan(0);
    expect((await fetch(first.url + '/').then((r) => r.text())).toLowerCase()).toContain('<!doctype html>');
  } finally {
    expect(await stop(first)).toBe(0);
  }

  // The data lives under DATA_DIR: a second start finds it and loads nothing more.
  const second = await start();
  try {
    await until('the demo check', async () => (second.messages.includes('demo: the store is not empty (or loads are under way); nothing loaded') ? true : undefined), 15_000);
    const { loads } = (await fetch(second.url + '/loads').then((r) => r.json())) as { loads: unknown[] };
    expect(loads).toHaveLength(3);
  } finally {
    expect(await stop(second)).toBe(0);
  }
  // Two starts of embedded PostgreSQL and a 20,000-row load: seconds on a quiet machine, minutes on a busy one.
}, 180_000);
