import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { StorageAccessDeniedError, StorageNotFoundError, StorageUnavailableError } from './errors.js';
import { checkKey, checkPrefix, TEMP_FOLDER } from './keys.js';
import type { UrlSigner } from './signed-url.js';
import type { Body, ByteRange, ObjectInfo, PresignedPut, PresignOptions, PutResult, Storage } from './storage.js';
import { checkExpiry, checkRange, existsByStat, toBytes } from './args.js';

/**
 * Objects as files below a folder (DATA_DIR by default): key `a/b.csv` is `<root>/a/b.csv`.
 * A put writes `.storage-tmp-…` beside the target, fsyncs it, renames it into place and fsyncs
 * the folder, so a reader sees the old object or the whole new one. Folders left empty by
 * delete or move stay (list ignores them); symbolic links are not objects.
 */
export class LocalStorage implements Storage {
  readonly kind = 'local' as const;
  readonly location: string;

  constructor(
    private readonly root: string,
    readonly signer: UrlSigner,
  ) {
    this.location = path.resolve(root);
  }

  private file(key: string): string {
    return path.join(this.location, ...checkKey(key).split('/'));
  }

  async put(key: string, body: Body): Promise<PutResult> {
    const target = this.file(key);
    const dir = path.dirname(target);
    const tmp = path.join(dir, `${TEMP_FOLDER}-${randomUUID()}`);
    let size = 0;
    try {
      await mkdir(dir, { recursive: true });
      const fh = await open(tmp, 'wx');
      try {
        for await (const chunk of toBytes(body)) {
          await writeAll(fh, chunk);
          size += chunk.byteLength;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, target);
      await syncDir(dir);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw fsError(err, key);
    }
    return { key, size, etag: (await this.stat(key)).etag };
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const file = this.file(key);
    if (range) checkRange(range);
    let fh: FileHandle | undefined;
    try {
      fh = await open(file, 'r');
      if (!(await fh.stat()).isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
    } catch (err) {
      await fh?.close();
      throw fsError(err, key);
    }
    return fh.createReadStream(range ? { start: range.start, ...(range.end !== undefined && { end: range.end }) } : {});
  }

  async stat(key: string): Promise<ObjectInfo> {
    const file = this.file(key);
    try {
      const s = await stat(file, { bigint: true });
      if (!s.isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
      return info(key, s);
    } catch (err) {
      throw fsError(err, key);
    }
  }

  exists(key: string): Promise<boolean> {
    return existsByStat(() => this.stat(key));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix);
    // Start in the deepest folder the prefix names; the rest of it filters names.
    const start = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    yield* this.walk(start, prefix);
  }

  private async *walk(rel: string, prefix: string): AsyncGenerator<ObjectInfo> {
    let entries;
    try {
      entries = await readdir(path.join(this.location, ...(rel ? rel.split('/') : [])), { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw fsError(err, rel);
    }
    // Bytewise order of the full keys, as S3 lists: a folder sorts as its name plus '/'.
    const named = entries
      .filter((e) => (e.isFile() || e.isDirectory()) && !e.name.startsWith(TEMP_FOLDER))
      .map((e) => ({ e, sortKey: Buffer.from(e.isDirectory() ? `${e.name}/` : e.name) }))
      .sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
    for (const { e } of named) {
      const key = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        const asFolder = `${key}/`;
        if (asFolder.startsWith(prefix) || prefix.startsWith(asFolder)) yield* this.walk(key, prefix);
      } else if (key.startsWith(prefix)) {
        try {
          yield info(key, await stat(path.join(this.location, ...key.split('/')), { bigint: true }));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(err, key); // deleted meanwhile
        }
      }
    }
  }

  async move(from: string, to: string): Promise<void> {
    const source = this.file(from);
    const target = this.file(to);
    await this.stat(from);
    try {
      await mkdir(path.dirname(target), { recursive: true });
      await rename(source, target);
      await syncDir(path.dirname(target));
    } catch (err) {
      throw fsError(err, from);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.file(key));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') return;
      throw fsError(err, key);
    }
  }

  async presignPut(key: string, options: PresignOptions): Promise<PresignedPut> {
    checkKey(key);
    if (!options.serviceUrl) throw new TypeError('the local backend signs a service URL: pass serviceUrl');
    const seconds = checkExpiry(options.expiresInSeconds);
    const expiresAt = new Date((options.signedAt ?? new Date()).getTime() + seconds * 1000);
    return { url: this.signer.signUrl(options.serviceUrl, 'PUT', key, expiresAt), method: 'PUT', expiresAt };
  }

  async check(): Promise<void> {
    try {
      await access(this.location, constants.R_OK | constants.W_OK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new StorageUnavailableError('the storage folder does not exist', { cause: err });
      }
      throw fsError(err, '');
    }
  }

  async close(): Promise<void> {}
}

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await fh.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

/** A rename is durable only once the folder holding the new name is on disk too. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function info(key: string, s: { size: bigint; mtimeNs: bigint; ino: bigint; mtime: Date }): ObjectInfo {
  return {
    key,
    size: Number(s.size),
    lastModified: s.mtime,
    etag: `"${s.ino.toString(16)}-${s.mtimeNs.toString(16)}-${s.size.toString(16)}"`,
  };
}

/** File-system errors in storage terms; the message names the key, not the path. */
function fsError(err: unknown, key: string): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EISDIR':
      return new StorageNotFoundError(key, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new StorageAccessDeniedError('permission denied on the storage folder', { cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new StorageUnavailableError('no space left on the storage folder', { cause: err });
    case 'EROFS':
      return new StorageUnavailableError('the storage folder is read-only', { cause: err });
    case 'EIO':
    case 'EMFILE':
    case 'ENFILE':
    case 'EBUSY':
      return new StorageUnavailableError(`file system error ${code}`, { cause: err });
    default:
      return err;
  }
}
