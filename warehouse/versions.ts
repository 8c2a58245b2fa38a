import { lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { WarehouseLayout } from './layout.js';

/**
 * The DuckDB files behind `hr.duckdb`. `hr.duckdb` is a symbolic link to one file of versions/,
 * the published version; the file published before it stays beside it. A refresh catches that
 * older file up with the deltas it missed, checkpoints and closes it, and swaps the link (an atomic
 * rename): the two files are used in turn, and the published one is never opened read-write.
 *
 * Each file has a sidecar (`hr-N.duckdb.json`) saying what it holds, written after the file is
 * closed and before it is published. It is a hint for planning; a file opened read-write is
 * trusted for what its warehouse_info row says.
 */
export interface VersionInfo {
  schemaVersion: number;
  lastBatch: number;
  refreshedAt: string;
}

export interface VersionFile {
  file: string;
  gen: number;
  /** From the sidecar; null when it is missing or unreadable. */
  info: VersionInfo | null;
}

export interface Versions {
  published: VersionFile | null;
  /** The other files, most up to date first. */
  others: VersionFile[];
}

const NAME = /^hr-(\d{10})\.duckdb$/;
const pad = (n: number) => String(n).padStart(10, '0');
const sidecar = (file: string) => `${file}.json`;

export async function readVersions(layout: WarehouseLayout): Promise<Versions> {
  const names = await readdir(layout.versions).catch(() => [] as string[]);
  const all: VersionFile[] = [];
  for (const name of names) {
    const m = NAME.exec(name);
    if (!m) continue;
    const file = path.join(layout.versions, name);
    all.push({ file, gen: Number(m[1]), info: await readInfo(file) });
  }
  const target = await publishedTarget(layout);
  const published = all.find((v) => v.file === target) ?? null;
  const others = all
    .filter((v) => v !== published)
    .sort((a, b) => (b.info?.lastBatch ?? -1) - (a.info?.lastBatch ?? -1) || b.gen - a.gen);
  return { published, others };
}

/** The file `hr.duckdb` links to, or null (no link yet, or a plain file of an older release). */
async function publishedTarget(layout: WarehouseLayout): Promise<string | null> {
  const s = await lstat(layout.duckdb).catch(() => null);
  if (!s?.isSymbolicLink()) return null;
  return path.resolve(layout.root, await readlink(layout.duckdb));
}

async function readInfo(file: string): Promise<VersionInfo | null> {
  try {
    const info = JSON.parse(await readFile(sidecar(file), 'utf8')) as VersionInfo;
    return typeof info.lastBatch === 'number' && typeof info.schemaVersion === 'number' ? info : null;
  } catch {
    return null;
  }
}

export async function writeInfo(file: string, info: VersionInfo): Promise<void> {
  await writeFile(`${sidecar(file)}.tmp`, JSON.stringify(info));
  await rename(`${sidecar(file)}.tmp`, sidecar(file));
}

/** A name no file of versions/ has. */
export function newVersionPath(layout: WarehouseLayout, v: Versions): string {
  const gens = [...(v.published ? [v.published] : []), ...v.others].map((f) => f.gen);
  return path.join(layout.versions, `hr-${pad(Math.max(0, ...gens) + 1)}.duckdb`);
}

/** Moves a closed, checkpointed DuckDB file built elsewhere (tmp/) into versions/. */
export async function placeVersion(layout: WarehouseLayout, built: string, file: string): Promise<void> {
  await mkdir(layout.versions, { recursive: true });
  await rename(built, file);
}

/** Points `hr.duckdb` at `file`, atomically: a new link renamed over the old one. */
export async function publishVersion(layout: WarehouseLayout, file: string): Promise<void> {
  const link = path.join(layout.root, `.hr.duckdb.link-${process.pid}`);
  await rm(link, { force: true });
  await symlink(path.relative(layout.root, file), link);
  await rename(link, layout.duckdb);
  // The sidecar of an older release's plain hr.duckdb file.
  await rm(`${layout.duckdb}.json`, { force: true });
}

/**
 * Deletes every version file but `keep` (and their sidecars and WALs). A reader that
 * still has a deleted file open keeps reading it: the data goes when it closes.
 */
export async function removeVersionsExcept(layout: WarehouseLayout, keep: string[]): Promise<void> {
  const names = await readdir(layout.versions).catch(() => [] as string[]);
  // A kept file's WAL holds what a crash left committed but not checkpointed: opening the file
  // read-write replays it.
  const kept = new Set(keep.flatMap((f) => [f, sidecar(f), `${f}.wal`].map((p) => path.basename(p))));
  await Promise.all(
    names.filter((n) => !kept.has(n)).map((n) => rm(path.join(layout.versions, n), { recursive: true, force: true })),
  );
}
