/**
 * `npm run bench:start [-- --runs 5]` — process start time: from spawn to the server's
 * "listening" log line, API and workers in one process on the PostgreSQL and Redis servers
 * (database `hr_bench_start`, migrated by a warm-up run first). Each command runs `runs` times,
 * round-robin so machine noise spreads evenly; the median is reported.
 * `npm run dev` is what `npm start` was before the compiled build (tsx compiling at start).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { adminQuery, arg, dbUrl, path, REDIS_URL, ROOT } from './support.js';

const RUNS = arg('runs', 5);
const COMMANDS: Array<[label: string, cmd: string, args: string[]]> = [
  ['npm run dev (tsx main.ts; the old npm start)', 'npm', ['run', '--silent', 'dev']],
  ['npm start (scripts/start.mjs → dist/)', 'npm', ['start', '--silent']],
  ['tsx main.ts', path.join(ROOT, 'node_modules/.bin/tsx'), ['main.ts']],
  ['node --import tsx main.ts (the tests)', process.execPath, ['--import', 'tsx', 'main.ts']],
  ['node scripts/start.mjs', process.execPath, ['scripts/start.mjs']],
  ['node dist/main.js', process.execPath, ['dist/main.js']],
  ['node --enable-source-maps dist/main.js (Docker)', process.execPath, ['--enable-source-maps', 'dist/main.js']],
];

/**
 * Milliseconds from spawn to the "listening" line; then stops the server and waits until every
 * process of the command is gone. The command gets its own process group and the group gets the
 * SIGTERM, as Ctrl-C on a terminal does: npm itself exits on SIGTERM without passing it on.
 */
async function timeStart(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const started = performance.now();
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  // 'close': stdout is closed by the last process of the group holding it, not only by the first.
  const closed = new Promise((r) => child.once('close', r));
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${cmd} ${args.join(' ')}: no "listening" line within 60 s`)), 60_000);
      let buf = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        if (buf.includes('"msg":"listening')) {
          clearTimeout(timer);
          resolve(performance.now() - started);
        }
      });
      child.on('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`)));
    });
  } finally {
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
    await closed;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  // The compiled commands must not time a build: bring dist/ up to date first.
  if (spawnSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { cwd: ROOT, stdio: 'inherit' }).status !== 0) process.exit(1);
  const db = 'hr_bench_start';
  await adminQuery(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await adminQuery(`CREATE DATABASE ${db}`);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'hr-bench-start-'));
  const env = {
    ...process.env,
    DATABASE_URL: dbUrl(db),
    REDIS_URL,
    QUEUE_PREFIX: 'hr_bench_start',
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'info',
  };
  try {
    // Warm-up: migrates the database, fills tsx's transform cache and the OS file cache.
    for (const [, cmd, args] of COMMANDS) await timeStart(cmd, args, env);
    const times = COMMANDS.map(() => [] as number[]);
    for (let r = 0; r < RUNS; r++) {
      for (const [i, [, cmd, args]] of COMMANDS.entries()) times[i]!.push(await timeStart(cmd, args, env));
    }
    console.log(`spawn → "listening", ${RUNS} runs each, median (min–max), ms`);
    for (const [i, [label]] of COMMANDS.entries()) {
      const t = times[i]!;
      console.log(`  ${label.padEnd(50)} ${median(t).toFixed(0).padStart(5)}  (${Math.min(...t).toFixed(0)}–${Math.max(...t).toFixed(0)})`);
    }
  } finally {
    await adminQuery(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
