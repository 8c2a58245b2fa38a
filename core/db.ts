import pg from 'pg';
import type { Logger } from './log.js';

// COUNT(*) and bigserial ids come back as int8; every value we count fits in a JS number.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export function createPool(url: string, max = 10, applicationName = 'hr-store'): Pool {
  const pool = new pg.Pool({ connectionString: url, max, application_name: applicationName });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  return pool;
}

/**
 * Creates the database named in `url` when it does not exist yet, so a first start against a
 * fresh PostgreSQL server just works. Needs the CREATEDB privilege; without it the error says so.
 */
export async function ensureDatabase(url: string, log?: Logger): Promise<void> {
  const probe = new pg.Client({ connectionString: url });
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
  const client = new pg.Client({ connectionString: admin.toString() });
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
