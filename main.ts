/**
 * Entry point. `npm start` runs the API and the workers in one process; `--api` or `--worker`
 * runs one side only, so workers can be scaled out on their own. With DATABASE_URL unset,
 * PostgreSQL runs embedded (pg/embedded.ts); without REDIS_URL the jobs run in-process; either
 * way both sides must share the one process. `--demo` fills an empty store with sample data.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { serve } from '@hono/node-server';
import { createApp } from './api/app.js';
import { ConfigError, loadConfig, urlLabel, type Config } from './core/config.js';
import { createPool, ensureDatabase } from './core/db.js';
import { startDemo } from './loads/index.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './pg/index.js';
import { createLogger } from './core/log.js';
import { migrate } from './core/migrate.js';
import { createQueues, type Services } from './jobs/index.js';
import { closeStorage } from './loads/index.js';
import { startWorkers, type Workers } from './worker/index.js';

const args = new Set(process.argv.slice(2));
const runApi = !args.has('--worker');
const runWorkers = !args.has('--api');
const demo = args.has('--demo');

let config: Config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\nSee the settings table in README.md.\n`);
    process.exit(2);
  }
  throw err;
}

if (!config.DATABASE_URL && !(runApi && runWorkers)) {
  process.stderr.write(
    `${runApi ? '--api' : '--worker'} without DATABASE_URL: the embedded PostgreSQL lives inside one process and cannot be shared.\n` +
      'Set DATABASE_URL, or start without --api/--worker to run the API and the jobs in one process.\n',
  );
  process.exit(2);
}
if (!config.REDIS_URL && !(runApi && runWorkers)) {
  const why = runApi
    ? '--api without REDIS_URL: the jobs it queues (loads, refreshes, backups) would stay in this process and never run.'
    : '--worker without REDIS_URL: no other process could give this one any jobs.';
  process.stderr.write(`${why}\nSet REDIS_URL, or start without --api/--worker to run the API and the jobs in one process.\n`);
  process.exit(2);
}

const log = createLogger(config.LOG_LEVEL, { role: runApi && runWorkers ? 'all' : runApi ? 'api' : 'worker' }, config.LOG_FORMAT);

/** Stopped on a failed start too: PGlite should close its files cleanly. */
let embedded: EmbeddedPostgres | undefined;

async function main(): Promise<void> {
  await Promise.all(Object.values(config.dirs).map((d) => mkdir(d, { recursive: true })));
  let databaseUrl = config.DATABASE_URL;
  if (databaseUrl) {
    await ensureDatabase(databaseUrl, log);
    log.info({ database: urlLabel(databaseUrl) }, 'database: PostgreSQL server');
  } else {
    embedded = await startEmbeddedPostgres({ dataDir: path.join(config.DATA_DIR, 'postgres'), log });
    databaseUrl = embedded.url;
    log.info({ dataDir: embedded.dataDir }, 'database: embedded PostgreSQL (PGlite), because DATABASE_URL is unset');
  }
  const pool = createPool(databaseUrl, config.PG_POOL_SIZE, undefined, log);
  await migrate(pool, log);
  const queues = createQueues(config, log);
  await queues.ping();
  log.info(`jobs: ${queues.label}`);
  const services: Services = { config, pool, log, queues };

  const workers: Workers | undefined = runWorkers ? await startWorkers(services) : undefined;
  let server: ReturnType<typeof serve> | undefined;
  if (runApi) {
    const app = createApp(services);
    server = serve({ fetch: app.fetch, port: config.PORT, hostname: config.HOST }, (info) => {
      log.info({ port: info.port, host: config.HOST, dataDir: config.DATA_DIR }, `listening on http://localhost:${info.port}`);
      if (!config.API_KEY) {
        const reach = isLoopback(config.HOST)
          ? `anyone on this machine (HOST ${config.HOST}; set API_KEY before setting HOST to listen beyond it)`
          : `anyone who can reach ${config.HOST}:${info.port} on the network`;
        log.warn({ host: config.HOST }, `writes are open: API_KEY is unset, so ${reach} can load, change and restore data`);
      }
    });
  }

  let stopping: Promise<void> | undefined;
  const shutdown = (signal: string) => {
    stopping ??= (async () => {
      log.info({ signal }, 'shutting down');
      const force = setTimeout(() => {
        log.error('shutdown took longer than 30 s; exiting');
        process.exit(1);
      }, 30_000);
      force.unref();
      if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
      await workers?.close();
      await queues.close();
      await closeStorage(config);
      await pool.end().catch(() => {});
      await embedded?.stop();
      log.info('stopped');
    })();
    return stopping;
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  if (demo) await startDemo(services);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

main().catch(async (err: unknown) => {
  log.fatal({ err }, `start failed: ${(err as Error).message}`);
  await embedded?.stop().catch(() => {});
  process.exit(1);
});
