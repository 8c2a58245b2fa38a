/**
 * `npm run bench:backup`: backup and restore of a 1,000,000-row hired_employees (BENCH_ROWS to
 * change it), side by side with `pg_dump -Fc -t hired_employees` and `pg_restore --clean` of the
 * same table (BENCH_REPEAT=3: each pair 3 times on the same data, medians reported), in the same run on the same fresh database. Every command runs in its own process
 * under /usr/bin/time, so wall time and peak RSS are measured the same way for both; ours also
 * reports the time inside the operation (without Node start-up), which is what a running
 * worker pays. Each restore is checked to give back the exact table (ordered md5).
 *
 * Ours runs compiled, as `npm start` runs the service: the build is brought up to date first
 * (scripts/build.mjs), and bench/backup-op.ts is compiled beside it into dist/bench/, so its
 * imports are the compiled modules of dist/. No TypeScript is compiled while a process is timed.
 *
 * Needs PostgreSQL (BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres), Redis
 * (BENCH_REDIS_URL), pg_dump/pg_restore on PATH. The database and files are removed at the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createPool } from '../core/db.js';
import { migrate } from '../core/migrate.js';
import { createRedis } from '../jobs/redis.js';
import { DEFLATE_LEVEL } from '../backup/avro.js';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import ts from 'typescript';
// @ts-expect-error plain JavaScript, no declarations
import { build, isStale } from '../scripts/build.mjs';
import { ROOT, timed, type Measured } from './support.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const REPEAT = Math.max(1, Number(process.env.BENCH_REPEAT ?? 1));
const ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

const suffix = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const dbName = `bench_backup_${suffix}`;
const dbUrl = (() => {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${dbName}`;
  return u.toString();
})();
const prefix = `bench_${suffix}`;

/** Brings dist/ up to date and compiles bench/backup-op.ts into dist/bench/backup-op.js; returns its path. */
async function compiledOp(): Promise<string> {
  if ((isStale as () => boolean)()) {
    process.stdout.write('building dist/ (npm run build) ...\n');
    (build as () => void)();
  }
  const src = await readFile(path.join(ROOT, 'bench/backup-op.ts'), 'utf8');
  const out = ts.transpileModule(src, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    fileName: 'backup-op.ts',
  });
  const file = path.join(ROOT, 'dist/bench/backup-op.js');
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, out.outputText);
  return file;
}


async function main(): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'bench-backup-'));
  const pool = createPool(dbUrl, 2);
  const checksum = async () =>
    (await pool.query<{ s: string }>(`SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS s FROM hired_employees t`)).rows[0]!.s;
  try {
    await migrate(pool);
    process.stdout.write(`seeding ${ROWS.toLocaleString('en')} hired_employees into ${dbName} ...\n`);
    await pool.query(`INSERT INTO departments SELECT g, 'Department ' || g FROM generate_series(1, 12) g`);
    await pool.query(`INSERT INTO jobs SELECT g, 'Job ' || g FROM generate_series(1, 183) g`);
    await pool.query(
      `INSERT INTO hired_employees
       SELECT g, 'Employee ' || g || ' ' || md5(g::text),
              timestamptz '2015-01-01' + (g * interval '157 seconds') + (g % 997) * interval '1 microsecond',
              1 + g % 12, 1 + (g * 7) % 183
         FROM generate_series(1, $1::int) g`,
      [ROWS],
    );
    await pool.query('VACUUM ANALYZE');
    const original = await checksum();

    const env = { ...process.env, DATABASE_URL: dbUrl, REDIS_URL, DATA_DIR: dataDir, QUEUE_PREFIX: prefix, LOG_LEVEL: 'warn' };
    const op = await compiledOp();
    const ours = (...args: string[]) => timed(process.execPath, [op, ...args], env);
    const parse = (m: Measured) => JSON.parse(m.stdout.trim().split('\n').at(-1)!) as { ms: number; startMs: number; result: any };
    const dumpFile = path.join(dataDir, 'hired_employees.pgdump');
    const pgConn = ['-d', dbUrl];
    const expectOriginal = async (what: string) => {
      if ((await checksum()) !== original) throw new Error(`${what} did not give back the original table`);
    };
    const change1pct = () => pool.query(`UPDATE hired_employees SET name = name || ' (changed)' WHERE id % 100 = 0`);

    // Memory baseline: the same process on a 12-row table.
    const small = parse(await ours('backup', 'departments'));
    const baseBackup = await ours('backup', 'departments');
    const baseRestore = await ours('restore', 'departments', small.result[0].id, 'merge');

    // Each measured pair runs BENCH_REPEAT times (default 1) on the same data; the table shows the median of each.
    const runs: { dump: Measured; backupRun: Measured; restoreEmptyRun: Measured; pgRestoreEmpty: Measured; restoreChangedRun: Measured; pgRestoreChanged: Measured }[] = [];
    let id = '';
    for (let r = 0; r < REPEAT; r++) {
      const dump = await timed('pg_dump', ['-Fc', '-t', 'hired_employees', '-f', dumpFile, ...pgConn]);
      const backupRun = await ours('backup', 'hired_employees');
      id = parse(backupRun).result[0].id as string;

      await pool.query('TRUNCATE hired_employees');
      const restoreEmptyRun = await ours('restore', 'hired_employees', id, 'replace');
      await expectOriginal('restore into an empty table');
      await pool.query('TRUNCATE hired_employees');
      const pgRestoreEmpty = await timed('pg_restore', ['--clean', '--if-exists', ...pgConn, dumpFile]);
      await expectOriginal('pg_restore into an empty table');

      await change1pct();
      const restoreChangedRun = await ours('restore', 'hired_employees', id, 'replace');
      await expectOriginal('restore over 1% changed rows');
      await change1pct();
      const pgRestoreChanged = await timed('pg_restore', ['--clean', '--if-exists', ...pgConn, dumpFile]);
      await expectOriginal('pg_restore over 1% changed rows');
      runs.push({ dump, backupRun, restoreEmptyRun, pgRestoreEmpty, restoreChangedRun, pgRestoreChanged });
      if (REPEAT > 1) {
        const w = (m: Measured) => m.wallS.toFixed(2);
        process.stdout.write(
          `run ${r + 1} of ${REPEAT}, wall s ours/pg: backup ${w(backupRun)}/${w(dump)}, restore into emptied ${w(restoreEmptyRun)}/${w(pgRestoreEmpty)}, ` +
            `over 1% changed ${w(restoreChangedRun)}/${w(pgRestoreChanged)}\n`,
        );
      }
    }
    /** The run whose wall time is the median of `pick`'s over all runs. */
    const median = (pick: (run: (typeof runs)[number]) => Measured): Measured =>
      runs.map(pick).sort((a, b) => a.wallS - b.wallS)[Math.floor((runs.length - 1) / 2)]!;
    const dump = median((r) => r.dump);
    const backupRun = median((r) => r.backupRun);
    const backup = parse(backupRun);
    const restoreEmptyRun = median((r) => r.restoreEmptyRun);
    const pgRestoreEmpty = median((r) => r.pgRestoreEmpty);
    const restoreChangedRun = median((r) => r.restoreChangedRun);
    const pgRestoreChanged = median((r) => r.pgRestoreChanged);

    // Flat memory: the same 1M-row backup and restore with the V8 heap capped at 64 MB.
    const capped = { ...env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=64`.trim() };
    const cappedBackup = await timed(process.execPath, [op, 'backup', 'hired_employees'], capped);
    await change1pct();
    const cappedRestore = await timed(process.execPath, [op, 'restore', 'hired_employees', id, 'replace'], capped);
    await expectOriginal('restore with a 64 MB heap');

    const rows = [
      ['backup', backupRun, backup, dump],
      ['restore into emptied table', restoreEmptyRun, parse(restoreEmptyRun), pgRestoreEmpty],
      ['restore over 1% changed rows', restoreChangedRun, parse(restoreChangedRun), pgRestoreChanged],
    ] as const;
    const f = (n: number, d = 2) => n.toFixed(d);
    process.stdout.write(
      `\n${ROWS.toLocaleString('en')} rows of hired_employees; ours = Avro (deflate level ${DEFLATE_LEVEL}) via this service, compiled (dist/); pg = pg_dump -Fc / pg_restore --clean\n` +
        `files: ours ${f(backup.result[0].bytes / 1e6, 1)} MB, pg_dump ${f((await stat(dumpFile)).size / 1e6, 1)} MB\n\n` +
        `${'operation'.padEnd(30)} ${'ours wall s'.padStart(11)} ${'ours start s'.padStart(12)} ${'ours in-op s'.padStart(12)} ${'pg wall s'.padStart(10)} ` +
        `${'pg/ours wall'.padStart(12)} ${'pg/ours in-op'.padStart(13)} ${'ours RSS MB'.padStart(11)} ${'pg RSS MB'.padStart(9)}\n`,
    );
    for (const [name, run, op, theirs] of rows) {
      process.stdout.write(
        `${name.padEnd(30)} ${f(run.wallS).padStart(11)} ${f(op.startMs / 1000).padStart(12)} ${f(op.ms / 1000).padStart(12)} ${f(theirs.wallS).padStart(10)} ` +
          `${f(theirs.wallS / run.wallS).padStart(12)} ${f(theirs.wallS / (op.ms / 1000)).padStart(13)} ` +
          `${f(run.rssMB, 0).padStart(11)} ${f(theirs.rssMB, 0).padStart(9)}\n`,
      );
    }
    if (REPEAT > 1) {
      const ratios = (ours: (r: (typeof runs)[number]) => Measured, theirs: (r: (typeof runs)[number]) => Measured) =>
        runs.map((r) => f(theirs(r).wallS / ours(r).wallS)).join(', ');
      process.stdout.write(
        `\nmedians of ${REPEAT} runs; pg/ours wall per run: backup ${ratios((r) => r.backupRun, (r) => r.dump)}; ` +
          `restore into emptied table ${ratios((r) => r.restoreEmptyRun, (r) => r.pgRestoreEmpty)}; ` +
          `over 1% changed ${ratios((r) => r.restoreChangedRun, (r) => r.pgRestoreChanged)}\n`,
      );
    }
    process.stdout.write(
      `\nmemory baseline, same processes on the 12-row departments table: backup ${f(baseBackup.rssMB, 0)} MB, restore ${f(baseRestore.rssMB, 0)} MB peak RSS\n` +
        `flat memory: ${ROWS.toLocaleString('en')} rows with the V8 heap capped at 64 MB: backup ${f(cappedBackup.rssMB, 0)} MB peak RSS (${f(cappedBackup.wallS)} s), ` +
        `restore ${f(cappedRestore.rssMB, 0)} MB peak RSS (${f(cappedRestore.wallS)} s); without the cap V8 simply grows its heap lazily\n` +
        'ratios > 1 mean ours is faster. The machine is shared: compare ratios within one run, not absolute times across runs.\n',
    );
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
    await admin.end();
    await rm(dataDir, { recursive: true, force: true });
    const redis = createRedis(REDIS_URL);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
