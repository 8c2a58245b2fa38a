import { randomBytes } from 'node:crypto';
import { readdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../core/config.js';
import { NotFoundError } from '../core/errors.js';
import { isTableName, type TableName } from '../core/tables.js';
import { storageFor, StorageNotFoundError, type Storage } from '../storage/index.js';

/**
 * Where backups live and what a finished one looks like. Backups are objects of the storage
 * (storage/: the folder DATA_DIR, or a bucket with STORAGE_URL). A set is `backups/<id>/`
 * holding one `<table>.avro` per table and `manifest.json`. Its files are written as
 * `backups/.<id>.partial/<table>.avro.part`, take their final keys once every one is complete,
 * and the manifest is written last: a set is listed only when its manifest exists, so a listed
 * set is always complete; a crash leaves only `.partial` objects nobody lists (pruned after a day).
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

/** The storage backups live in: the process's one (storage/index.ts `storageFor`). */
export const backupStorage = (config: Config): Promise<Storage> => storageFor(config);

/** One file of a set, as the API lists it. */
export interface BackupEntry {
  id: string;
  table: TableName;
  /** Its key in the storage (relative to DATA_DIR, or to the bucket's prefix): `backups/<id>/<table>.avro`. */
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

/** Local backend: the folder of a set under DATA_DIR/backups (tests reach the files through it). */
export const setDir = (root: string, id: string) => path.join(root, id);
export const fileName = (table: TableName) => `${table}.avro`;

export const BACKUPS_PREFIX = 'backups/';
export const setKey = (id: string) => `${BACKUPS_PREFIX}${id}`;
export const fileKey = (id: string, file: string) => `${setKey(id)}/${file}`;
export const manifestKey = (id: string) => fileKey(id, 'manifest.json');
/** Where a set's file is written before the set is complete. */
export const partialKey = (id: string, file: string) => `${BACKUPS_PREFIX}.${id}.partial/${file}.part`;

async function readAll(store: Storage, key: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await store.get(key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function readManifest(store: Storage, id: string): Promise<Manifest> {
  if (!isBackupId(id)) throw new NotFoundError(`unknown backup "${id}"`, { backup: id });
  let text: string;
  try {
    text = await readAll(store, manifestKey(id));
  } catch (err) {
    if (err instanceof StorageNotFoundError) throw new NotFoundError(`unknown backup "${id}"`, { backup: id });
    throw err;
  }
  return JSON.parse(text) as Manifest;
}

const MANIFEST_KEY = /^backups\/(\d{8}T\d{9}Z-[0-9a-f]{6})\/manifest\.json$/;

/** Ids of the finished sets (those with a manifest), newest first. */
export async function listIds(store: Storage): Promise<string[]> {
  const ids: string[] = [];
  for await (const o of store.list(BACKUPS_PREFIX)) {
    const m = MANIFEST_KEY.exec(o.key);
    if (m) ids.push(m[1]!);
  }
  return ids.sort().reverse();
}

export function entriesOf(m: Manifest): BackupEntry[] {
  return m.tables.map((t) => ({
    id: m.id,
    table: t.table,
    file: fileKey(m.id, t.file),
    rows: t.rows,
    bytes: t.bytes,
    sha256: t.sha256,
    createdAt: m.snapshotAt,
  }));
}

/** Every file of every finished set, newest first; only those of `table` when given. */
export async function listBackups(config: Config, table?: TableName): Promise<BackupEntry[]> {
  const store = await backupStorage(config);
  const out: BackupEntry[] = [];
  for (const id of await listIds(store)) {
    const m = await readManifest(store, id).catch(() => undefined);
    if (!m) continue; // removed meanwhile
    for (const e of entriesOf(m)) if (table === undefined || e.table === table) out.push(e);
  }
  return out;
}

/** The set to restore `table` from: the one named, or the newest that holds the table. */
export async function findBackup(store: Storage, table: TableName, id?: string): Promise<{ manifest: Manifest; entry: ManifestTable }> {
  const ids = id === undefined ? await listIds(store) : [id];
  for (const candidate of ids) {
    const manifest = await readManifest(store, candidate);
    const entry = manifest.tables.find((t) => t.table === table && isTableName(t.table));
    if (entry) return { manifest, entry };
    if (id !== undefined) {
      throw new NotFoundError(`backup "${id}" holds no ${table} file`, { backup: id, table });
    }
  }
  throw new NotFoundError(`there is no backup of ${table}`, { table });
}

/** Deletes every object under `prefix` (a set or a partial set); the manifest first, so the set stops being listed before its files go. */
async function removeSet(store: Storage, prefix: string): Promise<void> {
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key);
  keys.sort((a, b) => Number(b.endsWith('/manifest.json')) - Number(a.endsWith('/manifest.json')));
  for (const k of keys) await store.delete(k);
}

/**
 * Deletes the oldest sets beyond `keep` (0 keeps all), and partial sets whose newest object is
 * older than a day. `localRoot` (the local backend's DATA_DIR/backups): the emptied folders go too.
 */
export async function prune(store: Storage, keep: number, now = Date.now(), localRoot?: string): Promise<string[]> {
  const removed: string[] = [];
  if (keep > 0) {
    for (const id of (await listIds(store)).slice(keep)) {
      await removeSet(store, `${setKey(id)}/`);
      removed.push(id);
    }
  }
  const partial = new Map<string, number>();
  for await (const o of store.list(BACKUPS_PREFIX)) {
    const name = o.key.slice(BACKUPS_PREFIX.length).split('/')[0]!;
    if (!name.startsWith('.') || !name.endsWith('.partial')) continue;
    partial.set(name, Math.max(partial.get(name) ?? 0, o.lastModified.getTime()));
  }
  // A day: a partial set that old belongs to a crashed run, not to one still writing.
  for (const [name, newest] of partial) if (now - newest > 24 * 3600_000) await removeSet(store, `${BACKUPS_PREFIX}${name}/`);
  if (store.kind === 'local' && localRoot) await removeEmptyFolders(localRoot);
  return removed;
}

/** The local backend leaves a deleted set's folder behind; an empty one goes (best effort). */
async function removeEmptyFolders(root: string): Promise<void> {
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (!isBackupId(name) && !name.endsWith('.partial')) continue;
    await rmdir(path.join(root, name)).catch(() => {}); // not empty, or gone: left alone
  }
}
