/**
 * A process that runs a warehouse refresh and stops dead at one step of the publish: there it
 * says "READY" and waits to be killed (SIGKILL), as a crash would stop it (no DuckDB close, no
 * checkpoint, no clean-up). The step is the first argument; settings come from the environment.
 */
import { loadConfig, serverDatabaseUrl } from '../../core/config.js';
import { createPool } from '../../core/db.js';
import { createLogger } from '../../core/log.js';
import type { PublishStep } from '../../warehouse/publish.js';
import { refreshWarehouse } from '../../warehouse/refresh.js';

const step = process.argv[2] as PublishStep;
const config = loadConfig();
const pool = createPool(serverDatabaseUrl(config), 2);
await refreshWarehouse(
  { config, pool, log: createLogger('silent') },
  {
    onStep: async (at) => {
      if (at !== step) return;
      process.stdout.write('READY\n');
      await new Promise(() => {});
    },
  },
);
process.stdout.write('FINISHED\n');
await pool.end();
