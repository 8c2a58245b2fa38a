import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { createPool } from '../core/db.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { CHALLENGE_DIR } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * The `hr` command as a user runs it (`node cli/hr.mjs`, a process of its own) against a real
 * server on a port, with the exit code of each documented outcome and what it prints.
 */
const ROOT = path.resolve(import.meta.dirname, '..');
const fixture = (table: string) => path.join(CHALLENGE_DIR, `${table}.csv`);

let s: TestServices;
let workers: Workers;
const servers: ServerType[] = [];
let url: string;

async function listen(app: ReturnType<typeof createApp>): Promise<string> {
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  servers.push(server);
  if (!server.listening) await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  s = await createTestServices({ WAREHOUSE_REFRESH_DEBOUNCE_MS: '100' });
  workers = await startWorkers(s);
  url = await listen(createApp(s));
});
afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((r) => server.close(r))));
  await workers?.close();
  await s?.cleanup();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `hr --url URL ...args` to its end; the environment's HR_* settings are left out. */
async function hr(args: string[], at = url): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HR_')));
  const child = spawn(process.execPath, ['cli/hr.mjs', '--url', at, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

describe('hr exit codes', () => {
  test('0: a load that succeeds prints its figures', async () => {
    const run = await hr(['load', fixture('departments')]);
    expect(run).toMatchObject({ code: 0, stderr: expect.not.stringMatching(/failed/) });
    expect(run.stdout).toMatch(/^id\s+table\s+status\s+rowsRead\s+inserted/m);
    expect(run.stdout).toMatch(/\bdepartments\s+succeeded\s+12\s+12\b/);
    const { rows } = await s.pool.query('SELECT count(*)::int AS n FROM departments');
    expect(rows[0].n).toBe(12);
  });

  test('1: the service refuses (a restore of an unknown backup)', async () => {
    const run = await hr(['restore', 'departments', '--backup', 'no-such-backup']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`hr restore: 404: unknown backup "no-such-backup"`);
  });

  test('1: a load that fails names its reason', async () => {
    const file = path.join(s.config.DATA_DIR, 'not-departments.csv');
    await writeFile(file, '1,a,b,c\n2,a,b,c\n');
    const run = await hr(['load', file, '--table', 'departments']);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/\bdepartments\s+failed\b/);
    expect(run.stderr).toMatch(/^load \S+ \(departments\) failed: .*no line of the file has the 2 fields of departments/m);
  });

  test('2: an unknown command, a bad option, a file that is not there', async () => {
    const unknown = await hr(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^unknown command "frobnicate"/m);
    expect(unknown.stderr).toMatch(/^Commands:/m);

    const option = await hr(['loads', '--bogus']);
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/--bogus/);
    expect(option.stderr).toMatch(/^usage: hr loads/m);

    const missing = await hr(['load', path.join(s.config.DATA_DIR, 'jobs.csv')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^hr load: no such file: /m);
  });

  test('3: nothing listens at the URL, or the service answers 5xx', async () => {
    // A port that was free a moment ago (fetch refuses low ports such as 1 before trying them).
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const nowhere = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
    await new Promise((r) => probe.close(r));
    const nobody = await hr(['health'], nowhere);
    expect(nobody.code).toBe(3);
    expect(nobody.stderr).toContain(`hr health: cannot reach the service at ${nowhere} (ECONNREFUSED); is it running?`);

    // A server whose PostgreSQL is down answers /health with 503.
    const deadPool = createPool('postgres://postgres@127.0.0.1:1/none', 1);
    try {
      const degraded = await hr(['health'], await listen(createApp({ ...s, pool: deadPool })));
      expect(degraded.code).toBe(3);
      expect(degraded.stderr).toMatch(/^hr health: 503\b/m);
    } finally {
      await deadPool.end();
    }
  });

  test('4: --strict and rows rejected; without --strict the same load is 0', async () => {
    expect((await hr(['load', fixture('jobs')])).code).toBe(0);
    const strict = await hr(['load', '--strict', fixture('hired_employees')]);
    expect(strict.code).toBe(4);
    expect(strict.stdout).toMatch(/\bhired_employees\s+succeeded\s+1999\s+1929\b/);
    expect(strict.stderr).toMatch(/^see the rejects with: hr rejects \S+$/m);

    // The same file again: nothing new, the same rejects, and without --strict that is success.
    const lenient = await hr(['load', fixture('hired_employees')]);
    expect(lenient.code).toBe(0);
    expect(lenient.stderr).toMatch(/^see the rejects with: hr rejects \S+$/m);
  });
});

describe('hr load through upload URLs', () => {
  test('presigned when /health offers it: each file PUT with a progress line, hired_employees loaded after the others; --no-presign posts the files', async () => {
    const run = await hr(['load', fixture('hired_employees'), fixture('departments'), fixture('jobs')]);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/^uploading departments \(departments\.csv\) .*100%/m);
    expect(run.stderr).toMatch(/^uploading hired_employees \(hired_employees\.csv\) .*100%/m);
    expect(run.stdout).toMatch(/\bdepartments\s+succeeded\s+12\b/);
    expect(run.stdout).toMatch(/\bjobs\s+succeeded\s+183\b/);
    expect(run.stdout).toMatch(/\bhired_employees\s+succeeded\s+1999\b/);
    // hired_employees started once its siblings had finished.
    const { rows } = await s.pool.query<{ table_name: string; created_at: Date; finished_at: Date }>(
      `SELECT l.table_name, l.created_at, l.finished_at FROM loads l JOIN uploads u ON u.id = l.id ORDER BY l.created_at DESC LIMIT 3`,
    );
    const hired = rows.find((r) => r.table_name === 'hired_employees')!;
    for (const r of rows.filter((x) => x !== hired)) expect(r.finished_at.getTime()).toBeLessThanOrEqual(hired.created_at.getTime());

    const plain = await hr(['load', '--no-presign', fixture('departments')]);
    expect(plain.code).toBe(0);
    expect(plain.stderr).not.toMatch(/uploading/);
  });
});
