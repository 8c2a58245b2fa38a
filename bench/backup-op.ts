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
 * connection); a restore asks for a warehouse refresh afterwards, like the worker does, through a
 * queue made when it is first used.
 */
import { loadConfig, serverDatabaseUrl } from '../core/config.js';
import { createPool } from '../core/db.js';
import { createLogger } from '../core/log.js';
import { isTableName } from '../core/tables.js';
import type { JobQueue, Queues, Services } from '../jobs/index.js';
import { closeStorageFor } from '../storage/index.js';

const [op, table, backup, mode] = process.argv.slice(2);
if (!table || !isTableName(table) || (op !== 'backup' && op !== 'restore')) {
  process.stderr.write('usage: backup-op.js backup|restore <table> [backup-id] [replace|merge]\n');
  process.exit(2);
}
const config = loadConfig();
const pool = createPool(serverDatabaseUrl(config), 2);
const log = createLogger(config.LOG_LEVEL);
// A restore asks for a warehouse refresh once it has committed: the job queue (BullMQ, Redis) is
// made then, on first use, as the restore itself loads the warehouse while PostgreSQL builds indexes.
let made: Promise<Queues> | undefined;
const realQueues = () => (made ??= import('../jobs/index.js').then((m) => m.createQueues(config, log)));
const onFirstUse = (name: 'loads' | 'warehouse' | 'backups'): JobQueue =>
  new Proxy({} as JobQueue, {
    get: (_, method: string) => method === 'then' ? undefined : async (...args: unknown[]) => {
      const queue = (await realQueues())[name] as unknown as Record<string, (...a: unknown[]) => unknown>;
      return queue[method]!(...args);
    },
  });
const queues = op === 'restore' ? ({ loads: onFirstUse('loads'), warehouse: onFirstUse('warehouse'), backups: onFirstUse('backups') } as Queues) : undefined;
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
  if (made) await (await made).close();
  await pool.end();
  await closeStorageFor(config);
}
