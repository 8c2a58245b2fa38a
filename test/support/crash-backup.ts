/**
 * A process that starts a backup and stops dead half-way: after the first table's file is
 * written it says "READY" and waits to be killed (SIGKILL), as a crash would stop it.
 * Settings come from the environment, like the real worker's.
 */
import { createBackup } from '../../backup/create.js';
import { loadConfig, serverDatabaseUrl } from '../../core/config.js';
import type { Services } from '../../jobs/index.js';
import { createPool } from '../../core/db.js';
import { createLogger } from '../../core/log.js';

const config = loadConfig();
const pool = createPool(serverDatabaseUrl(config), 2);
const services = { config, pool, log: createLogger('silent') } as unknown as Services;
await createBackup(services, {
  onTable: async () => {
    process.stdout.write('READY\n');
    await new Promise(() => {});
  },
});
