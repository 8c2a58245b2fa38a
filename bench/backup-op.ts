/**
 * One backup or restore in its own process, so `npm run bench:backup` can measure its time and
 * peak RSS on their own. Settings come from the environment (DATABASE_URL, DATA_DIR, ...).
 *   tsx bench/backup-op.ts backup <table>
 *   tsx bench/backup-op.ts restore <table> <backup-id> [replace|merge]
 * Prints the result as one JSON line.
 */
import { createBackup } from '../backup/create.js';
import { restoreTable, type RestoreMode } from '../backup/restore.js';
import { loadConfig, serverDatabaseUrl } from '../core/config.js';
import type { Services } from '../jobs/index.js';
import { createPool } from '../core/db.js';
import { createLogger } from '../core/log.js';
import { createQueues } from '../jobs/index.js';
import { isTableName } from '../core/tables.js';
import { closeStorageFor } from '../storage/index.js';

const [op, table, backup, mode] = process.argv.slice(2);
if (!table || !isTableName(table) || (op !== 'backup' && op !== 'restore')) {
  process.stderr.write('usage: backup-op.ts backup|restore <table> [backup-id] [replace|merge]\n');
  process.exit(2);
}
const config = loadConfig();
const pool = createPool(serverDatabaseUrl(config), 2);
const log = createLogger(config.LOG_LEVEL);
const queues = createQueues(config, log);
const services: Services = { config, pool, log, queues };
const started = performance.now();
try {
  const result =
    op === 'backup'
      ? await createBackup(services, { tables: [table], reason: 'bench' })
      : await restoreTable(services, { table, backup, mode: (mode as RestoreMode | undefined) ?? 'replace' });
  const ms = Math.round(performance.now() - started);
  process.stdout.write(`${JSON.stringify({ ms, result })}\n`);
} finally {
  await queues.close();
  await pool.end();
  await closeStorageFor(config);
}
