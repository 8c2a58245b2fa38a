import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';

/**
 * The folders' arrows (README, Architecture): api and worker → features → pg, storage, jobs → core.
 * A feature reaches another feature (and anyone reaches storage/) only through its index.ts.
 * Checked on every relative import.
 */
const ROOT = path.resolve(import.meta.dirname, '..');
const FEATURES = ['ingest', 'loads', 'backup', 'warehouse', 'tables'];
const ALLOWED: Record<string, string[]> = {
  core: [],
  pg: ['core'],
  storage: ['core'],
  jobs: ['core'],
  ...Object.fromEntries(FEATURES.map((f) => [f, ['core', 'pg', 'storage', 'jobs', ...FEATURES]])),
  api: ['core', 'pg', 'storage', 'jobs', ...FEATURES],
  worker: ['core', 'storage', 'jobs', ...FEATURES],
};

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return name.endsWith('.ts') ? [p] : [];
  });
}

const folderOf = (file: string) => path.relative(ROOT, file).split(path.sep)[0]!;

test('imports point one way, and features meet only at each other’s index.ts', () => {
  const wrong: string[] = [];
  for (const folder of Object.keys(ALLOWED)) {
    for (const file of sources(path.join(ROOT, folder))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = path.resolve(path.dirname(file), m[1]!);
        const to = folderOf(target);
        if (to === folder) continue;
        const where = `${path.relative(ROOT, file)} → ${path.relative(ROOT, target)}`;
        if (!ALLOWED[folder]!.includes(to)) wrong.push(`${where}: ${folder}/ may not import ${to}/`);
        else if ((FEATURES.includes(to) || to === 'storage') && path.basename(target) !== 'index.js') {
          wrong.push(`${where}: use ${to}/index.ts, not its internals`);
        }
      }
    }
  }
  expect(wrong).toEqual([]);
});
