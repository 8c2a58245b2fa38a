#!/usr/bin/env node
/**
 * `npm start` / `npm run api` / `npm run worker`: runs the compiled service (dist/main.js) in this
 * process, after rebuilding it if a source file changed since the last build (a checkout, an
 * edit). Arguments pass through to main.ts. During development `npm run dev` runs the source.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, canBuild, DIST, isStale } from './build.mjs';

if (isStale()) {
  if (canBuild()) {
    process.stderr.write('dist/ is older than the sources: building (npm run build)…\n');
    try {
      build();
    } catch (err) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
  } else if (existsSync(path.join(DIST, 'main.js'))) {
    process.stderr.write('warning: dist/ may be older than the sources, and TypeScript is not installed to rebuild it\n');
  } else {
    process.stderr.write('dist/ is missing and TypeScript is not installed: run `npm install` (with dev dependencies) to build it.\n');
    process.exit(1);
  }
}
process.setSourceMapsEnabled(true); // stack traces name the .ts lines
await import(pathToFileURL(path.join(DIST, 'main.js')).href);
