import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Services } from '../../jobs/index.js';
import { storageFor } from '../../storage/index.js';

const Dependency = z.object({
  status: z.enum(['ok', 'down']),
  latencyMs: z.number().optional(),
  error: z.string().optional().openapi({ description: 'Why it is down, in general terms; the log has the details' }),
  embedded: z.boolean().optional().openapi({ description: 'Not a server: the work runs inside this process' }),
  detail: z.string().optional(),
});
const StorageState = Dependency.extend({
  kind: z.enum(['local', 's3']),
  location: z.string().openapi({ description: 'The folder, or s3://bucket/prefix; never the endpoint or a key' }),
  presignedUploads: z
    .boolean()
    .optional()
    .openapi({ description: 'POST /uploads hands out upload URLs (the bucket\'s, or this service\'s with the local storage); `hr load` uses them' }),
});
const HealthSchema = z
  .object({
    status: z.enum(['ok', 'degraded']),
    postgres: Dependency,
    redis: Dependency,
    storage: StorageState,
    down: z.array(z.string()).optional(),
  })
  .openapi('Health');

const route = createRoute({
  method: 'get',
  path: '/health',
  tags: ['operations'],
  summary: 'Is the service and each dependency up?',
  responses: {
    200: { description: 'Everything is up', content: { 'application/json': { schema: HealthSchema } } },
    503: { description: 'A dependency is down; `down` names it', content: { 'application/json': { schema: HealthSchema } } },
  },
});

const TIMED_OUT = Symbol('timed out');

/**
 * Pings one dependency. The answer says only whether it answered in time: the driver's error
 * text names hosts and ports, so it goes to the log (under the request id) instead.
 */
async function probe(name: string, fn: () => Promise<unknown>, log: Logger, requestId: unknown, timeoutMs = 2_000): Promise<z.infer<typeof Dependency>> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(TIMED_OUT), timeoutMs);
      }),
    ]);
    return { status: 'ok', latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    if (err === TIMED_OUT) return { status: 'down', error: `no answer within ${timeoutMs} ms` };
    log.warn({ err, requestId, dependency: name }, 'health check: dependency down');
    // An AppError's message is written for users (the storage errors name no host or key).
    if (err instanceof AppError) return { status: 'down', error: err.message };
    return { status: 'down', error: 'unreachable or refusing connections; the log has the details' };
  } finally {
    clearTimeout(timer);
  }
}

export function registerHealth(app: OpenAPIHono, { config, pool, queues, log }: Services): void {
  app.openapi(route, async (c) => {
    const requestId = c.get('requestId');
    // The process's one storage, opened on first use: the bucket's client is made (and the AWS SDK loaded) only then.
    const files = await storageFor(config);
    const [pgState, queueState, storageState] = await Promise.all([
      probe('postgres', () => pool.query('SELECT 1'), log, requestId),
      probe('redis', () => queues.ping(), log, requestId),
      probe('storage', () => files.check(), log, requestId),
    ]);
    // A bucket is named (no host, no keys); the local folder is DATA_DIR, not its path on this host.
    const storage = { ...storageState, kind: files.kind, location: files.kind === 'local' ? 'DATA_DIR' : files.location, presignedUploads: true };
    // Without REDIS_URL there is no Redis to be down: the jobs run in this process.
    const redisState = queues.durable ? queueState : { ...queueState, embedded: true, detail: 'in-process jobs (REDIS_URL unset)' };
    // Without DATABASE_URL the database is PGlite inside this process: say so, and where it lives.
    const postgres = config.DATABASE_URL
      ? pgState
      : { ...pgState, embedded: true, detail: 'embedded PostgreSQL (PGlite) in DATA_DIR/postgres (DATABASE_URL unset)' };
    const down = [
      postgres.status === 'down' ? 'postgres' : null,
      redisState.status === 'down' ? 'redis' : null,
      storage.status === 'down' ? 'storage' : null,
    ].filter((d): d is string => d !== null);
    if (down.length > 0) return c.json({ status: 'degraded' as const, postgres, redis: redisState, storage, down }, 503);
    return c.json({ status: 'ok' as const, postgres, redis: redisState, storage }, 200);
  });
}
