import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { OpenAPIHono } from '@hono/zod-openapi';

/**
 * GET /docs: the API reference, drawn by Swagger UI from GET /openapi.json. Its script and styles
 * come from the swagger-ui-dist package through this service, so the page needs nothing from
 * outside the machine. Asset URLs carry the package version, hence the year-long cache.
 */
const require = createRequire(import.meta.url);
const pkgJson = require.resolve('swagger-ui-dist/package.json');
const pkgDir = path.dirname(pkgJson);
const { version } = require(pkgJson) as { version: string };
const TYPES: Record<string, string> = {
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui.css': 'text/css; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

export function registerDocs(app: OpenAPIHono): void {
  const assets = `/docs/assets/${version}`;
  const page = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>HR hiring data store API</title>
  <link rel="stylesheet" href="${assets}/swagger-ui.css">
  <link rel="icon" type="image/png" href="${assets}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="${assets}/swagger-ui-bundle.js"></script>
  <script>
    // validatorUrl: null, or Swagger UI asks validator.swagger.io for a badge.
    window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true, validatorUrl: null });
  </script>
</body>
</html>
`;
  // Read on first use: most processes never serve the docs, and the bundle is 1.7 MB.
  const cache = new Map<string, Promise<Buffer>>();

  app.get('/docs', (c) => c.html(page));
  app.get('/docs/assets/:version/:file', async (c) => {
    const file = c.req.param('file');
    const type = TYPES[file];
    if (c.req.param('version') !== version || type === undefined) return c.notFound();
    let body = cache.get(file);
    if (!body) cache.set(file, (body = readFile(path.join(pkgDir, file))));
    return c.body(new Uint8Array(await body), 200, { 'content-type': type, 'cache-control': 'public, max-age=31536000, immutable' });
  });
}
