/**
 * One backup or restore in its own process, so `npm run bench:backup` can measure its time and
 * peak RSS on their own. Settings come from the environment (DATABASE_URL, DATA_DIR, ...).
 *   node dist/bench/backup-op.js backup <table>
 *   node dist/bench/backup-op.js restore <table> <backup-id> [replace|merge]
 * (bench/backup.ts compiles this file beside the service's build in dist/, so it runs the same
 * compiled JavaScript `npm start` does; `tsx bench/backup-op.ts …` works too.)
 * Prints the result as one JSON line: `ms` is the operation alone, `startMs` the process's
 * start-up until the operation began (module loading, config, pool).
 *
 * Only what the operation needs is loaded: a backup needs no job queue (so no BullMQ, no Redis
 * connection); a restore asks for a warehouse refresh afterwards, like the worker does.
 */
import { loadConfig, serverDatabaseUrl } from '../core/config.js';
import { createPool } from '../core/db.js';
import { createLogger } from '../core/log.js';
import { isTableName } from '../core/tables.js';
import type { Services } from '../jobs/index.js';
import { closeStorageFor } from '../storage/index.js';

const [op, table, backup, mode] = process.argv.slice(2);
if (!table || !isTableName(table) || (op !== 'backup' && op !== 'restore')) {
  process.stderr.write('usage: backup-op.js backup|restore <table> [backup-id] [replace|merge]\n');
  process.exit(2);
}
const config = loadConfig();
const pool = createPool(serverDatabaseUrl(config), 2);
const log = createLogger(config.LOG_LEVEL);
const queues = op === 'restore' ? (await import('../jobs/index.js')).createQueues(config, log) : undefined;
const services = { config, pool, log, queues } as Services;
const run =
  op === 'backup'
    ? await import('../backup/create.js').then((m) => () => m.createBackup(services, { tables: [table], reason: 'bench' }))
    : await import('../backup/restore.js').then(
        (m) => () => m.restoreTable(services, { table, backup, mode: mode === 'merge' ? 'merge' : 'replace' }),
      );
const started = performance.now();
try {
  const result = await run();
  const ms = Math.round(performance.now() - started);
  process.stdout.write(`${JSON.stringify({ ms, startMs: Math.round(started), result })}\n`);
} finally {
  await queues?.close();
  await pool.end();
  await closeStorageFor(config);
}
