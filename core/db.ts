import pg from 'pg';
import type { Logger } from './log.js';

// COUNT(*) and bigserial ids come back as int8; every value we count fits in a JS number.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export function createPool(url: string, max = 10, applicationName = 'hr-store', log?: Logger): Pool {
  const pool = new pg.Pool({ connectionString: url, max, application_name: applicationName });
  return survivingRestarts(pool, log);
}

/**
 * Keeps a lost PostgreSQL connection from taking the process down. pg emits 'error' on a client
 * whose server went away while no query was running on it (a restart sends 57P01 to every
 * session); with nobody listening, that event kills the process. Idle clients report through the
 * pool's 'error' event; a checked-out one (a load's writer between chunks, a refresh between
 * statements, a transaction between queries) through its own, which every client of this pool
 * gets the moment it connects. The client is unusable afterwards: its next query fails, the work
 * in hand fails with a transient error and is retried (jobs: with backoff), and the pool connects
 * anew for the next checkout.
 */
export function survivingRestarts(pool: pg.Pool, log?: Logger): pg.Pool {
  const lost = (where: string) => (err: Error) =>
    log?.warn({ code: (err as { code?: string }).code, where }, `a PostgreSQL connection was lost (${where}); the work on it is retried`);
  pool.on('error', lost('idle connection'));
  pool.on('connect', (client) => {
    client.on('error', lost('connection in use'));
  });
  return pool;
}

/** The same guard for a lone client (not from a pool): an 'error' with nobody listening kills the process. */
export function guardClient(client: pg.Client, log?: Logger): pg.Client {
  client.on('error', (err) => log?.warn({ code: (err as { code?: string }).code }, 'a PostgreSQL connection was lost'));
  return client;
}

/**
 * Creates the database named in `url` when it does not exist yet, so a first start against a
 * fresh PostgreSQL server just works. Needs the CREATEDB privilege; without it the error says so.
 */
export async function ensureDatabase(url: string, log?: Logger): Promise<void> {
  const probe = guardClient(new pg.Client({ connectionString: url }), log);
  try {
    await probe.connect();
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err;
  } finally {
    await probe.end().catch(() => {});
  }
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = guardClient(new pg.Client({ connectionString: admin.toString() }), log);
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    log?.info({ database: name }, 'created database');
  } catch (err) {
    // Another process created it between our probe and now.
    if ((err as { code?: string }).code !== '42P04') throw err;
  } finally {
    await client.end();
  }
}

export async function withTransaction<T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
  isolation: 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE' = 'READ COMMITTED',
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(`BEGIN ISOLATION LEVEL ${isolation}`);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** SQLSTATEs that mean "try again", not "your data is wrong". */
export function isTransientPgError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  if (!code) {
    const sys = (err as { code?: string; errno?: number } | null) ?? {};
    return typeof sys.errno === 'number';
  }
  return (
    code === '40001' || // serialization_failure
    code === '40P01' || // deadlock_detected
    code.startsWith('08') || // connection exceptions
    code === '57P01' || // admin_shutdown
    code === '57P03' || // cannot_connect_now
    code === '53300' || // too_many_connections
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT'
  );
}
