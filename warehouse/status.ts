import { dataPath } from '../core/config.js';
import type { Services } from '../jobs/index.js';
import { tableCounts } from './analytics.js';
import { lastBatch, readLedger } from './ledger.js';
import { layoutOf } from './layout.js';
import { sharedReader, WarehouseNotReadyError } from './reader.js';
import { publishedFollower } from './remote.js';

export interface WarehouseStatus {
  status: 'ready' | 'not_built';
  refreshedAt: string | null;
  version: number | null;
  build: string | null;
  upToDate: boolean;
  /** Relative to DATA_DIR, as every path an answer shows. */
  path: string;
  parquetManifest: string;
  tables: Record<string, number>;
}

/** What GET /warehouse answers: the published file's version and row counts, and whether changes wait. */
export async function warehouseStatus({ config, pool, log }: Pick<Services, 'config' | 'pool' | 'log'>): Promise<WarehouseStatus> {
  const layout = layoutOf(config.dirs.warehouse);
  await publishedFollower({ config, pool, log }, layout)();
  const [ledger, pending] = await Promise.all([
    readLedger(pool),
    pool.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM warehouse_changes) AS any'),
  ]);
  const common = { path: dataPath(config.DATA_DIR, layout.duckdb), parquetManifest: dataPath(config.DATA_DIR, layout.manifest) };
  try {
    return await sharedReader(layout.duckdb).use(async (conn, info) => ({
      status: 'ready' as const,
      refreshedAt: info.refreshedAt,
      version: info.version,
      build: info.build,
      upToDate: !pending.rows[0]!.any && info.version >= lastBatch(ledger),
      ...common,
      tables: await tableCounts(conn),
    }));
  } catch (err) {
    if (!(err instanceof WarehouseNotReadyError)) throw err;
    return { status: 'not_built', refreshedAt: null, version: null, build: null, upToDate: false, ...common, tables: {} };
  }
}
