import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFile, lstat, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { layoutOf, type WarehouseLayout } from '../warehouse/layout.js';
import type { PublishOptions, PublishStep } from '../warehouse/publish.js';
import { queryRows } from '../warehouse/duck.js';
import { WarehouseReader } from '../warehouse/reader.js';
import { refreshWarehouse, type RefreshResult } from '../warehouse/refresh.js';
import { readVersions } from '../warehouse/versions.js';
import { aggMatches, duckHires, pgHires, seed } from './support/warehouse.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * The published file and the one before it, used in turn (warehouse/versions.ts): what readers in
 * other processes see at every step of a refresh, and what a crash at every step leaves.
 */
let s: TestServices;
let layout: WarehouseLayout;
let probe: Probe;
let nextId = 30_000;

interface Answer {
  version?: number;
  facts?: number;
  aggregated?: number;
  error?: string;
}

/** Another process reading the warehouse on command (test/support/duck-probe.mjs). */
class Probe {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly answers: ((a: Answer) => void)[] = [];

  constructor(file: string) {
    const script = fileURLToPath(new URL('./support/duck-probe.mjs', import.meta.url));
    this.child = spawn(process.execPath, [script, file]);
    createInterface({ input: this.child.stdout }).on('line', (l) => this.answers.shift()?.(JSON.parse(l) as Answer));
  }

  ask(command: 'open' | 'hold' | 'held' | 'drop'): Promise<Answer> {
    return new Promise((resolve) => {
      this.answers.push(resolve);
      this.child.stdin.write(`${command}\n`);
    });
  }

  close(): void {
    this.child.stdin.end();
  }
}

beforeAll(async () => {
  s = await createTestServices();
  layout = layoutOf(s.config.dirs.warehouse);
  await seed(s.pool, 100);
  await refresh();
  // A second file beside the first: from here on refreshes alternate between the two.
  await addHire();
  await refresh();
  probe = new Probe(layout.duckdb);
});
afterAll(async () => {
  probe.close();
  await s.cleanup();
});

/** Fact rows of each version published, as PostgreSQL had them. */
const rowsAt = new Map<number, number>();

async function pgCount(): Promise<number> {
  const { rows } = await s.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM hired_employees');
  return rows[0]!.n;
}

async function addHire(): Promise<void> {
  await s.pool.query(`INSERT INTO hired_employees VALUES ($1, 'Versions Test', '2021-05-05T00:00:00Z', 1, 1)`, [nextId++]);
}

async function refresh(opts: PublishOptions = {}): Promise<RefreshResult> {
  const r = await refreshWarehouse(s, opts);
  rowsAt.set(r.version, await pgCount());
  return r;
}

/** A whole version: its facts and its aggregate agree with each other and with PostgreSQL then. */
function expectWhole(a: Answer, version: number): void {
  expect(a).toEqual({ version, facts: rowsAt.get(version), aggregated: rowsAt.get(version) });
}

async function published(): Promise<number> {
  const a = await probe.ask('open');
  expect(a.error).toBeUndefined();
  return a.version!;
}

async function expectInStep(): Promise<void> {
  const reader = new WarehouseReader(layout.duckdb);
  try {
    expect(await duckHires(reader)).toEqual(await pgHires(s.pool));
    const agg = await aggMatches(s.pool, reader);
    expect(agg.duck).toEqual(agg.pg);
  } finally {
    reader.close();
  }
}

const versionFiles = async () => (await readdir(layout.versions)).filter((n) => n.endsWith('.duckdb'));

const IN_PLACE: PublishStep[] = ['opened', 'applied', 'closed', 'described', 'published'];

test('a reader in another process that opens the file at any step of a refresh sees a whole version, the new one once the link moves', async () => {
  const before = await published();
  await addHire();
  const seen: [PublishStep, Answer][] = [];
  const r = await refresh({ onStep: async (step) => void seen.push([step, await probe.ask('open')]) });
  expect(r).toMatchObject({ build: 'incremental', via: 'in-place' });
  expect(seen.map(([step]) => step)).toEqual(IN_PLACE);
  for (const [step, answer] of seen) expectWhole(answer, step === 'published' ? r.version : before);
  expect(await versionFiles()).toHaveLength(2);
});

test('a reader that keeps a version open is left alone: the refresh after copies the published file instead', async () => {
  const kept = await probe.ask('hold');
  await addHire();
  const first = await refresh();
  expect(first.via).toBe('in-place');
  // Now the file the probe holds is the older one, the one the next refresh would rewrite.
  await addHire();
  const second = await refresh();
  expect(second.via).toBe('copy');
  expectWhole(await probe.ask('held'), kept.version!);
  expectWhole(await probe.ask('open'), second.version);
  await probe.ask('drop');
  await addHire();
  expect((await refresh()).via).toBe('in-place');
  expect(await versionFiles()).toHaveLength(2);
  await expectInStep();
});

test('the API of this process lets go of the version before on its own, and answers from the new one on its next request', async () => {
  const app = createApp(s);
  const version = async () => (await app.request('/analytics/hires-by-quarter?year=2021')).headers.get('x-warehouse-version');
  const v0 = await version();
  // No request between these two refreshes: the second rewrites the file the API last read.
  for (let i = 0; i < 2; i++) {
    await addHire();
    expect((await refresh()).via).toBe('in-place');
  }
  expect(Number(await version())).toBeGreaterThan(Number(v0));
});

test('a reader left idle closes the version before once the link moves, so another process may then rewrite it', async () => {
  const reader = new WarehouseReader(layout.duckdb);
  try {
    await reader.use(async () => {});
    await addHire();
    await refresh();
    // Another process: the version this reader had is now the older file. Its lock goes within
    // a moment, without any further use of the reader.
    const older = (await readVersions(layout)).others[0]!.file;
    const deadline = Date.now() + 5_000;
    let opened = await openReadWriteElsewhere(older);
    while (!opened && Date.now() < deadline) opened = await openReadWriteElsewhere(older);
    expect(opened).toBe(true);
  } finally {
    reader.close();
  }
});

test('a query of this process still running on the version before keeps its file, whatever path each side uses: the refresh copies', async () => {
  // The refresh sees the warehouse through a symbolic link to the data folder, the reader through
  // the real path: the coordination inside one process goes by inode, not by name.
  const alias = `${s.config.DATA_DIR}-alias`;
  await symlink(s.config.DATA_DIR, alias);
  const aliased = { ...s, config: { ...s.config, dirs: { ...s.config.dirs, warehouse: path.join(alias, 'warehouse') } } };
  const reader = new WarehouseReader(layout.duckdb);
  try {
    const seen = await reader.use(async (conn) => {
      const count = async () => (await queryRows<{ n: number }>(conn, 'SELECT count(*)::INTEGER AS n FROM fact_hires'))[0]!.n;
      const before = await count();
      await addHire();
      expect((await refreshWarehouse(aliased)).via).toBe('in-place');
      await addHire();
      expect((await refreshWarehouse(aliased)).via).toBe('copy'); // the file this query reads is the older one now
      return [before, await count()];
    });
    expect(seen[1]).toBe(seen[0]);
    await addHire();
    expect((await refresh()).via).toBe('in-place');
    await expectInStep();
  } finally {
    reader.close();
    await rm(alias, { force: true });
  }
});

/** Whether another process can open `file` read-write (DuckDB refuses while a reader holds it). */
async function openReadWriteElsewhere(file: string): Promise<boolean> {
  const script = `import('@duckdb/node-api').then(async ({ DuckDBInstance }) => {
    try { (await DuckDBInstance.create(process.argv[1])).closeSync(); process.exit(0); } catch { process.exit(3); } })`;
  const child = spawn(process.execPath, ['-e', script, file], { stdio: 'ignore' });
  return (await new Promise<number | null>((r) => child.on('exit', r))) === 0;
}

describe('a crash at any step leaves a whole published version, and the next refresh recovers', () => {
  afterEach(async () => {
    await probe.ask('drop');
  });

  const ways: [string, PublishStep[]][] = [
    ['in-place', IN_PLACE],
    ['copy', ['copied', 'opened', 'applied', 'closed', 'placed', 'described', 'published']],
    ['full', ['opened', 'applied', 'closed', 'placed', 'described', 'published']],
  ];
  for (const [way, steps] of ways) {
    test.each(steps)(`${way}: thrown after %s`, async (step) => {
      if (way === 'copy') {
        // A reader holding the version that is about to become the older file forces a copy.
        await probe.ask('hold');
        await addHire();
        await refresh();
      }
      const before = await published();
      await addHire();
      const rows = await pgCount();
      await expect(
        refreshWarehouse(s, { full: way === 'full', onStep: (at) => { if (at === step) throw new Error('crash'); } }),
      ).rejects.toThrow(`publish interrupted after step ${step}`);
      await expectPublishedAfterCrash(step, before, rows);
      await probe.ask('drop');
      await recovers();
    });
  }

  test.each(IN_PLACE)('in-place: process killed after %s', async (step) => {
    const before = await published();
    await addHire();
    const rows = await pgCount();
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/crash-refresh.ts', step], {
      env: { ...process.env, DATABASE_URL: s.config.DATABASE_URL, REDIS_URL: s.config.REDIS_URL, DATA_DIR: s.config.DATA_DIR, LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((r) => child.once('exit', r));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('READY') && resolve());
      child.once('exit', (code) => reject(new Error(`crash-refresh exited early with ${code}`)));
    });
    child.kill('SIGKILL');
    await exited;
    if (step === 'applied') {
      // Committed: the commit checkpointed straight into the file (no WAL written), and the
      // link still names the version before it.
      expect((await readdir(layout.versions)).some((n) => n.endsWith('.wal'))).toBe(false);
    }
    await expectPublishedAfterCrash(step, before, rows);
    await recovers();
  });
});

async function expectPublishedAfterCrash(step: PublishStep, before: number, rows: number): Promise<void> {
  const a = await probe.ask('open');
  if (step === 'published') {
    // The link had moved: the new version is whole.
    expect(a.version).toBeGreaterThan(before);
    rowsAt.set(a.version!, rows);
    expectWhole(a, a.version!);
  } else {
    expectWhole(a, before);
  }
}

async function recovers(): Promise<void> {
  await refresh();
  await expectInStep();
  await addHire();
  const r = await refresh();
  expect(r.build).toBe('incremental');
  await expectInStep();
  expectWhole(await probe.ask('open'), r.version);
  expect(await versionFiles()).toHaveLength(2);
}

test('a plain hr.duckdb left by an older release is replaced by the link on the next refresh', async () => {
  const current = (await readVersions(layout)).published!.file;
  await rm(layout.duckdb);
  await copyFile(current, layout.duckdb);
  await writeFile(`${layout.duckdb}.json`, '{"schemaVersion":1,"lastBatch":1}');
  expectWhole(await probe.ask('open'), await published());
  await addHire();
  const r = await refresh();
  expect(r.build).toBe('full');
  expect((await lstat(layout.duckdb)).isSymbolicLink()).toBe(true);
  await expect(lstat(`${layout.duckdb}.json`)).rejects.toThrow();
  expectWhole(await probe.ask('open'), r.version);
  await recovers();
});
