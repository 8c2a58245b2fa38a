/**
 * `npm run bench:embedded -- [--rows 1000000] [--no-demo]`
 *
 * The same work on both ways of running the service, side by side in one run, on generated data
 * (loads/sample.ts, no bad rows), one real server process (`tsx main.ts`, API and jobs together)
 * per mode, one after the other so they never share the machine:
 *   server    PostgreSQL server (a fresh database, dropped at the end) + Redis/BullMQ (own QUEUE_PREFIX)
 *   embedded  DATABASE_URL and REDIS_URL empty: PGlite over pglite-socket under DATA_DIR/postgres,
 *             jobs in-process; checked on /health (postgres.embedded and redis.embedded)
 * Each mode has its own DATA_DIR. Steps, the same in both:
 *   1. load departments, jobs, then hired_employees into the empty store (POST /loads?wait=true
 *      with {table, path} of a file under the landing folder); rows/s from the load's own
 *      startedAt/finishedAt;
 *   2. full warehouse refresh: wall time of POST /warehouse/refresh?wait=true (the refreshes the
 *      loads ask for are debounced for WAREHOUSE_REFRESH_DEBOUNCE_MS = 10 min, so none runs during
 *      the loads and this one is the first, full build; checked);
 *   3. p50 latency of 20 calls of each analytics endpoint (year 2021; answers compared across modes);
 *   4. backup of all tables (POST /backups?wait=true, wall) and a replace restore of hired_employees
 *      from it (POST /backups/hired_employees/restore, wall);
 *   5. peak RSS (VmHWM) of the server process at the end. Embedded, that includes PostgreSQL itself
 *      (PGlite runs in the process); with a server it does not.
 * Then (unless --no-demo) the demo, embedded only: `main.ts --demo` in a new DATA_DIR, time to
 * "listening" and until its loads and warehouse are done, RSS then and at its peak; and a second
 * start of the same folder.
 * Prints a table with the embedded/server ratio per step (for rows/s below 1 means embedded is
 * slower; for times above 1 does). The temp folders, the database and the queue keys are removed
 * at the end, also on failure or Ctrl-C.
 *
 * Settings: BENCH_PG_URL (admin URL, default postgres://postgres@127.0.0.1:5432/postgres), BENCH_REDIS_URL.
 */
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createRedis } from '../jobs/redis.js';
import { DEMO_ROWS } from '../loads/demo.js';
import { generate } from '../loads/sample.js';
import { adminQuery, dbUrl, fmt, percentile, startServer, type Server } from './support.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    calls: { type: 'string', default: '20' },
    pg: { type: 'string', default: process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    redis: { type: 'string', default: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' },
    'no-demo': { type: 'boolean', default: false },
  },
});
const rows = Number(values.rows);
const calls = Number(values.calls);
if (!Number.isInteger(rows) || rows < 1) throw new Error('--rows must be a positive integer');
if (!Number.isInteger(calls) || calls < 1) throw new Error('--calls must be a positive integer');
const YEAR = 2021;
const TABLES = ['departments', 'jobs', 'hired_employees'] as const;
const ENDPOINTS = ['hires-by-quarter', 'departments-above-mean'] as const;

const stamp = Date.now().toString(36);
const dbName = `bench_embedded_${stamp}`;
const queuePrefix = `bench_embedded_${stamp}`;
const work = await mkdtemp(path.join(tmpdir(), 'bench-embedded-'));
const say = (s: string) => process.stdout.write(`${s}\n`);
const load3 = () => loadavg().map((n) => n.toFixed(2)).join(' ');

// ---- HTTP without client-side timeouts (fetch gives up on headers after 300 s; a 1M-row load can take longer)

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

interface Reply {
  status: number;
  body: unknown;
}

function request(base: string, method: string, pathAndQuery: string, json?: unknown): Promise<Reply> {
  const payload = json === undefined ? undefined : Buffer.from(JSON.stringify(json));
  return new Promise((resolve, reject) => {
    const req = http.request(
      new URL(pathAndQuery, base),
      {
        method,
        agent,
        headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            /* not JSON: keep the text */
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** The request, or an error naming the step, the status and the body. */
async function ok(base: string, step: string, method: string, p: string, json?: unknown): Promise<{ body: unknown; ms: number }> {
  const t = performance.now();
  const r = await request(base, method, p, json);
  const ms = performance.now() - t;
  if (r.status !== 200) throw new Error(`${step}: ${method} ${p} answered ${r.status}: ${JSON.stringify(r.body)}`);
  return { body: r.body, ms };
}

// ---- one mode

type Mode = 'server' | 'embedded';

interface Load {
  id: string;
  table: string;
  status: string;
  rowsRead: number;
  inserted: number;
  rejected: number;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
}

interface Result {
  /** metric name -> value */
  m: Map<string, number>;
  answers: Record<string, unknown>;
  notes: string[];
}

let current: Server | undefined;

async function stopServer(s: Server): Promise<void> {
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 60_000);
  try {
    await s.stop();
  } finally {
    clearTimeout(timer);
  }
}

async function runMode(mode: Mode, gen: string): Promise<Result> {
  const dataDir = path.join(work, mode);
  const landing = path.join(dataDir, 'landing', 'gen');
  await mkdir(landing, { recursive: true });
  for (const t of TABLES) await copyFile(path.join(gen, `${t}.csv`), path.join(landing, `${t}.csv`));

  const common = {
    DATA_DIR: dataDir,
    API_KEY: '',
    BACKUP_CRON: '',
    // The refreshes that loads and restores ask for wait this long: none runs in the middle of a step.
    WAREHOUSE_REFRESH_DEBOUNCE_MS: '600000',
    WAREHOUSE_REFRESH_WAIT_MS: '3600000',
    LOAD_WAIT_MS: '3600000',
  };
  const env =
    mode === 'server'
      ? { ...common, DATABASE_URL: dbUrl(dbName, values.pg), REDIS_URL: values.redis, QUEUE_PREFIX: queuePrefix }
      : { ...common, DATABASE_URL: '', REDIS_URL: '' };
  if (mode === 'server') await adminQuery(`CREATE DATABASE ${dbName}`, values.pg);

  say(`\n[${mode}] starting the server (load average ${load3()})`);
  // A loaded machine can take long to start (embedded: initdb of a new folder).
  const server = await startServer(env, [], 180_000);
  current = server;
  const { base } = server;
  const res: Result = { m: new Map(), answers: {}, notes: [] };
  try {
    const health = (await ok(base, 'health', 'GET', '/health')).body as {
      status: string;
      postgres: { embedded?: boolean; detail?: string };
      redis: { embedded?: boolean; detail?: string };
    };
    const embedded = health.postgres.embedded === true && health.redis.embedded === true;
    const neither = !health.postgres.embedded && !health.redis.embedded;
    if (health.status !== 'ok' || (mode === 'embedded' ? !embedded : !neither)) {
      throw new Error(`[${mode}] /health does not match the mode: ${JSON.stringify(health)}`);
    }
    say(`[${mode}] ${base}; postgres: ${health.postgres.detail ?? 'server'}; jobs: ${health.redis.detail ?? 'BullMQ on Redis'}`);

    // 1. loads
    for (const table of TABLES) {
      const r = await request(base, 'POST', '/loads?wait=true', { table, path: `gen/${table}.csv` });
      const l = r.body as Load;
      if (r.status !== 200 || l.status !== 'succeeded' || !l.startedAt || !l.finishedAt) {
        throw new Error(`[${mode}] load of ${table} answered ${r.status}: ${JSON.stringify(r.body)}`);
      }
      const s = (Date.parse(l.finishedAt) - Date.parse(l.startedAt)) / 1000;
      res.m.set(`load ${table} rows/s`, l.rowsRead / s);
      res.m.set(`load ${table} s`, s);
      res.m.set(`load ${table} inserted`, l.inserted);
      if (l.rejected > 0) res.notes.push(`load ${table}: ${l.rejected} rows rejected`);
      say(`[${mode}] load ${table}: ${fmt(l.inserted)} inserted, ${l.rejected} rejected in ${s.toFixed(3)} s (${fmt(l.rowsRead / s)} rows/s)`);
    }

    // 2. full refresh
    const refresh = await ok(base, `[${mode}] refresh`, 'POST', '/warehouse/refresh?wait=true');
    const rr = refresh.body as { result?: { build?: string; exported?: { table: string; rows: number }[] } };
    res.m.set('refresh s', refresh.ms / 1000);
    if (rr.result?.build !== 'full') res.notes.push(`the refresh was a "${rr.result?.build}" build, not the first full one`);
    say(`[${mode}] warehouse refresh: ${(refresh.ms / 1000).toFixed(2)} s, build ${rr.result?.build}`);

    // 3. analytics latency
    for (const e of ENDPOINTS) {
      const ms: number[] = [];
      for (let i = 0; i < calls; i++) {
        const r = await ok(base, `[${mode}] ${e}`, 'GET', `/analytics/${e}?year=${YEAR}`);
        ms.push(r.ms);
        if (i === 0) res.answers[e] = r.body;
      }
      ms.sort((a, b) => a - b);
      res.m.set(`${e} p50 ms`, percentile(ms, 50));
      say(`[${mode}] ${e}: p50 ${percentile(ms, 50).toFixed(2)} ms, min ${ms[0]!.toFixed(2)}, max ${ms[ms.length - 1]!.toFixed(2)} (${calls} calls)`);
    }

    // 4. backup and restore
    const backup = await ok(base, `[${mode}] backup`, 'POST', '/backups?wait=true');
    const files = backup.body as { id: string; table: string; rows: number; bytes: number }[];
    res.m.set('backup s', backup.ms / 1000);
    say(`[${mode}] backup: ${(backup.ms / 1000).toFixed(2)} s (${files.map((f) => `${f.table} ${fmt(f.rows)} rows, ${(f.bytes / 1e6).toFixed(1)} MB`).join('; ')})`);
    const restore = await ok(base, `[${mode}] restore`, 'POST', '/backups/hired_employees/restore', { mode: 'replace' });
    const rs = restore.body as { rows: number; inserted: number; updated: number; deleted: number; unchanged: number };
    res.m.set('restore s', restore.ms / 1000);
    say(
      `[${mode}] restore hired_employees (replace): ${(restore.ms / 1000).toFixed(2)} s ` +
        `(${fmt(rs.rows)} rows in the file: ${rs.inserted} inserted, ${rs.updated} updated, ${rs.deleted} deleted, ${fmt(rs.unchanged)} unchanged)`,
    );

    // 5. peak RSS
    res.m.set('peak RSS MB', server.peakRssMb());
  } finally {
    say(`[${mode}] stopping the server (load average ${load3()})`);
    await stopServer(server);
    current = undefined;
  }
  return res;
}

// ---- the demo: `npm start -- --demo` in a new folder, embedded

/** Resident memory now (VmRSS) and at its peak (VmHWM) of a process, in MB. */
function rssOf(pid: number): { now: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)![1]) / 1024;
  return { now: kb('VmRSS'), peak: kb('VmHWM') };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 600_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`demo: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * 6. The demo, embedded, in a new DATA_DIR: spawn → "listening" (includes creating the database
 * folder), then until its loads succeeded and the warehouse holds them; RSS then and at its peak.
 * Then a second start of the same folder: spawn → "listening" and RSS once it answers.
 */
async function runDemo(): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  const dataDir = path.join(work, 'demo');
  const env = { DATA_DIR: dataDir, DATABASE_URL: '', REDIS_URL: '', API_KEY: '', BACKUP_CRON: '', WAREHOUSE_REFRESH_DEBOUNCE_MS: '100' };
  say(`\n[demo] npm start -- --demo, embedded, new folder (load average ${load3()})`);
  let t = performance.now();
  const first = await startServer(env, ['--demo'], 180_000);
  current = first;
  try {
    m.set('demo listening s', (performance.now() - t) / 1000);
    const hires = await until('the demo loads', async () => {
      const { loads } = (await ok(first.base, 'demo loads', 'GET', '/loads')).body as { loads: Load[] };
      if (loads.some((l) => l.status === 'failed')) throw new Error(`demo: a load failed: ${JSON.stringify(loads)}`);
      return loads.length === 3 && loads.every((l) => l.status === 'succeeded') ? loads.find((l) => l.table === 'hired_employees') : undefined;
    });
    await until('the warehouse', async () => {
      const w = (await ok(first.base, 'demo warehouse', 'GET', '/warehouse')).body as { status: string; tables: Record<string, number> };
      return w.status === 'ready' && w.tables.fact_hires === hires.inserted ? true : undefined;
    });
    m.set('demo loaded s', (performance.now() - t) / 1000);
    const r = rssOf(first.child.pid!);
    m.set('demo RSS MB', r.now);
    m.set('demo peak RSS MB', r.peak);
    say(
      `[demo] listening after ${m.get('demo listening s')!.toFixed(1)} s; ${fmt(hires.inserted)} hires loaded and in the warehouse after ` +
        `${m.get('demo loaded s')!.toFixed(1)} s; RSS ${r.now.toFixed(0)} MB, peak ${r.peak.toFixed(0)} MB`,
    );
  } finally {
    await stopServer(first);
    current = undefined;
  }
  t = performance.now();
  const second = await startServer(env, ['--demo'], 180_000);
  current = second;
  try {
    m.set('restart listening s', (performance.now() - t) / 1000);
    await ok(second.base, 'restart', 'GET', '/analytics/hires-by-quarter?year=2021');
    const r = rssOf(second.child.pid!);
    m.set('restart RSS MB', r.now);
    m.set('restart peak RSS MB', r.peak);
    say(`[demo] second start of the same folder: listening after ${m.get('restart listening s')!.toFixed(1)} s; RSS ${r.now.toFixed(0)} MB, peak ${r.peak.toFixed(0)} MB`);
  } finally {
    await stopServer(second);
    current = undefined;
  }
  return m;
}

// ---- clean-up, also on failure and Ctrl-C

let cleaned: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaned ??= (async () => {
    if (current) await stopServer(current).catch(() => {});
    agent.destroy();
    await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`, values.pg).catch((err: unknown) =>
      process.stderr.write(`could not drop ${dbName}: ${(err as Error).message}\n`),
    );
    const redis = createRedis(values.redis);
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${queuePrefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== '0');
    } catch (err) {
      process.stderr.write(`could not remove the queue keys ${queuePrefix}:*: ${(err as Error).message}\n`);
    } finally {
      redis.disconnect();
    }
    await rm(work, { recursive: true, force: true });
  })();
  return cleaned;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`${sig}: cleaning up\n`);
    void cleanUp().finally(() => process.exit(130));
  });
}

// ---- run

try {
  say(
    `bench:embedded — ${fmt(rows)} hires; ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
      `load average at start ${load3()}`,
  );
  const gen = path.join(work, 'gen');
  let t = performance.now();
  await generate({ rows, out: gen, seed: 1, badShare: 0 });
  say(`generated ${fmt(rows)} rows in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  t = performance.now();
  const server = await runMode('server', gen);
  const embedded = await runMode('embedded', gen);
  const demo = values['no-demo'] ? undefined : await runDemo();
  say(`\nboth modes in ${((performance.now() - t) / 1000).toFixed(0)} s; load average at end ${load3()}\n`);

  const lines: [label: string, key: string, unit: string, digits: number][] = [
    ...TABLES.map((tb): [string, string, string, number] => [`load ${tb}`, `load ${tb} rows/s`, 'rows/s', 0]),
    ...TABLES.map((tb): [string, string, string, number] => [`load ${tb}`, `load ${tb} s`, 's', 3]),
    ['warehouse refresh (full)', 'refresh s', 's', 2],
    ...ENDPOINTS.map((e): [string, string, string, number] => [`${e} p50 (${calls} calls)`, `${e} p50 ms`, 'ms', 2]),
    ['backup, all tables', 'backup s', 's', 2],
    ['restore hired_employees (replace)', 'restore s', 's', 2],
    ['server peak RSS (VmHWM)', 'peak RSS MB', 'MB', 0],
  ];
  const num = (v: number, digits: number) =>
    digits === 0 ? fmt(v) : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const w = [40, 8, 14, 14, 16];
  const row = (cells: string[]) =>
    say(cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : i === 1 ? ` ${c.padEnd(w[i]!)}` : c.padStart(w[i]!))).join(''));
  row(['step', 'unit', 'server', 'embedded', 'embedded/server']);
  say('-'.repeat(w.reduce((a, b) => a + b, 0) + 1));
  for (const [label, key, unit, digits] of lines) {
    const s = server.m.get(key)!;
    const e = embedded.m.get(key)!;
    row([label, unit, num(s, digits), num(e, digits), `${(e / s).toFixed(2)}x`]);
  }
  say('rows/s: higher is better (ratio < 1: embedded slower); s, ms, MB: lower is better (ratio > 1: embedded slower).');
  say('RSS: embedded includes PGlite (PostgreSQL in the process); server mode excludes the PostgreSQL server and Redis.');
  if (demo) {
    say(
      `demo (embedded, ${fmt(DEMO_ROWS)} hires): listening ${demo.get('demo listening s')!.toFixed(1)} s, loaded and in the warehouse ` +
        `${demo.get('demo loaded s')!.toFixed(1)} s, RSS ${demo.get('demo RSS MB')!.toFixed(0)} MB (peak ${demo.get('demo peak RSS MB')!.toFixed(0)} MB); ` +
        `second start: listening ${demo.get('restart listening s')!.toFixed(1)} s, RSS ${demo.get('restart RSS MB')!.toFixed(0)} MB`,
    );
  }

  const problems: string[] = [];
  for (const tb of TABLES) {
    if (server.m.get(`load ${tb} inserted`) !== embedded.m.get(`load ${tb} inserted`)) {
      problems.push(`${tb}: ${server.m.get(`load ${tb} inserted`)} rows inserted on the server, ${embedded.m.get(`load ${tb} inserted`)} embedded`);
    }
  }
  for (const e of ENDPOINTS) {
    if (JSON.stringify(server.answers[e]) !== JSON.stringify(embedded.answers[e])) problems.push(`${e}: the answers differ between the modes`);
  }
  for (const [mode, r] of [['server', server], ['embedded', embedded]] as const) {
    for (const n of r.notes) problems.push(`${mode}: ${n}`);
  }
  if (problems.length > 0) {
    say(`\nPROBLEMS:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    process.exitCode = 1;
  } else {
    say('same rows loaded and identical analytics answers in both modes; both refreshes were full builds.');
  }
} finally {
  await cleanUp();
}
