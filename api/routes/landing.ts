import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { TABLE_NAMES } from '../../core/tables.js';
import type { Services } from '../../jobs/index.js';
import { landingStatus, requestScan, toView } from '../../loads/index.js';
import { WaitParam } from '../params.js';
import { error, json, keyed, writeErrors, queueErrors } from '../schemas.js';
import { LoadSchema } from './loads.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed'] as const;

const FinishedSchema = z.object({
  name: z.string().openapi({ example: 'hired_employees_2021.csv' }),
  file: z.string().openapi({ description: 'Relative to DATA_DIR', example: 'landing/done/2026-12-02/hired_employees_2021.csv' }),
  date: z.string().openapi({ description: 'The UTC day folder', example: '2026-12-02' }),
  loadId: z.string().uuid().nullable().openapi({ description: 'The load that read it; null for a name that names no table' }),
  status: z.enum(STATUSES).nullable(),
  companion: z
    .string()
    .nullable()
    .openapi({ description: 'done/: the `<name>.rejects.ndjson` (none when no rejects); failed/: the `<name>.error.txt`. Relative to DATA_DIR' }),
});

const LandingSchema = z
  .object({
    inbox: z.array(
      z.object({
        name: z.string(),
        table: z.enum(TABLE_NAMES).nullable().openapi({ description: 'The table its name names; null: it will be moved to failed/' }),
        bytes: z.number().int(),
        modifiedAt: z.string(),
        ignored: z.boolean().openapi({ description: 'A dot-file or *.tmp: left alone until renamed' }),
      }),
    ),
    processing: z.array(
      z.object({
        name: z.string().openapi({ description: 'As it was dropped' }),
        loadId: z.string().uuid().nullable(),
        status: z.enum(STATUSES).nullable(),
      }),
    ),
    done: z.array(FinishedSchema).openapi({ description: 'The newest 50, newest day first' }),
    failed: z.array(FinishedSchema).openapi({ description: 'The newest 50, newest day first' }),
  })
  .openapi('Landing');

const ScanSchema = z
  .object({
    jobId: z.string(),
    status: z.enum(['queued', 'running', 'completed']),
    started: z.array(z.string().uuid()).optional().openapi({ description: 'The loads this scan started (once it ran)' }),
    settling: z
      .array(z.string())
      .optional()
      .openapi({ description: 'Files seen but not yet unchanged for LANDING_SETTLE_MS; a follow-up scan takes them by itself' }),
    refused: z.array(z.string()).optional().openapi({ description: 'Files whose name names no table, moved to landing/failed/' }),
    moved: z.array(z.string()).optional().openapi({ description: 'Files of ended loads moved from processing/ to done/ or failed/' }),
    loads: z.array(LoadSchema).optional().openapi({ description: 'With wait=true: the started loads, finished (200) or as they are after LOAD_WAIT_MS (202)' }),
  })
  .openapi('LandingScan');

const statusRoute = createRoute({
  method: 'get',
  path: '/landing',
  tags: ['loads'],
  summary: 'The landing inbox: files waiting, being loaded, and the latest done and failed',
  responses: { 200: json(LandingSchema, 'The landing folders') },
});

const scanRoute = createRoute({
  method: 'post',
  path: '/landing/scan',
  tags: ['loads'],
  summary: 'Scan the landing inbox now',
  description:
    'Queues a scan of DATA_DIR/landing/inbox/ (as LANDING_SCAN_CRON does): complete files (unchanged for LANDING_SETTLE_MS between two looks) are taken and loaded; a name that names no table is moved to landing/failed/. 202 at once; with `?wait=true`, 200 once the scan and the loads it started have finished, or 202 with their state after LOAD_WAIT_MS. A file seen for the first time is `settling`: a follow-up scan takes it LANDING_SETTLE_MS later.',
  ...keyed,
  request: { query: z.object({ wait: WaitParam }) },
  responses: {
    200: json(ScanSchema, 'Scanned, and its loads finished (wait=true)'),
    202: json(ScanSchema, 'Queued, or still going after LOAD_WAIT_MS'),
    400: error('Bad wait'),
    500: error('The scan failed'),
    ...queueErrors,
    ...writeErrors,
  },
});

export function registerLanding(app: OpenAPIHono, services: Services): void {
  app.openapi(statusRoute, async (c) => c.json(await landingStatus(services), 200));

  app.openapi(scanRoute, async (c) => {
    const out = await requestScan(services, c.req.valid('query').wait);
    if (!out.done) return c.json({ jobId: out.jobId, status: out.status }, 202);
    const answer = { jobId: out.jobId, status: 'completed' as const, ...out.result, loads: out.loads.map((l) => toView(l, services.config.DATA_DIR)) };
    return out.finished ? c.json(answer, 200) : c.json(answer, 202);
  });
}
