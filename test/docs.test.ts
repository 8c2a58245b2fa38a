import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { z } from 'zod';
import { createApp } from '../api/app.js';
import { main as hr } from '../cli/main.js';
import { loadConfig, settingsSchema } from '../core/config.js';
import { createLogger } from '../core/log.js';
import type { Services } from '../jobs/index.js';

/**
 * The README says what the code does: its settings table against the config schema (names,
 * defaults, ranges), its route overview against /openapi.json, and the commands it names against
 * package.json and `hr --help`. Fast and without servers: the app is only asked for its document.
 */
const ROOT = path.resolve(import.meta.dirname, '..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The lines of a `## Title` section, up to the next heading of the same or a higher level. */
function section(title: string): string {
  const lines = README.split('\n');
  const start = lines.findIndex((l) => l === `## ${title}`);
  expect(start, `README has a "## ${title}" section`).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, i) => i > start && /^#{1,2} /.test(l));
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

/** The body rows of the first Markdown table in `text`, as cells. */
function tableRows(text: string): string[][] {
  const rows = text.split('\n').filter((l) => l.startsWith('|'));
  return rows.slice(2).map((l) => l.slice(1, -1).split(' | ').map((c) => c.trim()));
}

const ticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

type Property = { default?: unknown; type?: string; minimum?: number; exclusiveMinimum?: number; maximum?: number };
const properties = (z.toJSONSchema(settingsSchema, { io: 'input', unrepresentable: 'any' }) as { properties: Record<string, Property> }).properties;

describe('README settings table', () => {
  // One row may name several settings (`A` / `B`, or `A` (or `B`)); its default and range then
  // hold one value each, separated by " / ", or one value for all of them.
  const documented = new Map<string, { fallback: string; range: string }>();
  for (const [names, fallback, range] of tableRows(section('Settings'))) {
    const keys = ticked(names!);
    const fallbacks = fallback!.split(' / ');
    const ranges = range!.split(' / ');
    keys.forEach((k, i) => documented.set(k, { fallback: fallbacks[i] ?? fallbacks[0]!, range: ranges[i] ?? ranges[0]! }));
  }

  test('lists every setting core/config.ts reads, and nothing else', () => {
    const read = Object.keys(properties);
    expect(read.filter((k) => !documented.has(k)), 'read by the code, missing from the README').toEqual([]);
    expect([...documented.keys()].filter((k) => !read.includes(k)), 'in the README, not read by the code').toEqual([]);
  });

  test('gives each setting its real default', () => {
    const resolved = loadConfig({}) as unknown as Record<string, unknown>;
    for (const [key, { fallback }] of documented) {
      const prop = properties[key];
      if (!prop) continue;
      // A default the schema gives, or one loadConfig works out (HOST); otherwise the cell says unset.
      const expected = prop.default ?? (typeof resolved[key] === 'string' ? resolved[key] : undefined);
      const literal = /^`([^`]*)`/.exec(fallback)?.[1];
      if (expected === undefined || expected === '') {
        expect(fallback, `${key}: the code has no default`).toMatch(/^(unset|none)\b/);
      } else {
        expect(literal, `${key}: default`).toBe(String(expected));
      }
    }
  });

  test('gives each numeric setting its real range', () => {
    for (const [key, prop] of Object.entries(properties)) {
      if (prop.type !== 'integer' && prop.type !== 'number') continue;
      const min = prop.minimum ?? (prop.exclusiveMinimum !== undefined ? prop.exclusiveMinimum + 1 : undefined);
      const max = prop.maximum !== undefined && prop.maximum < Number.MAX_SAFE_INTEGER ? prop.maximum : undefined;
      const range = max === undefined ? `≥ ${min}` : `${min}–${max}`;
      expect(documented.get(key)?.range, `${key}: range`).toBe(range);
    }
  });
});

describe('README route overview', () => {
  const app = createApp({ config: loadConfig({}), log: createLogger('silent') } as unknown as Services);
  type Operation = { parameters?: { name: string }[]; requestBody?: { content: Record<string, unknown> }; responses: Record<string, unknown> };
  type Doc = { paths: Record<string, Record<string, Operation>> };
  const openapi = async () => (await (await app.request('/openapi.json')).json()) as Doc;
  const routes = (doc: Doc) => Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
  const overview = tableRows(section('API at a glance')).flatMap(([cell]) => ticked(cell!));

  test('names every route of /openapi.json, and only routes the app serves', async () => {
    const declared = routes(await openapi());
    // Served but not in the document: the dashboard's page and the document and its reference page.
    const pages = ['GET /', 'GET /openapi.json', 'GET /docs'];
    expect(declared.filter((r) => !overview.includes(r))).toEqual([]);
    expect(overview.filter((r) => !declared.includes(r) && !pages.includes(r))).toEqual([]);
    for (const page of pages) expect((await app.request(page.split(' ')[1]!)).status, page).toBe(200);
  });

  test('every route that queues a job declares the 503 of an unreachable queue (Limits and safety)', async () => {
    const doc = await openapi();
    // The routes with ?wait, which start a job, and the restore, which always waits for one.
    const queueing = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => op.parameters?.some((q) => q.name === 'wait') || p.endsWith('/restore'))
        .map(([m]) => `${m.toUpperCase()} ${p}`),
    );
    expect(queueing.length).toBe(6);
    for (const route of queueing) {
      const [m, p] = route.split(' ') as [string, string];
      expect(Object.keys(doc.paths[p]![m.toLowerCase()]!.responses), route).toContain('503');
    }
  });

  test('every route that takes a JSON body declares the 413 of the 64 KiB cap (Limits and safety)', async () => {
    const doc = await openapi();
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [m, op] of Object.entries(ops)) {
        if (p.startsWith('/ingest/') || !op.requestBody?.content['application/json']) continue;
        expect(Object.keys(op.responses), `${m.toUpperCase()} ${p}`).toContain('413');
      }
    }
  });
});

describe('README commands', () => {
  afterEach(() => vi.restoreAllMocks());

  test('every `npm run X` is a script of package.json', () => {
    const scripts = Object.keys((JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
    const named = [...new Set([...README.matchAll(/npm run ([a-z][\w:-]*)/g)].map((m) => m[1]!))].filter((n) => !n.endsWith(':')); // `bench:*`: all of them
    expect(named.filter((n) => !scripts.includes(n))).toEqual([]);
  });

  test('every `npm run X -- --option` is an option the script reads', () => {
    const { scripts } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const uses = [...README.matchAll(/npm run ([a-z][\w:-]*) (?:\[)?-- ([^`#\n]*)/g)];
    expect(uses.length).toBeGreaterThan(5);
    for (const [, name, rest] of uses) {
      const file = /\b(bench\/[\w-]+\.ts)\b/.exec(scripts[name!] ?? '')?.[1];
      expect(file, `npm run ${name} runs a bench/ script`).toBeDefined();
      const source = readFileSync(path.join(ROOT, file!), 'utf8');
      for (const [, option] of rest!.matchAll(/--([a-z][a-z-]*)/g)) {
        expect(source.includes(`'${option}'`) || source.includes(`--${option}`), `npm run ${name} -- --${option}`).toBe(true);
      }
    }
  });

  /** What `hr ARGS` prints, run in this process. */
  async function hrOut(args: string[]): Promise<string> {
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((out += String(chunk)), true));
    try {
      expect(await hr(args, {}), `hr ${args.join(' ')}`).toBe(0);
    } finally {
      spy.mockRestore();
    }
    return out;
  }

  test('every `hr COMMAND --option` in the README is a command of `hr --help` with that option', async () => {
    const commands = [...(await hrOut(['--help'])).matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]!);
    expect(commands.length).toBeGreaterThan(5);
    // Command lines: in code blocks and in backticks, alone, after `npx` or after `&&`.
    const uses = [...README.matchAll(/(?:^|&& |`|npx )hr ([a-z][a-z-]*)([^`#\n&]*)/gm)].map((m) => ({ command: m[1]!, rest: m[2]! }));
    expect(uses.length).toBeGreaterThan(10);
    expect(uses.map((u) => u.command).filter((c) => !commands.includes(c))).toEqual([]);
    const usage = new Map<string, string>();
    for (const { command, rest } of uses) {
      if (!usage.has(command)) usage.set(command, await hrOut([command, '--help']));
      for (const [option] of rest.matchAll(/--[a-z][a-z-]*/g)) expect(usage.get(command), `hr ${command} ${option}`).toContain(`${option}`);
    }
  });
});
