import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { backupStorage, listBackups, readManifest, requestBackup, requestRestore, verifyBackup } from '../../backup/index.js';
import type { Services } from '../../jobs/index.js';
import { TABLE_NAMES } from '../../core/tables.js';
import { tableParam, WaitParam } from '../params.js';
import { error, json, keyed, keyErrors, writeErrors, queueErrors } from '../schemas.js';
import { Gate } from '../limits.js';

const BackupEntrySchema = z
  .object({
    id: z.string().openapi({ description: 'Backup set id; every table of one set shares it', example: '20261122T030000000Z-1a2b3c' }),
    table: z.enum(TABLE_NAMES),
    file: z.string().openapi({ description: 'The Avro object container file, relative to DATA_DIR', example: 'backups/20261122T030000000Z-1a2b3c/departments.avro' }),
    rows: z.number().int(),
    bytes: z.number().int(),
    sha256: z.string(),
    createdAt: z.string().openapi({ description: 'When the snapshot was taken (UTC)' }),
  })
  .openapi('BackupEntry');

const JobAccepted = z
  .object({ jobId: z.string(), status: z.enum(['queued', 'running']) })
  .openapi('BackupJobAccepted', { description: 'The job runs on the worker; the finished set appears in GET /backups' });

const ManifestSchema = z
  .object({
    format: z.number().int(),
    id: z.string(),
    snapshotAt: z.string(),
    finishedAt: z.string(),
    schemaVersion: z.number().int().openapi({ description: 'Highest migration applied at the snapshot' }),
    reason: z.string().openapi({ description: '"api" or "schedule"' }),
    tables: z.array(
      z.object({ table: z.enum(TABLE_NAMES), file: z.string(), rows: z.number().int(), bytes: z.number().int(), sha256: z.string(), codec: z.string() }),
    ),
  })
  .openapi('BackupManifest');

const VerifySchema = z
  .object({
    id: z.string(),
    ok: z.boolean(),
    tables: z.array(
      z.object({
        table: z.enum(TABLE_NAMES),
        file: z.string().openapi({ description: 'Relative to DATA_DIR' }),
        ok: z.boolean(),
        rows: z.number().int(),
        bytes: z.number().int(),
        sha256: z.string(),
        problem: z.string().optional().openapi({ description: 'What is wrong with the file, when it is not ok' }),
      }),
    ),
  })
  .openapi('BackupVerification');

const RestoreResultSchema = z
  .object({
    table: z.enum(TABLE_NAMES),
    backup: z.string(),
    mode: z.enum(['replace', 'merge']),
    rows: z.number().int().openapi({ description: 'Records in the backup file' }),
    inserted: z.number().int(),
    updated: z.number().int(),
    deleted: z.number().int(),
    unchanged: z.number().int(),
  })
  .openapi('RestoreResult');

const idParam = z.string().openapi({ param: { name: 'id', in: 'path' }, example: '20261122T030000000Z-1a2b3c' });

const createBackupRoute = createRoute({
  method: 'post',
  path: '/backups',
  tags: ['backups'],
  summary: 'Back up tables to Avro files, all from one consistent snapshot',
  description:
    'The backup runs on the worker: 202 with the job. With `?wait=true`, 200 with the files once written, or 202 with the job\'s current state after BACKUP_WAIT_MS.',
  ...keyed,
  request: {
    query: z.object({ wait: WaitParam }),
    body: {
      required: false,
      content: {
        'application/json': {
          schema: z.object({ tables: z.array(z.enum(TABLE_NAMES)).min(1).optional() }).openapi({ description: 'Default: all three tables' }),
        },
      },
    },
  },
  responses: {
    200: json(z.array(BackupEntrySchema), 'With ?wait=true: the files written'),
    202: json(JobAccepted, 'The backup job is queued (or still going after BACKUP_WAIT_MS)'),
    400: error('Bad body or wait'),
    413: error('A JSON body larger than 64 KiB'),
    429: error('BACKUP_QUEUE_MAX backups and restores are already waiting or running; Retry-After says when to try again'),
    ...queueErrors,
    ...writeErrors,
  },
});

const listRoute = createRoute({
  method: 'get',
  path: '/backups',
  tags: ['backups'],
  summary: 'Backup files, newest first',
  request: { query: z.object({ table: tableParam('query').optional() }) },
  responses: { 200: json(z.array(BackupEntrySchema), 'Every file of every finished set'), 404: error('Unknown table') },
});

const manifestRoute = createRoute({
  method: 'get',
  path: '/backups/{id}',
  tags: ['backups'],
  summary: "A backup set's manifest",
  request: { params: z.object({ id: idParam }) },
  responses: { 200: json(ManifestSchema, 'The manifest'), 404: error('Unknown backup') },
});

const verifyRoute = createRoute({
  method: 'get',
  path: '/backups/{id}/verify',
  tags: ['backups'],
  summary: 'Check a set without restoring it: header, schema, every block, SHA-256 and row count against the manifest',
  description: 'Reads, decompresses and hashes whole files: needs the API key when API_KEY is set, and runs at most VERIFY_CONCURRENCY at once per process.',
  ...keyed,
  request: { params: z.object({ id: idParam }), query: z.object({ table: tableParam('query').optional() }) },
  responses: {
    200: json(VerifySchema, '`ok` is false when any file is damaged; `problem` says how'),
    404: error('Unknown backup or table'),
    429: error('VERIFY_CONCURRENCY verifications are already running in this process; Retry-After says when to try again'),
    ...keyErrors,
  },
});

const restoreRoute = createRoute({
  method: 'post',
  path: '/backups/{table}/restore',
  tags: ['backups'],
  summary: 'Restore one table from a backup, in one transaction',
  description:
    '`replace` (default) leaves the table exactly as in the backup; `merge` upserts the backup rows and keeps the rest. The file is verified first. A backup row that breaks a data rule refuses the whole restore (422; the rows are kept in the rejects table). Nothing changes on any error. A restore always waits for its job: 202 with the job\'s state if it takes longer than BACKUP_WAIT_MS.',
  ...keyed,
  request: {
    params: z.object({ table: tableParam('path') }),
    body: {
      required: false,
      content: {
        'application/json': {
          schema: z.object({
            backup: z.string().optional().openapi({ description: 'Backup set id; default: the newest holding the table' }),
            mode: z.enum(['replace', 'merge']).optional(),
          }),
        },
      },
    },
  },
  responses: {
    200: json(RestoreResultSchema, 'Restored'),
    202: json(JobAccepted, 'Still going after BACKUP_WAIT_MS; the job goes on'),
    400: error('Bad body'),
    404: error('Unknown table or backup'),
    409: error(
      'The restore would break a foreign key (code `conflict`; the details name the count), or the table stayed busy: a load, a refresh or another restore held its locks through RESTORE_LOCK_ATTEMPTS waits of RESTORE_LOCK_TIMEOUT_MS (code `busy`, with Retry-After). Nothing was restored',
    ),
    422: error('The file is damaged, of another table, or holds rows that break the data rules'),
    413: error('A JSON body larger than 64 KiB'),
    429: error('BACKUP_QUEUE_MAX backups and restores are already waiting or running; Retry-After says when to try again'),
    ...queueErrors,
    ...writeErrors,
  },
});

export function registerBackups(app: OpenAPIHono, services: Services): void {
  const { config } = services;
  const verifications = new Gate('backup verifications are', config.VERIFY_CONCURRENCY, 'VERIFY_CONCURRENCY', 5);

  app.openapi(createBackupRoute, async (c) => {
    const { tables } = c.req.valid('json');
    const outcome = await requestBackup(services, tables ?? TABLE_NAMES, c.req.valid('query').wait);
    if (outcome.done) return c.json(outcome.value, 200);
    return c.json({ jobId: outcome.jobId, status: outcome.status }, 202);
  });

  app.openapi(listRoute, async (c) => c.json(await listBackups(config, c.req.valid('query').table), 200));

  app.openapi(manifestRoute, async (c) => c.json(await readManifest(await backupStorage(config), c.req.valid('param').id), 200));

  app.openapi(verifyRoute, async (c) => {
    const { id } = c.req.valid('param');
    return c.json(await verifications.run(() => verifyBackup(config, id, c.req.valid('query').table)), 200);
  });

  app.openapi(restoreRoute, async (c) => {
    const { table } = c.req.valid('param');
    const body = c.req.valid('json');
    const outcome = await requestRestore(services, { table, mode: body.mode ?? 'replace', ...(body.backup ? { backup: body.backup } : {}) });
    if (outcome.done) return c.json(outcome.value, 200);
    return c.json({ jobId: outcome.jobId, status: outcome.status }, 202);
  });
}
