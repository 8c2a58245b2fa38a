import { constants } from 'node:fs';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Logger } from '../core/log.js';
import { TABLE_NAMES } from '../core/tables.js';
import { withDuckFile } from './duck.js';
import { claimForWrite, fileId, releaseWrite } from './holds.js';
import { lastBatch, type Ledger } from './ledger.js';
import type { WarehouseLayout } from './layout.js';
import { releaseIdleReaders } from './reader.js';
import { catchUp, describeFile, readFileInfo } from './apply.js';
import { applyComments, createStarSchema, SCHEMA_VERSION } from './schema.js';
import { currentRowsSql } from './sources.js';
import {
  newVersionPath,
  placeVersion,
  publishVersion,
  readVersions,
  removeVersionsExcept,
  writeInfo,
  type VersionFile,
  type VersionInfo,
  type Versions,
} from './versions.js';

export interface PublishResult {
  build: 'full' | 'incremental' | 'none';
  /**
   * How an incremental build was made: `in-place`, the older version file caught up with the
   * deltas it missed; `copy`, a copy of the published file (the older one was open in a reader,
   * or too old to catch up from the Parquet files).
   */
  via: 'in-place' | 'copy' | null;
  version: number;
  refreshedAt: string | null;
  ms: number;
}

/** The points between the steps of a publish, in order (a build uses the ones that apply). */
export type PublishStep = 'copied' | 'opened' | 'applied' | 'closed' | 'placed' | 'described' | 'published';

export interface PublishOptions {
  full?: boolean;
  /**
   * Called at each step (tests). A throw there ends the publish the way a crash would: at once,
   * with no clean-up and no fallback to another way of building.
   */
  onStep?: (step: PublishStep) => void | Promise<void>;
}

class Interrupted extends Error {
  constructor(readonly step: PublishStep, cause: unknown) {
    super(`publish interrupted after step ${step}`, { cause });
  }
}

interface Build {
  target: number;
  refreshedAt: string;
  started: number;
  step: (s: PublishStep) => Promise<void>;
}

/**
 * Brings the published DuckDB file up to the Parquet files in the ledger. Three ways, cheapest
 * first (see versions.ts for the files):
 *  1. in place: the older version file, which no reader uses any more, is opened read-write,
 *     caught up with the deltas after the batch it holds (apply.ts: only small tables are
 *     written), checkpointed and closed; then the `hr.duckdb` link is swapped to it.
 *  2. copy: when that file is open in a reader (a notebook, a process that has not looked again
 *     since) or cannot be caught up (a compaction rewrote the Parquet base after it), the
 *     published file is copied and the new deltas applied to the copy.
 *  3. full: from the Parquet files alone, with no published file, after a TRUNCATE, a schema
 *     change, or new deltas larger than a quarter of a table (and over 1,000 rows).
 * The published file is never opened read-write; readers that have it open keep their version, and
 * a crash at any point leaves the link on a whole, closed file.
 */
export async function publish(layout: WarehouseLayout, ledger: Ledger, log: Logger, opts: PublishOptions = {}): Promise<PublishResult> {
  const b: Build = {
    target: lastBatch(ledger),
    refreshedAt: new Date().toISOString(),
    started: performance.now(),
    step: async (s) => {
      try {
        await opts.onStep?.(s);
      } catch (err) {
        throw new Interrupted(s, err);
      }
    },
  };
  const versions = await readVersions(layout);
  const pub = versions.published;
  const catchesUp = (info: VersionInfo | null): info is VersionInfo =>
    info !== null && info.schemaVersion === SCHEMA_VERSION && info.lastBatch <= b.target && !needsFullBuild(ledger, info.lastBatch);

  if (!opts.full && pub && catchesUp(pub.info)) {
    if (pub.info.lastBatch === b.target) {
      return { build: 'none', via: null, version: b.target, refreshedAt: pub.info.refreshedAt, ms: 0 };
    }
    const older = versions.others.find((v) => catchesUp(v.info));
    if (older) {
      const done = await inPlace(layout, ledger, log, b, versions, older, catchesUp);
      if (done) return done;
    }
    try {
      return await viaCopy(layout, ledger, log, b, versions, pub);
    } catch (err) {
      if (err instanceof Interrupted) throw err;
      log.warn({ err }, 'incremental warehouse build failed; building in full');
    }
  }
  return fullBuild(layout, ledger, log, b, versions);
}

/** A base newer than `after` (a TRUNCATE, a re-export), or changes too big to apply one by one. */
function needsFullBuild(ledger: Ledger, after: number): boolean {
  return TABLE_NAMES.some((t) => {
    if ((ledger[t].base?.batch ?? 0) > after) return true;
    const changed = ledger[t].deltas.filter((d) => d.batch > after).reduce((n, d) => n + d.rows, 0);
    return changed > 1000 && changed > 0.25 * (ledger[t].base?.rows ?? 0);
  });
}

/** Way 1; null when the older file is in use or not what its sidecar said (the caller copies). */
async function inPlace(
  layout: WarehouseLayout,
  ledger: Ledger,
  log: Logger,
  b: Build,
  versions: Versions,
  older: VersionFile,
  catchesUp: (info: VersionInfo | null) => info is VersionInfo,
): Promise<PublishResult | null> {
  // Readers of this process close it if idle; other processes' readers hold a lock DuckDB checks.
  const id = await fileId(older.file);
  if (id === null) return null;
  releaseIdleReaders(id);
  if (!claimForWrite(id)) {
    log.info({ file: older.file }, 'older warehouse file is open in this process; copying the published one');
    return null;
  }
  try {
    const ok = await withDuckFile(older.file, async (conn) => {
      await b.step('opened');
      // The file itself says what it holds (its sidecar may predate a crash).
      const info = await readFileInfo(conn);
      if (!catchesUp(info)) return false;
      await catchUpFile(conn, layout, ledger, log, b, info.lastBatch);
      await b.step('applied');
      return true;
    });
    if (!ok) {
      log.warn({ file: older.file }, 'older warehouse file cannot be caught up; copying the published one');
      return null;
    }
    await b.step('closed');
  } catch (err) {
    if (err instanceof Interrupted) throw err;
    // Typically DuckDB's lock: a reader in another process still has the file open.
    const busy = /Could not set lock/.test((err as Error).message);
    if (busy) log.info({ file: older.file }, 'older warehouse file is open in another process; copying the published one');
    else log.warn({ err, file: older.file }, 'older warehouse file could not be caught up; copying the published one');
    return null;
  } finally {
    releaseWrite(id);
  }
  return finish(layout, log, b, versions, older.file, 'in-place');
}

/** Way 2: the published file copied to tmp/, the new deltas applied, moved into versions/. */
async function viaCopy(layout: WarehouseLayout, ledger: Ledger, log: Logger, b: Build, versions: Versions, pub: VersionFile): Promise<PublishResult> {
  const building = await scratchFile(layout, b.target);
  try {
    await copyFile(pub.file, building, constants.COPYFILE_FICLONE);
    await b.step('copied');
    await withDuckFile(building, async (conn) => {
      await b.step('opened');
      const info = await readFileInfo(conn);
      if (!info || info.lastBatch !== pub.info?.lastBatch) throw new Error('published file does not match its sidecar');
      await catchUpFile(conn, layout, ledger, log, b, info.lastBatch);
      await b.step('applied');
    });
    await b.step('closed');
    const file = newVersionPath(layout, versions);
    await placeVersion(layout, building, file);
    await b.step('placed');
    return await finish(layout, log, b, versions, file, 'copy');
  } catch (err) {
    if (!(err instanceof Interrupted)) await removeScratch(building);
    throw err;
  }
}

/** Way 3: a new file built from the Parquet files. */
async function fullBuild(layout: WarehouseLayout, ledger: Ledger, log: Logger, b: Build, versions: Versions): Promise<PublishResult> {
  const building = await scratchFile(layout, b.target);
  try {
    await withDuckFile(building, async (conn) => {
      await b.step('opened');
      await createStarSchema(conn, {
        departments: currentRowsSql(layout.parquet, 'departments', ledger.departments),
        jobs: currentRowsSql(layout.parquet, 'jobs', ledger.jobs),
        hired_employees: currentRowsSql(layout.parquet, 'hired_employees', ledger.hired_employees),
      });
      await describeFile(conn, { target: b.target, refreshedAt: b.refreshedAt, build: 'full', ms: elapsed(b) });
      await applyComments(conn);
      await b.step('applied');
    });
    await b.step('closed');
    const file = newVersionPath(layout, versions);
    await placeVersion(layout, building, file);
    await b.step('placed');
    return await finish(layout, log, b, versions, file, null);
  } catch (err) {
    if (!(err instanceof Interrupted)) await removeScratch(building);
    throw err;
  }
}

/** The deltas after `after` applied to an open file, and its warehouse_info row, in one transaction. */
async function catchUpFile(conn: DuckDBConnection, layout: WarehouseLayout, ledger: Ledger, log: Logger, b: Build, after: number): Promise<void> {
  const folded = await catchUp(conn, layout.parquet, ledger, after, (c) =>
    describeFile(c, { target: b.target, refreshedAt: b.refreshedAt, build: 'incremental', ms: elapsed(b) }),
  );
  if (folded) log.info({ version: b.target }, 'warehouse changes folded into fact_hires_base');
}

const elapsed = (b: Build) => Math.round(performance.now() - b.started);

/** Sidecar, link swap, and removal of every version file but the new one and the one before. */
async function finish(
  layout: WarehouseLayout,
  log: Logger,
  b: Build,
  versions: Versions,
  file: string,
  via: PublishResult['via'],
): Promise<PublishResult> {
  await writeInfo(file, { schemaVersion: SCHEMA_VERSION, lastBatch: b.target, refreshedAt: b.refreshedAt });
  await b.step('described');
  await publishVersion(layout, file);
  await b.step('published');
  const previous = versions.published?.file;
  await removeVersionsExcept(layout, previous && previous !== file ? [file, previous] : [file]);
  const ms = elapsed(b);
  const build = via === null ? 'full' : 'incremental';
  log.info({ build, via, version: b.target, file: path.basename(file), ms }, 'warehouse published');
  return { build, via, version: b.target, refreshedAt: b.refreshedAt, ms };
}

async function scratchFile(layout: WarehouseLayout, target: number): Promise<string> {
  await mkdir(layout.tmp, { recursive: true });
  return path.join(layout.tmp, `hr.duckdb.build-${target}-${process.pid}-${Date.now()}`);
}

async function removeScratch(file: string): Promise<void> {
  await rm(file, { force: true });
  await rm(`${file}.wal`, { force: true });
}
