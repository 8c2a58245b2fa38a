import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, test } from 'vitest';
import { createPool } from '../core/db.js';
import { databaseUrl, REDIS_URL, uniqueName } from './support/services.js';

/**
 * What `npm start` runs: scripts/start.mjs, which rebuilds dist/ if a source is newer and then
 * runs the compiled service. The other suites that spawn the server run main.ts through tsx, so
 * they always test the sources as they are, with no build step in between; this one checks that
 * the compiled output works too (migrations, dashboard and docs files found from dist/).
 */
const ROOT = path.resolve(import.meta.dirname, '..');

describe('npm start', () => {
  test('runs the compiled service: migrates from dist/, serves the dashboard and the docs, stops on SIGTERM', async () => {
    const dbName = uniqueName('hrtest');
    const dataDir = await mkdtemp(path.join(tmpdir(), 'hrstart-'));
    const child = spawn(process.execPath, ['scripts/start.mjs'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: databaseUrl(dbName),
        REDIS_URL,
        DATA_DIR: dataDir,
        QUEUE_PREFIX: uniqueName('hrq'),
        LOG_FORMAT: 'json',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const messages: string[] = [];
    try {
      const port = await new Promise<number>((resolve, reject) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          const entry = JSON.parse(line) as { msg: string; port?: number };
          messages.push(entry.msg);
          if (entry.msg.startsWith('listening on')) resolve(entry.port!);
        });
        child.on('exit', (code) => reject(new Error(`start.mjs exited with ${code}: ${stderr}`)));
      });
      const base = `http://127.0.0.1:${port}`;
      expect(messages.filter((m) => m === 'applied migration').length).toBeGreaterThanOrEqual(3);
      expect((await fetch(`${base}/health`)).status).toBe(200);
      const dashboard = await fetch(`${base}/`);
      expect(await dashboard.text()).toContain('src="/dashboard.js"');
      const docs = await (await fetch(`${base}/docs`)).text();
      const script = /<script src="(\/docs\/assets\/[^"]+\.js)"/.exec(docs)?.[1];
      expect(script).toBeDefined();
      const asset = await fetch(`${base}${script}`);
      expect(asset.status).toBe(200);
      expect(asset.headers.get('cache-control')).toMatch(/max-age=31536000/);
      expect((await asset.arrayBuffer()).byteLength).toBeGreaterThan(500_000);

      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
      expect(messages).toContain('stopped');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      const admin = createPool(databaseUrl('postgres'), 1);
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await admin.end();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 180_000); // the first run after an edit builds dist/ (tsc) before it starts
});
