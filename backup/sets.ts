import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { dataPath, type Config } from '../core/config.js';
import { NotFoundError } from '../core/errors.js';
import { isTableName, type TableName } from '../core/tables.js';

/**
 * Where backups live and what a finished one looks like. A backup set is a folder
 * `<backups>/<id>/` holding one `<table>.avro` per table and `manifest.json`. It is written as
 * `<backups>/.<id>.partial/` (files as `*.part`) and renamed when everything is on disk, so a set
 * that is listed is always complete; a crash leaves only a dot-folder nobody lists.
 */

export const MANIFEST_FORMAT = 1;

export interface ManifestTable {
  table: TableName;
  file: string;
  rows: number;
  bytes: number;
  sha256: string;
  codec: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  id: string;
  /** When the snapshot every file was read from was taken (UTC). */
  snapshotAt: string;
  /** When the last file was complete. */
  finishedAt: string;
  /** The highest migration applied when the snapshot was taken. */
  schemaVersion: number;
  reason: string;
  tables: ManifestTable[];
}

/** Where backups live: DATA_DIR, for the paths answers show, and its backups folder. */
export type BackupPlaces = Pick<Config, 'DATA_DIR' | 'dirs'>;

/** One file of a set, as the API lists it. */
export interface BackupEntry {
  id: string;
  table: TableName;
  /** Relative to DATA_DIR: `backups/<id>/<table>.avro`. */
  file: string;
  rows: number;
  bytes: number;
  sha256: string;
  createdAt: string;
}

const ID = /^\d{8}T\d{9}Z-[0-9a-f]{6}$/;

/** Sortable by time: `20211107T024842123Z-1a2b3c`. */
export function newBackupId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`;
}

export function isBackupId(id: string): boolean {
  return ID.test(id);
}

export const setDir = (root: string, id: string) => path.join(root, id);
export const partialDir = (root: string, id: string) => path.join(root, `.${id}.partial`);
export const fileName = (table: TableName) => `${table}.avro`;

export async function readManifest(root: string, id: string): Promise<Manifest> {
  if (!isBackupId(id)) throw new NotFoundError(`unknown backup "${id}"`, { backup: id });
  let text: string;
  try {
    text = await readFile(path.join(setDir(root, id), 'manifest.json'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`unknown backup "${id}"`, { backup: id });
    }
    throw err;
  }
  return JSON.parse(text) as Manifest;
}

/** Ids of the finished sets, newest first. */
export async function listIds(root: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names.filter(isBackupId).sort().reverse();
}

export function entriesOf(places: BackupPlaces, m: Manifest): BackupEntry[] {
  return m.tables.map((t) => ({
    id: m.id,
    table: t.table,
    file: dataPath(places.DATA_DIR, path.join(setDir(places.dirs.backups, m.id), t.file)),
    rows: t.rows,
    bytes: t.bytes,
    sha256: t.sha256,
    createdAt: m.snapshotAt,
  }));
}

/** Every file of every finished set, newest first; only those of `table` when given. */
export async function listBackups(places: BackupPlaces, table?: TableName): Promise<BackupEntry[]> {
  const root = places.dirs.backups;
  const out: BackupEntry[] = [];
  for (const id of await listIds(root)) {
    const m = await readManifest(root, id).catch(() => undefined);
    if (!m) continue; // removed meanwhile
    for (const e of entriesOf(places, m)) if (table === undefined || e.table === table) out.push(e);
  }
  return out;
}

/** The set to restore `table` from: the one named, or the newest that holds the table. */
export async function findBackup(root: string, table: TableName, id?: string): Promise<{ manifest: Manifest; entry: ManifestTable }> {
  const ids = id === undefined ? await listIds(root) : [id];
  for (const candidate of ids) {
    const manifest = await readManifest(root, candidate);
    const entry = manifest.tables.find((t) => t.table === table && isTableName(t.table));
    if (entry) return { manifest, entry };
    if (id !== undefined) {
      throw new NotFoundError(`backup "${id}" holds no ${table} file`, { backup: id, table });
    }
  }
  throw new NotFoundError(`there is no backup of ${table}`, { table });
}

/** Writes a small file durably under a temporary name, then renames it into place. */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const tmp = `${file}.part`;
  await writeFile(tmp, data);
  await fsync(tmp);
  await rename(tmp, file);
}

export async function fsync(file: string): Promise<void> {
  const fh = await open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Deletes the oldest sets beyond `keep` (0 keeps all), and partial sets older than a day. */
export async function prune(root: string, keep: number, now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  if (keep > 0) {
    for (const id of (await listIds(root)).slice(keep)) {
      await rm(setDir(root, id), { recursive: true, force: true });
      removed.push(id);
    }
  }
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (!name.endsWith('.partial')) continue;
    const dir = path.join(root, name);
    const info = await stat(dir).catch(() => undefined);
    // A day: a partial set that old belongs to a crashed run, not to one still writing.
    if (info && now - info.mtimeMs > 24 * 3600_000) await rm(dir, { recursive: true, force: true });
  }
  return removed;
}
