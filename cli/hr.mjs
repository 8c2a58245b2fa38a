#!/usr/bin/env node
// The `hr` command: runs the compiled CLI (dist/, built by `npm install`), or cli/main.ts through
// the TypeScript loader when a source is newer than the build (a development checkout).
import { isStale } from '../scripts/build.mjs';

const tsx = isStale() ? await import('tsx/esm/api').catch(() => undefined) : undefined;
let main;
if (tsx) {
  tsx.register();
  ({ main } = await import('./main.ts'));
} else {
  ({ main } = await import('../dist/cli/main.js'));
}
process.exitCode = await main(process.argv.slice(2), process.env);
