import { Writable } from 'node:stream';
import type { PGlite } from '@electric-sql/pglite';
import pg from 'pg';

/**
 * COPY FROM a blob, for the embedded database (pg/embedded.ts) when it runs in this process.
 *
 * The pglite-socket server cannot take `COPY … FROM STDIN`, but PGlite itself reads COPY data
 * from its `/dev/blob` device: `db.query("COPY t FROM '/dev/blob'", [], { blob })`. PGlite has one
 * session, and while a connection of the socket server holds a transaction, the server runs no
 * other connection's statements; a statement given to PGlite directly then runs inside that
 * transaction. So a caller that opened a transaction on its `pg` connection can have its COPY
 * data written this way, in its own transaction: same rows, same checks and triggers, same errors
 * (SQLSTATE kept), rolled back with the transaction.
 *
 * `blobCopyIn` makes sure of that before it answers: the connection's transaction id, asked over
 * the socket, must be the one PGlite reports directly. Outside a transaction (or if anything is
 * off) it answers `undefined` and the caller takes the batched-insert path (pg/copy-in.ts).
 *
 * Memory stays bounded: COPY text is sent in pieces of at most BLOB_BYTES, cut at line ends, each
 * its own COPY statement in the same transaction. Binary COPY (one header for the whole stream) is
 * not taken here.
 */

/** PGlite instances of this process, by the loopback address their socket server listens on. */
const served = new Map<string, PGlite>();

export function registerInProcess(host: string, port: number, db: PGlite): () => void {
  const key = `${host}:${port}`;
  served.set(key, db);
  return () => {
    if (served.get(key) === db) served.delete(key);
  };
}

/** The in-process PGlite behind this connection, if it is one of ours. */
function inProcess(client: pg.ClientBase): PGlite | undefined {
  const c = client as pg.ClientBase & { host?: string; port?: number };
  if (typeof c.host !== 'string' || typeof c.port !== 'number') return undefined;
  return served.get(`${c.host}:${c.port}`);
}

/** COPY statements and bytes this process sent through /dev/blob (debug logs, tests). */
export const blobCopyStats = { statements: 0, bytes: 0 };

/** Largest piece of COPY text handed to PGlite at once (it is copied twice on the way in). */
export const BLOB_BYTES = 8 * 2 ** 20;

const q = pg.escapeIdentifier;

/**
 * A writable stream of COPY text for `target` written through PGlite's /dev/blob inside the
 * transaction `client` holds, or `undefined` when that is not possible (not an in-process
 * PGlite, no transaction open on this connection).
 */
export async function blobCopyIn(client: pg.ClientBase, target: string, columns: readonly string[]): Promise<Writable | undefined> {
  const db = inProcess(client);
  if (!db) return undefined;
  // Assigns an id to the connection's transaction (it is about to write anyway); outside a
  // transaction the id belongs to a statement already committed and cannot match below.
  const { rows } = await client.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x');
  const direct = await db.query<{ x: string | null }>('SELECT pg_current_xact_id_if_assigned()::text AS x');
  if (direct.rows[0]?.x !== rows[0]!.x) return undefined;
  const sql = `COPY ${q(target)} (${columns.map((c) => q(c)).join(', ')}) FROM '/dev/blob'`;
  return new BlobCopy(db, sql);
}

class BlobCopy extends Writable {
  private parts: Buffer[] = [];
  private bytes = 0;

  constructor(
    private readonly db: PGlite,
    private readonly sql: string,
  ) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.parts.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes < BLOB_BYTES) return cb();
    this.drain(false).then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.drain(true).then(() => cb(), cb);
  }

  /** Sends whole lines in pieces of at most BLOB_BYTES (a longer line alone); at the end, everything. */
  private async drain(all: boolean): Promise<void> {
    let buf = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    this.parts = [];
    this.bytes = 0;
    while (buf.length >= BLOB_BYTES || (all && buf.length > 0)) {
      let end = buf.length;
      if (buf.length > BLOB_BYTES) {
        end = buf.lastIndexOf(10, BLOB_BYTES - 1) + 1;
        if (end === 0) end = buf.indexOf(10, BLOB_BYTES) + 1; // one line longer than a piece
        if (end === 0) {
          if (!all) break; // no line end yet: wait for more
          end = buf.length; // the last line, without its line end (COPY takes that)
        }
      } else if (!all) {
        end = buf.lastIndexOf(10) + 1;
        if (end === 0) break;
      }
      await this.send(buf.subarray(0, end));
      buf = buf.subarray(end);
    }
    if (buf.length > 0) {
      this.parts.push(buf);
      this.bytes = buf.length;
    }
  }

  private async send(piece: Buffer): Promise<void> {
    // Blob copies the bytes (a Buffer may view a pooled or shared ArrayBuffer).
    await this.db.query(this.sql, [], { blob: new Blob([piece as Uint8Array<ArrayBuffer>]) });
    blobCopyStats.statements++;
    blobCopyStats.bytes += piece.length;
  }
}
