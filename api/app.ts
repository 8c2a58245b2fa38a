import { OpenAPIHono } from '@hono/zod-openapi';
import { requestId } from 'hono/request-id';
import type { Services } from '../jobs/index.js';
import { errorBody, handleError } from './errors.js';
import { accessLog, capJsonBodies, JSON_BODY_MAX_BYTES, KeyedRoutes, refuseCrossSite, requireApiKey } from './middleware.js';
import { unknownTable } from './params.js';
import { registerDashboard } from './routes/dashboard.js';
import { registerDocs } from './routes/docs.js';
import { registerBackups } from './routes/backups.js';
import { registerHealth } from './routes/health.js';
import { registerIngest } from './routes/ingest.js';
import { registerLanding } from './routes/landing.js';
import { registerLoads } from './routes/loads.js';
import { registerUploads } from './routes/uploads.js';
import { registerAnalytics } from './routes/analytics.js';
import { registerWarehouse } from './routes/warehouse.js';
import { registerTables } from './routes/tables.js';

/**
 * The HTTP API. Every route is declared with createRoute: zod checks its path, query and JSON
 * body, and /openapi.json comes from the same declarations. Routes are thin: parse, validate,
 * call a feature, shape the answer.
 */
export function createApp(services: Services): OpenAPIHono {
  const app = new OpenAPIHono({
    // Path, query and JSON body validation failures answer 400 in the one error shape, naming
    // the field; an unknown table in the path or query is a 404.
    defaultHook: (result, c) => {
      if (!result.success) {
        const missing = unknownTable(result.target, result.error.issues, c);
        if (missing) throw missing;
        const details = result.error.issues.map((i) => ({ field: i.path.join('.') || null, message: i.message }));
        const first = details[0];
        return c.json(
          errorBody('bad_request', first ? `${first.field ?? 'request'}: ${first.message}` : 'invalid request', details),
          400,
        );
      }
    },
  });

  app.use('*', requestId());
  app.use('*', accessLog(services.log));
  app.use('*', refuseCrossSite(services.config.TRUSTED_ORIGINS));
  // Filled once every route is registered (below): the GET routes declared with `security`.
  const keyed = new KeyedRoutes();
  app.use('*', requireApiKey(services.config.API_KEY, keyed));
  app.use('*', capJsonBodies(JSON_BODY_MAX_BYTES));

  registerDashboard(app);
  registerHealth(app, services);
  registerIngest(app, services);
  registerUploads(app, services, registerLoads(app, services));
  registerLanding(app, services);
  registerWarehouse(app, services);
  registerAnalytics(app, services);
  registerBackups(app, services);
  registerTables(app, services);

  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'HR hiring data store',
      version: '0.1.0',
      description:
        'Batch ingest and CSV loads into PostgreSQL, a DuckDB warehouse for analytics, and Avro backups.',
    },
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  keyed.addFrom(app);
  registerDocs(app);

  app.notFound((c) => c.json(errorBody('not_found', `no route for ${c.req.method} ${c.req.path}`), 404));
  app.onError((err, c) => handleError(err, c, services.log));
  return app;
}
