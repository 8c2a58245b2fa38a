import { spawn } from 'node:child_process';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import type { Logger } from '../core/log.js';
import { registerInProcess } from './blob-copy.js';

/**
 * PostgreSQL without a server: PGlite (PostgreSQL compiled to WebAssembly, stored in a folder)
 * served on a loopback port by pglite-socket, so the service's `pg` code and SQL run unchanged.
 * This is what `npm start` uses when DATABASE_URL is unset: clone, install, start.
 *
 * What differs from a real server, and how the service copes:
 * - One backend session serves every connection; the socket server runs one transaction at a
 *   time and queues the others' statements meanwhile. Session state (SET, temporary tables)
 *   is shared, so code that changes it checks `isEmbeddedPostgres()` (pg/copy-in.ts).
 * - `COPY … FROM STDIN` is not supported over the socket; bulk writes go through `copyIn()`,
 *   which hands COPY text inside a transaction to this PGlite directly (pg/blob-copy.ts) and
 *   inserts batches from arrays otherwise. `COPY … TO STDOUT` works.
 * - One process may open the folder at a time: a lock file holding the pid guards it.
 * - pglite-socket feeds PGlite one protocol message at a time, from whichever connection sent
 *   one; two connections' extended-protocol queries (Parse, Bind, Execute … Sync) then interleave
 *   in the one session and steal each other's unnamed statement ("portal does not exist", wrong
 *   rows). `groupExtendedQueries` hands PGlite each query whole, up to its Sync.
 */
export interface EmbeddedPostgres {
  /** Connection string of the loopback server. */
  readonly url: string;
  /** The folder holding the database files. */
  readonly dataDir: string;
  stop(): Promise<void>;
}

export class EmbeddedPostgresLockedError extends Error {
  constructor(dataDir: string, pid: number) {
    super(
      `the embedded database in ${dataDir} is in use by process ${pid}; stop it first, ` +
        'or set DATABASE_URL to share a PostgreSQL server between processes',
    );
    this.name = 'EmbeddedPostgresLockedError';
  }
}

/**
 * Opens (creating on first use) the database under `dataDir`, or an in-memory one when
 * `dataDir` is undefined (tests), and serves it on 127.0.0.1 at a free port.
 */
export async function startEmbeddedPostgres(opts: { dataDir?: string; maxConnections?: number; log?: Logger }): Promise<EmbeddedPostgres> {
  const { dataDir, log } = opts;
  let unlock = async () => {};
  if (dataDir) {
    await mkdir(path.dirname(dataDir), { recursive: true });
    unlock = await lockFolder(dataDir);
  }
  let db: PGlite | undefined;
  try {
    const started = performance.now();
    if (dataDir && !(await exists(path.join(dataDir, 'PG_VERSION')))) {
      await initdbElsewhere(dataDir);
      log?.debug({ dataDir, ms: Math.round(performance.now() - started) }, 'embedded PostgreSQL: new database folder created');
    }
    // Loaded here, not at the top: a process with a PostgreSQL server never loads PGlite.
    const [{ PGlite }, { PGLiteSocketServer }] = await Promise.all([import('@electric-sql/pglite'), import('@electric-sql/pglite-socket')]);
    db = await PGlite.create({ ...(dataDir ? { dataDir } : {}), startParams: await startParams() });
    const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: opts.maxConnections ?? 64 });
    groupExtendedQueries(server);
    await server.start();
    const port = Number(server.getServerConn().split(':').pop());
    const unregister = registerInProcess('127.0.0.1', port, db);
    log?.debug({ dataDir: dataDir ?? 'memory', port, ms: Math.round(performance.now() - started) }, 'embedded PostgreSQL ready');
    const opened = db;
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      dataDir: dataDir ?? 'memory',
      async stop() {
        unregister();
        await server.stop();
        await opened.close();
        await unlock();
      },
    };
  } catch (err) {
    await db?.close().catch(() => {});
    await unlock();
    throw err;
  }
}

/**
 * Memory. PGlite's WebAssembly heap only grows (to the most it ever needed) and is never given
 * back, so the settings that size it are what bound the process: PostgreSQL's defaults assume a
 * server with the machine to itself. Measured with the 20,000-hire demo loaded: 128 MB of
 * shared_buffers (the default) alone is as much again as the whole service besides; 32 MB holds
 * the demo's tables and indexes several times over and loads run as fast. A folder made by an
 * earlier version keeps working: these are start parameters, not written into its files.
 */
async function startParams(): Promise<string[]> {
  const { PGlite } = await import('@electric-sql/pglite');
  return [...PGlite.defaultStartParams, '-c', 'shared_buffers=32MB'];
}

/**
 * Creates a new database folder (initdb) in a short-lived child process. PGlite runs initdb in a
 * second instance of itself inside the opening process and its memory is not given back
 * afterwards: done here, the first start of the service would hold some 450 MB more for good.
 */
async function initdbElsewhere(dataDir: string): Promise<void> {
  const pglite = import.meta.resolve('@electric-sql/pglite');
  const code =
    `const { PGlite } = await import(${JSON.stringify(pglite)});` +
    `const db = await PGlite.create({ dataDir: process.argv[1], startParams: JSON.parse(process.argv[2]) });` +
    `await db.close();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, dataDir, JSON.stringify(await startParams())], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  const code_ = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  });
  if (code_ !== 0) throw new Error(`could not create the embedded database in ${dataDir} (exit code ${code_}): ${stderr.trim()}`);
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** The part of pglite-socket's (internal) query queue the socket handlers call. */
interface QueryQueue {
  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number>;
  clearQueueForHandler(handlerId: number): void;
  clearTransactionIfNeeded(handlerId: number): Promise<void>;
  getQueueLength(): number;
}

/** Parse, Bind, Describe, Execute, Close: held back until the Sync that ends the query. */
const HELD = new Set([0x50, 0x42, 0x44, 0x45, 0x43]);

/**
 * Wraps the server's query queue so an extended-protocol query reaches PGlite as one unit (its
 * messages up to Sync, concatenated), never interleaved with another connection's. Relies on
 * pglite-socket 0.2's `queryQueue` property (the version is pinned); a test runs concurrent
 * transactions and parameterized queries across connections to keep this honest.
 */
function groupExtendedQueries(server: PGLiteSocketServer): void {
  const holder = server as unknown as { queryQueue?: QueryQueue };
  const inner = holder.queryQueue;
  if (!inner || typeof inner.enqueue !== 'function') {
    throw new Error('this pglite-socket version has no queryQueue to wrap; install the version package.json pins');
  }
  const held = new Map<number, Uint8Array[]>();
  holder.queryQueue = {
    enqueue(id, message, onData) {
      if (HELD.has(message[0]!)) {
        const list = held.get(id) ?? [];
        list.push(message);
        held.set(id, list);
        return Promise.resolve(0);
      }
      const list = held.get(id);
      if (!list) return inner.enqueue(id, message, onData);
      held.delete(id);
      return inner.enqueue(id, Buffer.concat([...list, message]), onData);
    },
    clearQueueForHandler(id) {
      held.delete(id);
      inner.clearQueueForHandler(id);
    },
    clearTransactionIfNeeded: (id) => inner.clearTransactionIfNeeded(id),
    getQueueLength: () => inner.getQueueLength(),
  };
}

/** Folders this process has open. */
const openHere = new Set<string>();

/**
 * A pid file beside the database folder (`<folder>.pid`): a second process opening the folder
 * would corrupt it. A stale file (its process gone) is taken over.
 */
async function lockFolder(dataDir: string): Promise<() => Promise<void>> {
  const file = `${dataDir}.pid`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, String(process.pid), { flag: 'wx' });
      openHere.add(dataDir);
      return async () => {
        openHere.delete(dataDir);
        await rm(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      // Our own pid is stale unless this process has the folder open (a container's pid 1 restarts as pid 1).
      const held = pid === process.pid ? openHere.has(dataDir) : pid > 0 && isAlive(pid);
      if (held) throw new EmbeddedPostgresLockedError(dataDir, pid);
      await rm(file, { force: true });
    }
  }
  throw new Error(`could not lock ${dataDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
