import { readFileSync } from 'node:fs';
import type { OpenAPIHono } from '@hono/zod-openapi';

// Read once at start: the dashboard is two small static files, no build step.
const dir = new URL('../public/', import.meta.url);
const html = readFileSync(new URL('index.html', dir), 'utf8');
const script = readFileSync(new URL('dashboard.js', dir), 'utf8');

export function registerDashboard(app: OpenAPIHono): void {
  app.get('/', (c) => c.html(html));
  app.get('/dashboard.js', (c) => c.body(script, 200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' }));
}
