import path from 'node:path';
import type { Config } from '../core/config.js';
import { TABLE_NAMES, type TableName } from '../core/tables.js';
import type { Services } from '../jobs/index.js';
import { createUrlSigner, LocalStorage, signingSecret, StorageNotFoundError, type Storage } from '../storage/index.js';
import { startLoads } from './start.js';
import type { LoadRow } from './store.js';

/**
 * The landing inbox's folders and names, and the two places it meets the load machinery.
 *
 *   landing/inbox/<name>                   dropped by a user (or a program)
 *   landing/processing/<loadId>.<name>     taken by one worker: the rename decided it; its load runs
 *   landing/done/<UTC date>/<name>         the load succeeded; <name>.rejects.ndjson beside it
 *   landing/failed/<UTC date>/<name>       no table by that name, or the load failed; <name>.error.txt
 *
 * Keys are storage keys (relative to DATA_DIR, `/` between segments).
 */
export const INBOX = 'landing/inbox/';
export const PROCESSING = 'landing/processing/';
export const DONE = 'landing/done/';
export const FAILED = 'landing/failed/';

const TABLE_PREFIX = new RegExp(`^(${[...TABLE_NAMES].sort((a, b) => b.length - a.length).join('|')}).*\\.csv$`, 'i');
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const CLAIMED = new RegExp(`^(${UUID})\\.(.+)$`);

/** The table a dropped file's name names: departments*.csv, jobs*.csv, hired_employees*.csv, any case. */
export function tableOfName(name: string): TableName | undefined {
  const m = TABLE_PREFIX.exec(name);
  return m ? (m[1]!.toLowerCase() as TableName) : undefined;
}

/** Files still being written by the usual convention: dot-files and `*.tmp`, renamed when complete. */
export function isIgnored(name: string): boolean {
  return name.startsWith('.') || /\.tmp$/i.test(name);
}

export const processingKey = (loadId: string, name: string) => `${PROCESSING}${loadId}.${name}`;

/** The load id and dropped name of a file in processing/; undefined for a name the inbox did not give. */
export function parseProcessing(key: string): { loadId: string; name: string } | undefined {
  const m = CLAIMED.exec(key.slice(PROCESSING.length));
  return m ? { loadId: m[1]!.toLowerCase(), name: m[2]! } : undefined;
}

export const utcDate = (d: Date) => d.toISOString().slice(0, 10);

/** The direct children of a folder (its sub-folders are not looked into), at most `max`. */
export async function listFolder(store: Storage, folder: string, max = 10_000): Promise<{ name: string; key: string; size: number; lastModified: Date; etag: string }[]> {
  const out = [];
  for await (const o of store.list(folder)) {
    const name = o.key.slice(folder.length);
    if (name.includes('/')) continue;
    out.push({ name, key: o.key, size: o.size, lastModified: o.lastModified, etag: o.etag });
    if (out.length >= max) break;
  }
  return out;
}

/**
 * `folder/<name>`, or `folder/<stem>.<tag><ext>` when that is taken (the same name dropped twice a
 * day), so nothing finished earlier is replaced.
 */
export async function freeKey(store: Storage, folder: string, name: string, tag: string): Promise<string> {
  const plain = `${folder}${name}`;
  if (!(await store.exists(plain))) return plain;
  const ext = path.extname(name);
  return `${folder}${name.slice(0, name.length - ext.length)}.${tag}${ext}`;
}

/** Moves `from` to `to`; false when `from` is gone (another worker moved it first). */
export async function moveIfThere(store: Storage, from: string, to: string): Promise<boolean> {
  try {
    await store.move(from, to);
    return true;
  } catch (err) {
    if (err instanceof StorageNotFoundError) return false;
    throw err;
  }
}

const stores = new WeakMap<Config, Storage>();

/**
 * The inbox's store: always the folder DATA_DIR, because taking a file relies on a rename being
 * atomic, which a bucket does not give (README: what a bucket would need).
 */
export function inboxStorage(config: Config): Storage {
  let store = stores.get(config);
  if (!store) {
    const { secret, source } = signingSecret({ uploadSigningKey: config.UPLOAD_SIGNING_KEY, apiKey: config.API_KEY });
    store = new LocalStorage(config.DATA_DIR, createUrlSigner(secret, source));
    stores.set(config, store);
  }
  return store;
}

// ---- The load machinery, in two functions: adapt these when loads read their file from storage. ----

export interface ClaimedFile {
  loadId: string;
  table: TableName;
  /** Where the file is now: landing/processing/<loadId>.<name>. */
  key: string;
  bytes: number;
  /** As it was dropped. */
  name: string;
}

/**
 * Starts the ordinary loads of claimed files (one load record each, source 'inbox'), hired_employees
 * after the departments and jobs among them. Throws (503) when the queue cannot take them; the
 * loads are then failed, and the next scan moves their files to failed/.
 */
export async function startInboxLoads(services: Services, files: readonly ClaimedFile[]): Promise<LoadRow[]> {
  const landed = files.map((f) => ({
    id: f.loadId,
    table: f.table,
    file: fileOfKey(services.config, f.key),
    bytes: f.bytes,
    source: 'inbox' as const,
    sourceName: f.name,
  }));
  return (await startLoads(services, landed, false)).loads;
}

/**
 * A load's `file` as a key of the DATA_DIR folder; undefined outside it. Inbox loads record the
 * absolute path of their file (read from this machine's disk whatever STORAGE_URL says: the
 * inbox is a local folder); other loads record a storage key or an s3:// URL.
 */
export function keyOfLoadFile(config: Config, file: string): string | undefined {
  if (file.startsWith('s3://')) return undefined;
  if (!path.isAbsolute(file)) return config.storage.kind === 'local' ? file : undefined;
  const rel = path.relative(config.DATA_DIR, file);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  return rel.split(path.sep).join('/');
}

/** What an inbox load's `file` holds for a key of the DATA_DIR folder: its absolute path (see keyOfLoadFile). */
export function fileOfKey(config: Config, key: string): string {
  return path.join(config.DATA_DIR, ...key.split('/'));
}
