import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { layoutOf } from '../warehouse/layout.js';
import { refreshWarehouse } from '../warehouse/refresh.js';
import { seed } from './support/warehouse.js';
import { createTestServices, type TestServices } from './support/services.js';

let s: TestServices;

beforeAll(async () => {
  s = await createTestServices();
  await seed(s.pool, 200);
  await refreshWarehouse(s);
});
afterAll(() => s.cleanup());

interface Line {
  ready?: boolean;
  held?: number;
  fresh?: number;
  version?: number;
  error?: string;
  done?: boolean;
  rounds?: number;
}

test('another process reads the published file while refreshes run, and the API picks up each new version', async () => {
  const file = layoutOf(s.config.dirs.warehouse).duckdb;
  const script = fileURLToPath(new URL('./support/duck-reader.mjs', import.meta.url));
  // It reads until its stdin closes: after the last refresh, not after a guessed duration.
  const child = spawn(process.execPath, [script, file], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  let buffer = '';
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let i;
    while ((i = buffer.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffer.slice(0, i)) as Line;
      buffer = buffer.slice(i + 1);
      lines.push(line);
      if (line.ready) ready();
    }
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await isReady;

  // Refreshes while the other process holds the file open read-only and keeps reopening it.
  const app = createApp(s);
  const versions: string[] = [];
  for (let i = 0; i < 5; i++) {
    await s.pool.query(`INSERT INTO hired_employees VALUES ($1, 'Reader Test', '2021-05-05T00:00:00Z', 1, 1)`, [10_000 + i]);
    const r = await refreshWarehouse(s);
    expect(r.build).toBe('incremental');
    const res = await app.request('/analytics/departments-above-mean?year=2021');
    expect(res.status).toBe(200);
    versions.push(res.headers.get('x-warehouse-version')!);
  }
  expect(new Set(versions).size).toBe(5);
  for (let i = 0; lines.filter((l) => l.fresh !== undefined).length <= 5 && i < 500; i++) await sleep(20);
  child.stdin.end();

  expect(await exited, stderr).toBe(0);
  expect(lines.filter((l) => l.error)).toEqual([]);
  const rounds = lines.filter((l) => l.fresh !== undefined);
  expect(rounds.length).toBeGreaterThan(5);
  // The instance held since the start keeps its snapshot; reopening sees each new version.
  expect(new Set(rounds.map((l) => l.held))).toEqual(new Set([200]));
  expect(rounds.at(-1)!.fresh).toBe(205);
  const seen = rounds.map((l) => l.fresh!);
  expect(seen).toEqual([...seen].sort((a, b) => a - b));
});
