/**
 * The worst bodies POST /ingest can be sent, each 5 MiB (INGEST_MAX_BYTES): how long each takes,
 * the longest the event loop was blocked while it was parsed and written (the API must keep
 * answering others meanwhile), and the API process's peak RSS when all of them arrive at once.
 * `npm run bench:ingest-hostile`
 *
 * Part one runs the app in this process (so the event loop can be watched), the body arriving
 * as a stream of 64 KiB pieces like a socket delivers it. Part two starts the real server and
 * sends every body four times in parallel, then reads its VmHWM.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createApp } from '../api/app.js';
import { loadConfig } from '../core/config.js';
import { createPool } from '../core/db.js';
import { createLogger } from '../core/log.js';
import { migrate } from '../core/migrate.js';
import { createQueues } from '../jobs/index.js';
import { WORST_INGEST_BODIES as WORST } from '../test/support/hostile-bodies.js';
import { adminQuery, arg, dbUrl, path, REDIS_URL, startServer } from './support.js';

const PARALLEL = arg('parallel', 4);

function streamOf(buf: Buffer): ReadableStream<Uint8Array> {
  let o = 0;
  return new ReadableStream({
    pull(c) {
      if (o >= buf.length) return c.close();
      c.enqueue(buf.subarray(o, o + 64 * 1024));
      o += 64 * 1024;
    },
  });
}

const dbName = `bench_hostile_${Date.now()}`;
const url = dbUrl(dbName);
const work = await mkdtemp(path.join(tmpdir(), 'bench-hostile-'));
await adminQuery(`CREATE DATABASE ${dbName}`);
try {
  const config = loadConfig({ DATABASE_URL: url, DATA_DIR: work, LOG_LEVEL: 'silent' });
  const pool = createPool(url, 4);
  await migrate(pool);
  const log = createLogger('silent');
  const queues = createQueues(config, log);
  const app = createApp({ config, pool, log, queues });
  console.log(`In process, one at a time (body streamed in 64 KiB pieces):`);
  console.log(`${'body'.padEnd(48)} status  total ms  longest event-loop block ms`);
  for (const { name, type, make } of WORST) {
    const body = make();
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const started = performance.now();
    const res = await app.request('/ingest/jobs', {
      method: 'POST',
      headers: { 'content-type': type },
      body: streamOf(body),
      // @ts-expect-error Node's fetch needs this for a stream body
      duplex: 'half',
    });
    await res.arrayBuffer();
    const ms = performance.now() - started;
    h.disable();
    console.log(`${name.padEnd(48)} ${String(res.status).padEnd(7)} ${ms.toFixed(0).padStart(8)}  ${(h.max / 1e6).toFixed(1).padStart(8)}`);
  }
  await queues.close();
  await pool.end();

  const server = await startServer({ DATABASE_URL: url, REDIS_URL, DATA_DIR: work, QUEUE_PREFIX: dbName }, ['--api']);
  try {
    const before = server.peakRssMb();
    const bodies = WORST.map(({ type, make }) => [type, new Uint8Array(make())] as const);
    const started = performance.now();
    const statuses = await Promise.all(
      bodies.flatMap(([type, body]) =>
        Array.from({ length: PARALLEL }, () =>
          fetch(`${server.base}/ingest/jobs`, { method: 'POST', headers: { 'content-type': type }, body }).then(
            async (r) => (await r.arrayBuffer(), r.status),
            (e: unknown) => `error ${(e as Error).message}`,
          ),
        ),
      ),
    );
    const counts = new Map<string | number, number>();
    for (const s of statuses) counts.set(s, (counts.get(s) ?? 0) + 1);
    console.log(
      `\nReal API process, all ${statuses.length} bodies (${PARALLEL} of each) at once: ${((performance.now() - started) / 1000).toFixed(1)} s, ` +
        `answers ${[...counts].map(([s, n]) => `${n}×${s}`).join(', ')}; peak RSS ${before.toFixed(0)} MB at start → ${server.peakRssMb().toFixed(0)} MB`,
    );
  } finally {
    await server.stop();
  }
} finally {
  await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await rm(work, { recursive: true, force: true });
}
