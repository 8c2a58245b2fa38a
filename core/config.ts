import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_FIELD_MAX_BYTES, MAX_FIELD_MAX_BYTES } from './rules.js';

/**
 * The one place that reads the environment. Everything else receives a typed `Config`.
 * A bad or missing setting stops the start with a message naming it.
 */
const urlWithScheme = (name: string, schemes: string[]) =>
  z
    .string({ error: `${name} is not set` })
    .trim()
    .min(1, `${name} is empty`)
    .refine((v) => {
      try {
        return schemes.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    }, `${name} must be a URL starting with ${schemes.map((s) => `${s}//`).join(' or ')}`);

/** A URL setting that may be left out: unset or empty means "use the embedded stand-in". */
const optionalUrl = (name: string, schemes: string[]) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), urlWithScheme(name, schemes).optional());

const blankToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);

/** `s3://bucket/prefix` → bucket and prefix; anything else is a problem naming STORAGE_URL. */
function parseStorageUrl(v: string, ctx: z.RefinementCtx): { bucket: string; prefix: string } {
  const fail = (why: string) => {
    ctx.addIssue({ code: 'custom', message: `STORAGE_URL ${why}` });
    return z.NEVER;
  };
  let u: URL;
  try {
    u = new URL(v.trim());
  } catch {
    return fail('must look like s3://bucket/prefix (or be unset: files under DATA_DIR)');
  }
  if (u.protocol !== 's3:') return fail('must start with s3:// (or be unset: files under DATA_DIR)');
  if (u.username || u.password) return fail('must not hold credentials: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  if (u.port || u.search || u.hash) return fail('takes no port, query or fragment: the endpoint goes in AWS_ENDPOINT_URL');
  const bucket = u.hostname;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) return fail(`bucket "${bucket}" is not a valid bucket name`);
  let segments: string[];
  try {
    segments = u.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
  } catch {
    return fail('prefix has a broken %-escape');
  }
  if (segments.some((s) => s === '.' || s === '..' || /[\\\u0000-\u001f]/.test(s))) return fail('prefix must be a plain path');
  return { bucket, prefix: segments.join('/') };
}

const bytes = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const schema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  /**
   * Address to listen on. Unset: 127.0.0.1 without API_KEY (writes need no key, so only this
   * machine may send them), 0.0.0.0 with it. See loadConfig.
   */
  HOST: z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), z.string().trim().optional()),
  /** Unset: PostgreSQL runs embedded (PGlite) with its files under DATA_DIR/postgres. */
  DATABASE_URL: optionalUrl('DATABASE_URL', ['postgres:', 'postgresql:']),
  /** Unset or empty: jobs run in-process (see jobs/local-queue.ts) instead of on BullMQ. */
  REDIS_URL: optionalUrl('REDIS_URL', ['redis:', 'rediss:']),
  /**
   * Longest a Redis command of the API or a producer waits (queueing a load, a refresh, a backup;
   * /health's PING). While Redis is unreachable such commands fail at once (no offline queue), so
   * POST /loads answers 503 in moments; this bounds the case of a Redis that is connected but mute.
   */
  REDIS_COMMAND_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(3_000),
  DATA_DIR: z.string().min(1).default('./data'),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'QUEUE_PREFIX may hold letters, digits, _ . - (1-64 chars)')
    .default('hr'),
  API_KEY: z
    .string()
    .min(16, 'API_KEY must be at least 16 characters')
    .optional()
    .or(z.literal('').transform(() => undefined)),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Unset or empty: pretty lines on a terminal, JSON lines otherwise (see core/log.ts). */
  LOG_FORMAT: z.preprocess(
    (v) => (typeof v === 'string' && v.trim() === '' ? undefined : v),
    z.enum(['json', 'pretty'], { error: 'LOG_FORMAT must be json or pretty (or unset: pretty on a terminal, JSON otherwise)' }).optional(),
  ),
  /**
   * Origins (scheme://host[:port], comma-separated) whose pages may send state-changing requests
   * besides the service's own pages; every other site gets 403 (api/middleware.ts: csrf).
   */
  TRUSTED_ORIGINS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((o) => o.trim()).filter((o) => o !== ''))
    .pipe(z.array(z.string().regex(/^https?:\/\/[^/\s]+$/, 'TRUSTED_ORIGINS holds origins like https://intranet.example.com, comma-separated'))),
  /** Backup verifications (GET /backups/{id}/verify) one API process runs at once; 429 past it. */
  VERIFY_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(1),
  /** CSV uploads (POST /loads with a text/csv or multipart body) one API process streams at once; 429 past it. */
  UPLOAD_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(4),
  /**
   * Buckets besides the one of STORAGE_URL that `POST /loads {"table", "url": "s3://bucket/key"}`
   * may read, comma-separated; empty (the default): only the bucket of STORAGE_URL.
   */
  LOAD_URL_BUCKETS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((b) => b.trim()).filter((b) => b !== ''))
    .pipe(z.array(z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'LOAD_URL_BUCKETS holds bucket names, comma-separated'))),
  /** How long a presigned upload URL (POST /uploads) works, in seconds: 1 s to 7 days. */
  UPLOAD_URL_EXPIRES_SECONDS: z.coerce.number().int().min(1).max(7 * 24 * 3600).default(3600),
  /**
   * The service's address as clients reach it (scheme://host[:port][/path]), for the presigned
   * upload URLs of the local backend, which point at the service. Unset: the address the request
   * for the URL came to (its Host header).
   */
  PUBLIC_URL: optionalUrl('PUBLIC_URL', ['http:', 'https:']),
  /** Backups and restores waiting or running on the backups queue (all processes) before more are refused with 429. */
  BACKUP_QUEUE_MAX: z.coerce.number().int().min(1).max(1000).default(4),
  /** An upload is refused (507) when the landing folder's disk would have less free space than this. */
  MIN_FREE_DISK_BYTES: z.coerce.number().int().min(0).default(1024 ** 3),
  /** Days an uploaded file is kept after its load finished; 0 keeps them for ever. Fractions allowed. */
  UPLOAD_RETENTION_DAYS: z.coerce.number().min(0).default(7),
  /** Days a reject is kept in the rejects table; 0 keeps them for ever. Fractions allowed. */
  REJECT_RETENTION_DAYS: z.coerce.number().min(0).default(30),
  /** When the retention job runs (cron, 5 or 6 fields, UTC). */
  RETENTION_CRON: z
    .string()
    .trim()
    .regex(/^\S+(\s+\S+){4,5}$/, 'RETENTION_CRON must be a cron pattern of 5 or 6 fields, e.g. "7 * * * *"')
    .default('7 * * * *'),
  /**
   * When the landing inbox (DATA_DIR/landing/inbox/) is scanned (cron, 5 or 6 fields, UTC): every
   * minute by default; empty: never on a schedule (POST /landing/scan still scans).
   */
  LANDING_SCAN_CRON: z
    .string()
    .trim()
    .default('* * * * *')
    .refine((v) => v === '' || /^\S+(\s+\S+){4,5}$/.test(v), 'LANDING_SCAN_CRON must be a cron pattern of 5 or 6 fields, e.g. "* * * * *", or empty for no schedule')
    .transform((v) => (v === '' ? undefined : v)),
  /** An inbox file is taken once two looks at least this far apart find the same size and modification time. */
  LANDING_SETTLE_MS: z.coerce.number().int().min(0).max(3_600_000).default(5_000),
  /** Largest request body POST /ingest accepts, counted on the stream. */
  INGEST_MAX_BYTES: bytes(5 * 1024 * 1024),
  /**
   * Longest field (UTF-8 bytes) the data rules accept in batches and loads: a longer one makes its
   * row a reject saying so. A restore holds fields to MAX_FIELD_MAX_BYTES instead, so a backup
   * restores whatever the setting was when its rows came in (backup/avro-to-copy.ts).
   */
  FIELD_MAX_BYTES: z.coerce.number().int().min(1024).max(MAX_FIELD_MAX_BYTES).default(DEFAULT_FIELD_MAX_BYTES),
  /** A reject's raw text is kept up to this many UTF-8 bytes; longer text is cut and marked truncated. */
  REJECT_RAW_MAX_BYTES: z.coerce.number().int().min(64).max(16 * 1024 * 1024).default(4 * 1024),
  /** Connections in the PostgreSQL pool of one process. */
  PG_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  /** Largest CSV file POST /loads accepts (per request), counted while streaming to disk. */
  LOAD_MAX_BYTES: bytes(10 * 1024 * 1024 * 1024),
  /** Rows per load chunk: each chunk commits with its checkpoint (resume point, progress). */
  LOAD_CHUNK_ROWS: z.coerce.number().int().min(1).max(5_000_000).default(100_000),
  /**
   * Bytes per load chunk too (its rows' COPY text plus its rejects' raw text): a chunk ends at
   * LOAD_CHUNK_ROWS or at this, whichever comes first, so wide rows cannot grow a worker's memory.
   */
  LOAD_CHUNK_BYTES: z.coerce.number().int().min(1024 * 1024).max(1024 * 1024 * 1024).default(64 * 1024 * 1024),
  /** Loads one worker process runs at once. */
  LOAD_CONCURRENCY: z.coerce.number().int().min(1).max(32).default(1),
  /** Tries per load for infrastructure errors (bad input is never retried). */
  LOAD_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
  /** First retry delay; doubles each try. */
  LOAD_BACKOFF_MS: z.coerce.number().int().min(0).default(2_000),
  /** A worker that stops renewing its job lock this long (killed, hung) loses the job to another. */
  LOAD_LOCK_MS: z.coerce.number().int().min(500).default(30_000),
  /** How often workers look for jobs whose worker died. */
  LOAD_STALLED_CHECK_MS: z.coerce.number().int().min(200).default(15_000),
  /** Longest `?wait=true` on POST /loads waits before answering 202 with the current state. */
  LOAD_WAIT_MS: z.coerce.number().int().min(0).default(15 * 60_000),
  /**
   * Checks foreign keys once per chunk, set-based (and locks the referenced rows FOR KEY SHARE as
   * the per-row triggers would), then writes with session_replication_role = replica so the
   * per-row trigger checks are skipped. Needs superuser or `GRANT SET ON PARAMETER
   * session_replication_role`; without it loads fall back to the triggers, correct but slower.
   */
  LOAD_SET_BASED_FK: z
    .enum(['true', 'false', '1', '0'])
    .default('true')
    .transform((v) => v === 'true' || v === '1'),
  /**
   * How often each worker process checks PostgreSQL for changes no refresh has taken yet (the
   * `warehouse_changes` log) and, when there are some and no refresh is waiting or running,
   * queues one: a refresh requested while Redis was down is not lost. 0 turns the check off.
   */
  WAREHOUSE_CHECK_MS: z.coerce.number().int().min(0).max(86_400_000).default(30_000),
  /** A requested warehouse refresh waits this long, absorbing the requests that follow it. */
  WAREHOUSE_REFRESH_DEBOUNCE_MS: z.coerce.number().int().min(0).max(600_000).default(1_000),
  /**
   * Memory DuckDB may use while a refresh builds the warehouse (DuckDB's own default is 80% of
   * RAM); past it DuckDB spills to a folder under the warehouse directory.
   */
  WAREHOUSE_MEMORY_LIMIT: z
    .string()
    .regex(/^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i, 'WAREHOUSE_MEMORY_LIMIT must look like 512MB or 2GB')
    .default('1GB'),
  /** A table's Parquet deltas are merged into a new base once this many pile up. */
  WAREHOUSE_COMPACT_AFTER: z.coerce.number().int().min(1).max(10_000).default(16),
  /** Longest `POST /warehouse/refresh?wait=true` waits before answering 202 with the job id. */
  WAREHOUSE_REFRESH_WAIT_MS: z.coerce.number().int().min(1).max(3_600_000).default(600_000),
  /** Cron pattern (5 or 6 fields, UTC) for scheduled backups of every table; empty: none. */
  BACKUP_CRON: z
    .string()
    .trim()
    .regex(/^\S+(\s+\S+){4,5}$/, 'BACKUP_CRON must be a cron pattern of 5 or 6 fields, e.g. "0 3 * * *"')
    .optional()
    .or(z.literal('').transform(() => undefined)),
  /** Backup sets to keep: after each backup the oldest beyond this many are deleted; 0 keeps all. */
  BACKUP_KEEP: z.coerce.number().int().min(0).default(7),
  /** Longest `POST /backups?wait=true` or a restore waits for its job before answering 202 with the job id. */
  BACKUP_WAIT_MS: z.coerce.number().int().min(1).max(3_600_000).default(600_000),
  /**
   * A restore changing at least this many rows (and a tenth of the table) rebuilds the table's
   * secondary indexes and foreign keys once instead of maintaining them row by row.
   */
  RESTORE_BULK_ROWS: z.coerce.number().int().min(1).default(50_000),
  /**
   * Longest a restore waits for one of its table locks (a load's chunk, a refresh's export, a
   * reader in the way) before it lets go of everything and tries again; after
   * RESTORE_LOCK_ATTEMPTS such tries the restore answers 409 `busy` with Retry-After.
   */
  RESTORE_LOCK_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  RESTORE_LOCK_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
  /**
   * Where the service keeps its files. Unset or empty: the folder DATA_DIR (one machine).
   * `s3://bucket/prefix`: an S3-compatible bucket, reached with the AWS_* settings below; for
   * anything they leave out, the AWS SDK's default credential chain (profiles, SSO, web identity,
   * container and instance roles) reads its own AWS_* variables, the one exception to "only this
   * module reads the environment".
   */
  STORAGE_URL: z.preprocess(blankToUndefined, z.string().transform(parseStorageUrl).optional()),
  /** S3-compatible endpoint (MinIO, R2, Ceph, GCS interop); unset: AWS S3 itself. */
  AWS_ENDPOINT_URL: optionalUrl('AWS_ENDPOINT_URL', ['http:', 'https:']),
  AWS_REGION: z.preprocess(blankToUndefined, z.string().trim().optional()),
  AWS_DEFAULT_REGION: z.preprocess(blankToUndefined, z.string().trim().optional()),
  /** Bucket in the path (`endpoint/bucket/key`), as MinIO and Ceph want; default: true when AWS_ENDPOINT_URL is set. */
  S3_FORCE_PATH_STYLE: z.preprocess(
    blankToUndefined,
    z
      .enum(['true', 'false', '1', '0'], { error: 'S3_FORCE_PATH_STYLE must be true or false' })
      .transform((v) => v === 'true' || v === '1')
      .optional(),
  ),
  AWS_ACCESS_KEY_ID: z.preprocess(blankToUndefined, z.string().optional()),
  AWS_SECRET_ACCESS_KEY: z.preprocess(blankToUndefined, z.string().optional()),
  AWS_SESSION_TOKEN: z.preprocess(blankToUndefined, z.string().optional()),
  /**
   * Secret behind the presigned upload URLs of the local backend (they point at the service).
   * Unset: derived from API_KEY; without API_KEY either, made at random per process, and then a URL
   * works only on the API host that made it.
   */
  UPLOAD_SIGNING_KEY: z.preprocess(
    blankToUndefined,
    z.string().min(32, 'UPLOAD_SIGNING_KEY must be at least 32 characters').optional(),
  ),
});

/** Every setting with its default and range; test/docs.test.ts holds the README's table to it. */
export const settingsSchema = schema;

/** The S3-compatible bucket behind STORAGE_URL, with what the client needs to reach it. */
export interface S3Settings {
  readonly bucket: string;
  /** '' or a path without leading or trailing '/'. */
  readonly prefix: string;
  readonly endpoint?: string;
  /** Unset: the SDK's chain (AWS profile); with an endpoint, us-east-1. */
  readonly region?: string;
  readonly forcePathStyle: boolean;
  /** Only when both keys are set; otherwise the SDK's default credential chain. */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
}

export type StorageSettings = { readonly kind: 'local'; readonly root: string } | ({ readonly kind: 's3' } & S3Settings);

/** The AWS_* settings live only in `storage`, so the keys travel no further than the client. */
type StorageKeys = 'STORAGE_URL' | 'AWS_ENDPOINT_URL' | 'AWS_REGION' | 'AWS_DEFAULT_REGION' | 'S3_FORCE_PATH_STYLE' | 'AWS_ACCESS_KEY_ID' | 'AWS_SECRET_ACCESS_KEY' | 'AWS_SESSION_TOKEN';

export type Config = Readonly<
  Omit<z.infer<typeof schema>, 'DATA_DIR' | 'HOST' | StorageKeys> & {
    DATA_DIR: string;
    /** Resolved: the HOST setting, or the default that depends on API_KEY. */
    HOST: string;
    /** Folders under DATA_DIR, all absolute. */
    dirs: { landing: string; backups: string; warehouse: string };
    /** Where files live: the folder DATA_DIR or an S3-compatible bucket (STORAGE_URL). */
    storage: StorageSettings;
  }
>;

export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => {
        const key = String(i.path[0] ?? '');
        return i.message.includes(key) ? i.message : `${key}: ${i.message}`;
      }),
    );
  }
  const {
    STORAGE_URL,
    AWS_ENDPOINT_URL,
    AWS_REGION,
    AWS_DEFAULT_REGION,
    S3_FORCE_PATH_STYLE,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    ...settings
  } = parsed.data;
  if (STORAGE_URL && Boolean(AWS_ACCESS_KEY_ID) !== Boolean(AWS_SECRET_ACCESS_KEY)) {
    throw new ConfigError(['AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both or neither']);
  }
  const dataDir = path.resolve(parsed.data.DATA_DIR);
  const region = AWS_REGION ?? AWS_DEFAULT_REGION ?? (AWS_ENDPOINT_URL ? 'us-east-1' : undefined);
  const storage: StorageSettings = STORAGE_URL
    ? {
        kind: 's3',
        ...STORAGE_URL,
        ...(AWS_ENDPOINT_URL && { endpoint: AWS_ENDPOINT_URL }),
        ...(region && { region }),
        forcePathStyle: S3_FORCE_PATH_STYLE ?? Boolean(AWS_ENDPOINT_URL),
        ...(AWS_ACCESS_KEY_ID &&
          AWS_SECRET_ACCESS_KEY && {
            credentials: {
              accessKeyId: AWS_ACCESS_KEY_ID,
              secretAccessKey: AWS_SECRET_ACCESS_KEY,
              ...(AWS_SESSION_TOKEN && { sessionToken: AWS_SESSION_TOKEN }),
            },
          }),
      }
    : { kind: 'local', root: dataDir };
  return Object.freeze({
    ...settings,
    // Without a key anyone who can connect may write, so by default only this machine can.
    HOST: settings.HOST ?? (settings.API_KEY ? '0.0.0.0' : '127.0.0.1'),
    storage,
    DATA_DIR: dataDir,
    dirs: {
      landing: path.join(dataDir, 'landing'),
      backups: path.join(dataDir, 'backups'),
      warehouse: path.join(dataDir, 'warehouse'),
    },
  });
}

/** DATABASE_URL for tools that need a PostgreSQL server of their own (benchmarks, crash tests). */
export function serverDatabaseUrl(config: Config): string {
  if (!config.DATABASE_URL) throw new ConfigError(['DATABASE_URL is not set: this tool needs a PostgreSQL server']);
  return config.DATABASE_URL;
}

/** The server a connection URL points at, for logs: no user name or password. */
export function urlLabel(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname.length > 1 ? u.pathname : ''}`;
}

/**
 * A path under DATA_DIR as answers show it: relative to DATA_DIR, `/`-separated
 * (`landing/uploads/…`, `backups/<id>/jobs.avro`). Absolute paths name the server's folders, so
 * they stay in the log.
 */
export function dataPath(dataDir: string, file: string): string {
  const rel = path.relative(dataDir, file);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return path.basename(file);
  return rel.split(path.sep).join('/');
}
