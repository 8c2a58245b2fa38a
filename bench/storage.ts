/**
 * `npm run bench:storage`: the same work on the local folder (DATA_DIR, the reference) and on an
 * S3-compatible bucket (s3rver on 127.0.0.1, started here), in one run, as ratios:
 *  - a load of a BENCH_ROWS-row hired_employees CSV (1,000,000 by default; bench/gen.ts data):
 *    presigned upload (PUT) and the load of it, by a server process (`main.ts`);
 *  - a backup and a restore of that table, each in a process of its own (bench/backup-op.ts).
 * Each line shows wall seconds and the process's peak RSS; memory should be flat (the same on
 * both backends, and not growing with the rows). s3rver is a Node process on the same machine,
 * so the bucket column includes its own work: a real bucket is elsewhere.
 *
 * Needs PostgreSQL (BENCH_PG_URL) and Redis (BENCH_REDIS_URL); everything made is removed.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createPool } from '../core/db.js';
import { migrate } from '../core/migrate.js';
import { generate } from '../loads/sample.js';
import { startTestBucket } from '../test/support/s3.js';
import { adminQuery, dbUrl, REDIS_URL, ROOT, startServer, timed } from './support.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const KEY = `bench-${randomBytes(8).toString('hex')}`;


interface Row {
  what: string;
  local: { s: number; rss: number };
  bucket: { s: number; rss: number };
}

async function main(): Promise<void> {
  const suffix = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const work = await mkdtemp(path.join(tmpdir(), 'bench-storage-'));
  const bucket = await startTestBucket({ bucket: 'bench' });
  const dbs: string[] = [];
  try {
    process.stdout.write(`generating ${ROWS.toLocaleString('en')} hired_employees rows (bench/gen.ts data) ...\n`);
    const gen = path.join(work, 'gen');
    await generate({ rows: ROWS, out: gen, badShare: 0, seed: 42 });
    const csv = path.join(gen, 'hired_employees.csv');
    const bytes = (await stat(csv)).size;

    const rows: Row[] = [];
    const results: Record<'local' | 'bucket', Record<string, { s: number; rss: number }>> = { local: {}, bucket: {} };
    for (const backend of ['local', 'bucket'] as const) {
      const name = `bench_storage_${backend}_${suffix}`;
      await adminQuery(`CREATE DATABASE ${name}`);
      dbs.push(name);
      const url = dbUrl(name);
      const pool = createPool(url, 2);
      await migrate(pool);
      const dataDir = await mkdtemp(path.join(work, `${backend}-`));
      const env: Record<string, string> = {
        DATABASE_URL: url,
        REDIS_URL,
        DATA_DIR: dataDir,
        QUEUE_PREFIX: `bench_${backend}_${suffix}`,
        API_KEY: KEY,
        LOG_LEVEL: 'warn',
        ...(backend === 'bucket' ? bucket.env(`bench-${suffix}`) : {}),
      };
      const r = results[backend];
      try {
        // departments and jobs first, so every hire names existing ones.
        const server = await startServer({ ...env, LOG_LEVEL: 'info' }); // it says its port at info
        const auth = { authorization: `Bearer ${KEY}` };
        const upload = async (table: string, file: string) => {
          const size = (await stat(file)).size;
          const made = await fetch(`${server.base}/uploads`, {
            method: 'POST',
            headers: { ...auth, 'content-type': 'application/json' },
            body: JSON.stringify({ table, bytes: size }),
          });
          if (made.status !== 201) throw new Error(`POST /uploads: ${made.status} ${await made.text()}`);
          const { uploadId, url: putUrl } = (await made.json()) as { uploadId: string; url: string };
          const t0 = performance.now();
          const put = await fetch(putUrl, {
            method: 'PUT',
            body: Readable.toWeb(createReadStream(file)) as ReadableStream,
            headers: { 'content-length': String(size) },
            duplex: 'half',
          } as RequestInit);
          if (put.status !== 200) throw new Error(`PUT: ${put.status} ${await put.text()}`);
          const t1 = performance.now();
          const load = await fetch(`${server.base}/uploads/${uploadId}/load?wait=true`, { method: 'POST', headers: auth });
          if (load.status !== 200) throw new Error(`load: ${load.status} ${await load.text()}`);
          const body = (await load.json()) as { status: string; rowsRead: number };
          if (body.status !== 'succeeded') throw new Error(`load ${uploadId}: ${JSON.stringify(body)}`);
          return { putS: (t1 - t0) / 1000, loadS: (performance.now() - t1) / 1000, rows: body.rowsRead };
        };
        await upload('departments', path.join(gen, 'departments.csv'));
        await upload('jobs', path.join(gen, 'jobs.csv'));
        const hires = await upload('hired_employees', csv);
        r.put = { s: hires.putS, rss: server.peakRssMb() };
        r.load = { s: hires.loadS, rss: server.peakRssMb() };
        await server.stop();

        const op = (...args: string[]) =>
          timed(process.execPath, ['--import', 'tsx', 'bench/backup-op.ts', ...args], { ...process.env, ...env });
        const backup = await op('backup', 'hired_employees');
        const id = (JSON.parse(backup.stdout.trim().split('\n').at(-1)!) as { result: { id: string }[] }).result[0]!.id;
        r.backup = { s: backup.wallS, rss: backup.rssMB };
        await pool.query('TRUNCATE hired_employees');
        const restore = await op('restore', 'hired_employees', id, 'replace');
        r.restore = { s: restore.wallS, rss: restore.rssMB };
        const n = Number((await pool.query('SELECT count(*) FROM hired_employees')).rows[0].count);
        if (n !== hires.rows) throw new Error(`${backend}: restored ${n} rows, loaded ${hires.rows}`);
      } finally {
        await pool.end();
      }
    }
    for (const [key, what] of [
      ['put', 'upload (presigned PUT)'],
      ['load', 'load of the uploaded file'],
      ['backup', 'backup (own process)'],
      ['restore', 'restore into empty (own process)'],
    ] as const) {
      rows.push({ what, local: results.local[key]!, bucket: results.bucket[key]! });
    }
    const f = (n: number, d = 2) => n.toFixed(d);
    process.stdout.write(
      `\n${ROWS.toLocaleString('en')} rows, ${f(bytes / 1e6, 1)} MB of CSV; local = DATA_DIR folder, bucket = s3rver on 127.0.0.1 (same machine)\n\n` +
        `${'operation'.padEnd(34)} ${'local s'.padStart(8)} ${'bucket s'.padStart(9)} ${'bucket/local'.padStart(12)} ${'local RSS MB'.padStart(12)} ${'bucket RSS MB'.padStart(13)}\n`,
    );
    for (const r of rows) {
      process.stdout.write(
        `${r.what.padEnd(34)} ${f(r.local.s).padStart(8)} ${f(r.bucket.s).padStart(9)} ${f(r.bucket.s / r.local.s).padStart(12)} ` +
          `${f(r.local.rss, 0).padStart(12)} ${f(r.bucket.rss, 0).padStart(13)}\n`,
      );
    }
    process.stdout.write('\n(load RSS is the server process, API and worker in one; backup and restore RSS their own process)\n');
  } finally {
    await bucket.stop();
    for (const name of dbs) await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await rm(work, { recursive: true, force: true });
  }
}

await main();
