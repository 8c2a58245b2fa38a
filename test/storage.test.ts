import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { AppError } from '../core/errors.js';
import { loadConfig, type Config } from '../core/config.js';
import {
  InvalidStorageKeyError,
  openStorage,
  PresignedUrlError,
  StorageAccessDeniedError,
  StorageNotFoundError,
  StorageUnavailableError,
  type Storage,
} from '../storage/index.js';
import { startTestBucket, type TestBucket } from './support/s3.js';
import { createTestServices, type TestServices } from './support/services.js';

/**
 * One contract, two backends: every case runs on the local folder and on an S3-compatible bucket
 * (s3rver on 127.0.0.1, started here). What a caller sees must not depend on which one runs.
 */
const MiB = 1024 * 1024;
// Small parts so the multipart path runs on modest objects; moves above 8 MiB stream through.
const TUNING = { partSize: 5 * MiB, queueSize: 2, copyLimitBytes: 8 * MiB };

let bucket: TestBucket;
beforeAll(async () => {
  bucket = await startTestBucket();
});
afterAll(() => bucket?.stop());

/** `n` bytes in chunks of 256 KiB, made as they are read; `digest()` is their SHA-256 once read. */
function generated(n: number, seed = 1) {
  const hash = createHash('sha256');
  async function* chunks() {
    for (let off = 0, i = seed; off < n; i++) {
      const size = Math.min(256 * 1024, n - off);
      const chunk = Buffer.alloc(size, i % 251);
      chunk.writeUInt32BE(off >>> 0, 0);
      hash.update(chunk);
      off += size;
      yield chunk;
    }
  }
  return { body: chunks(), digest: () => hash.digest('hex') };
}

async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function keysOf(s: Storage, prefix: string, pageSize?: number): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of s.list(prefix, pageSize ? { pageSize } : {})) keys.push(o.key);
  return keys;
}

/** What `promise` rejects with (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

/** Live memory in buffers: after a full collection, so garbage not yet collected does not count. */
const gc = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();
function liveBufferBytes(): number {
  gc();
  return process.memoryUsage().arrayBuffers;
}

/**
 * Stands in for phase B's `PUT /uploads/{id}` on the local backend: checks the signature of a
 * presigned URL, then streams the request body into storage.
 */
async function uploadService(storage: Storage): Promise<{ url: (key: string) => string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const key = decodeURIComponent(url.pathname.slice('/put/'.length));
    void (async () => {
      try {
        storage.signer!.verify(req.method ?? '', key, url.searchParams);
        await storage.put(key, req);
        res.writeHead(200).end();
      } catch (err) {
        const status = err instanceof AppError ? err.status : 500;
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ code: (err as AppError).code }));
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: (key) => `http://127.0.0.1:${port}/put/${encodeURIComponent(key)}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe.each(['local', 's3'] as const)('%s storage', (kind) => {
  let dataDir: string;
  let storage: Storage;
  let service: Awaited<ReturnType<typeof uploadService>> | undefined;
  const settings = (extra: Record<string, string> = {}) =>
    kind === 's3' ? { DATA_DIR: dataDir, ...bucket.env(`suite-${randomBytes(4).toString('hex')}`), ...extra } : { DATA_DIR: dataDir, ...extra };

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'hrstore-'));
    storage = await openStorage(loadConfig(settings()), TUNING);
    if (kind === 'local') service = await uploadService(storage);
  });
  afterAll(async () => {
    await service?.close();
    await storage?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('put then get, stat and exists; a second put replaces the object', async () => {
    expect(storage.kind).toBe(kind);
    const put = await storage.put('small/hello.txt', Buffer.from('hello, storage\n'));
    expect(put).toMatchObject({ key: 'small/hello.txt', size: 15 });
    expect(await text(await storage.get('small/hello.txt'))).toBe('hello, storage\n');
    const info = await storage.stat('small/hello.txt');
    expect(info).toMatchObject({ key: 'small/hello.txt', size: 15, etag: put.etag });
    expect(Math.abs(info.lastModified.getTime() - Date.now())).toBeLessThan(60_000);
    expect(await storage.exists('small/hello.txt')).toBe(true);
    expect(await storage.exists('small/absent.txt')).toBe(false);

    await storage.put('small/hello.txt', Readable.from(['a Readable ', 'with strings']));
    expect(await text(await storage.get('small/hello.txt'))).toBe('a Readable with strings');
    expect((await storage.stat('small/hello.txt')).etag).not.toBe(put.etag);
  });

  test('64 MiB streams in (multipart on S3) and out, memory bounded below the size', async () => {
    const size = 64 * MiB;
    const { body, digest } = generated(size);
    let before = liveBufferBytes();
    let peak = 0;
    const peaks: number[] = [];
    const sampler = setInterval(() => (peak = Math.max(peak, liveBufferBytes() - before)), 250);
    try {
      expect(await storage.put('big/file.bin', body)).toMatchObject({ size });
      peaks.push(peak);
      [before, peak] = [liveBufferBytes(), 0];
      expect((await storage.stat('big/file.bin')).size).toBe(size);
      expect(await sha256Of(await storage.get('big/file.bin'))).toBe(digest());
      peaks.push(peak);
    } finally {
      clearInterval(sampler);
    }
    // Put on S3: two 5 MiB parts in flight, the one being filled and its copy; seen 15-26 MiB
    // whatever the size (flat at 120 MiB too). Reading: stream buffers only.
    expect(Math.max(...peaks)).toBeLessThan(40 * MiB);
  }, 120_000);

  test('byte ranges: inclusive ends, open end, past the end', async () => {
    await storage.put('range/digits.txt', Buffer.from('0123456789'));
    const read = async (start: number, end?: number) =>
      text(await storage.get('range/digits.txt', end === undefined ? { start } : { start, end }));
    // A one-byte range at 0 (bytes=0-0) is left out: s3rver answers it with the whole object.
    expect(await read(1, 1)).toBe('1');
    expect(await read(0, 2)).toBe('012');
    expect(await read(2, 5)).toBe('2345');
    expect(await read(7)).toBe('789');
    expect(await read(8, 100)).toBe('89');
    expect(await read(10)).toBe('');
    expect(await read(25, 30)).toBe('');
    await expect(storage.get('range/digits.txt', { start: 5, end: 4 })).rejects.toThrow(RangeError);
    await expect(storage.get('range/digits.txt', { start: -1 })).rejects.toThrow(RangeError);
    await expect(storage.get('range/absent.txt', { start: 3 })).rejects.toBeInstanceOf(StorageNotFoundError);

    // Resume-style: a large object read from an offset gives exactly its tail.
    const { body } = generated(6 * MiB, 7);
    await storage.put('range/big.bin', body);
    const whole = Buffer.concat(await (await storage.get('range/big.bin')).toArray());
    const tail = Buffer.concat(await (await storage.get('range/big.bin', { start: 5 * MiB + 3 })).toArray());
    expect(tail.equals(whole.subarray(5 * MiB + 3))).toBe(true);
  });

  test('list by prefix, in key order, across pages', async () => {
    const keys = Array.from({ length: 23 }, (_, i) => `list/k${String(i).padStart(2, '0')}.csv`);
    keys.push('list/a-b', 'list/a/b', 'list/sub/deep/x', 'listing.txt', 'other/list/x');
    await Promise.all(keys.map((k) => storage.put(k, Buffer.from(k))));
    const expected = keys.filter((k) => k.startsWith('list/')).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(expected.indexOf('list/a-b')).toBeLessThan(expected.indexOf('list/a/b')); // '-' sorts before '/'
    // s3rver lists in its folder-walk order ('list/a/b' first), not S3's bytewise order.
    const inOrder = (keys: string[]) => (kind === 's3' ? [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))) : keys);
    expect(inOrder(await keysOf(storage, 'list/', 4))).toEqual(expected);
    expect(inOrder(await keysOf(storage, 'list/'))).toEqual(expected);
    expect(await keysOf(storage, 'list/k1', 3)).toEqual(expected.filter((k) => k.startsWith('list/k1')));
    expect(inOrder(await keysOf(storage, 'list'))).toEqual([...expected, 'listing.txt']);
    expect(await keysOf(storage, 'nothing/here/')).toEqual([]);
    const infos = [];
    for await (const o of storage.list('list/sub/', { pageSize: 2 })) infos.push(o);
    expect(infos).toEqual([expect.objectContaining({ key: 'list/sub/deep/x', size: 15, etag: expect.any(String) })]);
  });

  test('move renames (replacing the target), large objects too; a missing source is NotFound', async () => {
    await storage.put('move/a.txt', Buffer.from('A'));
    await storage.put('move/b.txt', Buffer.from('B'));
    await storage.move('move/a.txt', 'moved/deeper/a.txt');
    expect(await storage.exists('move/a.txt')).toBe(false);
    expect(await text(await storage.get('moved/deeper/a.txt'))).toBe('A');
    await storage.move('moved/deeper/a.txt', 'move/b.txt');
    expect(await text(await storage.get('move/b.txt'))).toBe('A');
    await expect(storage.move('move/none.txt', 'move/x.txt')).rejects.toBeInstanceOf(StorageNotFoundError);

    // Past copyLimitBytes the S3 backend streams the copy instead of CopyObject.
    const { body, digest } = generated(9 * MiB, 3);
    await storage.put('move/large.bin', body);
    await storage.move('move/large.bin', 'moved/large.bin');
    expect(await storage.exists('move/large.bin')).toBe(false);
    expect(await sha256Of(await storage.get('moved/large.bin'))).toBe(digest());
  });

  test('delete removes; deleting again is fine; a missing key is NotFound naming it', async () => {
    await storage.put('del/x.txt', Buffer.from('x'));
    await storage.delete('del/x.txt');
    expect(await storage.exists('del/x.txt')).toBe(false);
    await storage.delete('del/x.txt');
    for (const call of [() => storage.get('del/x.txt'), () => storage.stat('del/x.txt')]) {
      const err = await rejection(call());
      expect(err).toBeInstanceOf(StorageNotFoundError);
      expect(err).toMatchObject({ status: 404, code: 'not_found', message: 'no object "del/x.txt" in storage' });
    }
  });

  test('a body that fails halfway leaves nothing visible and the old object intact', async () => {
    const failing = async function* () {
      yield Buffer.alloc(3 * MiB, 1);
      yield Buffer.alloc(3 * MiB, 2);
      throw new Error('client went away');
    };
    await expect(storage.put('half/new.bin', failing())).rejects.toThrow('client went away');
    expect(await storage.exists('half/new.bin')).toBe(false);
    await storage.put('half/old.txt', Buffer.from('old'));
    await expect(storage.put('half/old.txt', failing())).rejects.toThrow('client went away');
    expect(await text(await storage.get('half/old.txt'))).toBe('old');
    expect(await keysOf(storage, 'half/')).toEqual(['half/old.txt']);
    if (kind === 'local') expect(await readdir(path.join(dataDir, 'half'))).toEqual(['old.txt']); // no temp file left
  });

  test('keys that could escape or mean different things are refused', async () => {
    const bad = ['../escape.txt', 'a/../../escape.txt', '/etc/passwd', 'a\0b', 'a\\b', '', 'a//b', 'a/', '.', 'a/./b', '.storage-tmp/x'];
    for (const key of bad) {
      const calls: (() => Promise<unknown>)[] = [
        () => storage.put(key, Buffer.from('x')),
        () => storage.get(key),
        () => storage.stat(key),
        () => storage.exists(key),
        () => storage.delete(key),
        () => storage.move(key, 'ok.txt'),
        () => storage.move('ok.txt', key),
        () => storage.presignPut(key, { expiresInSeconds: 60, serviceUrl: 'http://127.0.0.1/put' }),
      ];
      for (const call of calls) expect(await rejection(call()), JSON.stringify(key)).toBeInstanceOf(InvalidStorageKeyError);
    }
    for (const prefix of ['../', '/abs', 'a/../b', 'a\0']) {
      expect(await rejection(keysOf(storage, prefix))).toBeInstanceOf(InvalidStorageKeyError);
    }
    await expect(stat(path.join(dataDir, '..', 'escape.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('a presigned PUT stores the body; an expired or altered one is refused and stores nothing', async () => {
    const presign = (key: string, signedAt?: Date) =>
      storage.presignPut(key, { expiresInSeconds: 60, ...(service && { serviceUrl: service.url(key) }), ...(signedAt && { signedAt }) });
    const ok = await presign('up/ok.csv');
    expect(ok.method).toBe('PUT');
    expect(ok.expiresAt.getTime()).toBeGreaterThan(Date.now() + 50_000);
    const res = await fetch(ok.url, { method: 'PUT', body: 'id,name\n1,x\n' });
    expect(res.status).toBe(200);
    expect(await text(await storage.get('up/ok.csv'))).toBe('id,name\n1,x\n');

    const expired = await presign('up/late.csv', new Date(Date.now() - 3_600_000));
    expect(expired.expiresAt.getTime()).toBeLessThan(Date.now());
    expect((await fetch(expired.url, { method: 'PUT', body: 'late' })).status).toBe(403);
    expect(await storage.exists('up/late.csv')).toBe(false);

    if (kind === 'local') {
      // The signature covers the key: the same query on another key is refused.
      const moved = new URL(ok.url);
      moved.pathname = new URL(service!.url('up/other.csv')).pathname;
      const refused = await fetch(moved, { method: 'PUT', body: 'x' });
      expect(refused.status).toBe(403);
      expect(await refused.json()).toEqual({ code: 'bad_signature' });
      await expect(storage.presignPut('up/x.csv', { expiresInSeconds: 60 })).rejects.toThrow(/serviceUrl/);
    } else {
      expect(storage.signer).toBeUndefined();
    }
    await expect(presign('up/x.csv').then(() => storage.presignPut('up/x.csv', { expiresInSeconds: 8 * 24 * 3600, serviceUrl: 'http://x/' })))
      .rejects.toThrow(RangeError);
  });

  test('check passes; a store that refuses or is gone fails with a named error and no secret or host', async () => {
    await storage.check();
    const refusing =
      kind === 's3'
        ? await openStorage(loadConfig(settings({ AWS_ACCESS_KEY_ID: 'WRONGKEY', AWS_SECRET_ACCESS_KEY: 'wrong-secret-value' })))
        : await openStorage(loadConfig({ DATA_DIR: path.join(dataDir, 'no', 'such', 'folder') }));
    try {
      const err = await rejection(refusing.check());
      expect(err).toBeInstanceOf(kind === 's3' ? StorageAccessDeniedError : StorageUnavailableError);
      if (kind === 's3') {
        expect(await rejection(refusing.get('small/hello.txt'))).toBeInstanceOf(StorageAccessDeniedError);
        expect((err as Error).message).toBe('storage refused access: the access key id is unknown');
        expect((err as Error).message).not.toMatch(/127\.0\.0\.1|WRONGKEY|wrong-secret/);
      }
    } finally {
      await refusing.close();
    }
    if (kind === 's3') {
      const gone = await openStorage(loadConfig(settings({ AWS_ENDPOINT_URL: 'http://127.0.0.1:1' })));
      try {
        const err = await rejection(gone.stat('x'));
        expect(err).toBeInstanceOf(StorageUnavailableError);
        expect((err as Error).message).toBe('storage unavailable: cannot reach the store (ECONNREFUSED)');
      } finally {
        await gone.close();
      }
    }
  });
});

describe('presigned URL signatures (local backend)', () => {
  const config = (env: Record<string, string>) => loadConfig({ DATA_DIR: tmpdir(), ...env });
  const signerOf = async (env: Record<string, string>) => (await openStorage(config(env))).signer!;
  const inAMinute = () => new Date(Date.now() + 60_000);

  test('verify accepts its own signature for the same method and key only', async () => {
    const future = inAMinute();
    const s = await signerOf({ UPLOAD_SIGNING_KEY: 'k'.repeat(32) });
    const p = s.sign('PUT', 'uploads/a.csv', future);
    expect(() => s.verify('PUT', 'uploads/a.csv', p)).not.toThrow();
    expect(() => s.verify('put', 'uploads/a.csv', p)).not.toThrow();
    const reason = (fn: () => void) => {
      try {
        fn();
      } catch (err) {
        return err instanceof PresignedUrlError ? err.reason : err;
      }
      return 'accepted';
    };
    expect(reason(() => s.verify('GET', 'uploads/a.csv', p))).toBe('invalid');
    expect(reason(() => s.verify('PUT', 'uploads/b.csv', p))).toBe('invalid');
    expect(reason(() => s.verify('PUT', 'uploads/a.csv', { ...p, expires: String(Number(p.expires) + 3600) }))).toBe('invalid');
    expect(reason(() => s.verify('PUT', 'uploads/a.csv', { expires: p.expires }))).toBe('invalid');
    expect(reason(() => s.verify('PUT', 'uploads/a.csv', p, new Date(future.getTime() + 1000)))).toBe('expired');
  });

  test('the secret: UPLOAD_SIGNING_KEY, else derived from API_KEY (shared by hosts), else per process', async () => {
    const future = inAMinute();
    const apiKey = 'an-api-key-of-enough-length';
    const hostA = await signerOf({ API_KEY: apiKey });
    const hostB = await signerOf({ API_KEY: apiKey });
    expect(hostA.source).toBe('API_KEY');
    expect(() => hostB.verify('PUT', 'k', hostA.sign('PUT', 'k', future))).not.toThrow();
    const other = await signerOf({ API_KEY: `${apiKey}-other` });
    expect(() => other.verify('PUT', 'k', hostA.sign('PUT', 'k', future))).toThrow(PresignedUrlError);
    const url = hostA.signUrl('http://h/uploads/1', 'PUT', 'k', future);
    expect(url).not.toContain(apiKey);

    const own = await signerOf({ UPLOAD_SIGNING_KEY: 'u'.repeat(40), API_KEY: apiKey });
    expect(own.source).toBe('UPLOAD_SIGNING_KEY');
    expect(() => own.verify('PUT', 'k', hostA.sign('PUT', 'k', future))).toThrow(PresignedUrlError);

    const generated = await signerOf({});
    expect(generated.source).toBe('generated');
    const again = await signerOf({});
    expect(() => again.verify('PUT', 'k', generated.sign('PUT', 'k', future))).not.toThrow(); // same process
    expect(() => loadConfig({ UPLOAD_SIGNING_KEY: 'short' })).toThrow(/UPLOAD_SIGNING_KEY must be at least 32/);
  });
});

describe('settings', () => {
  test('STORAGE_URL unset is the folder DATA_DIR; s3://bucket/prefix the bucket', () => {
    expect(loadConfig({ DATA_DIR: '/srv/hr' }).storage).toEqual({ kind: 'local', root: '/srv/hr' });
    expect(loadConfig({ DATA_DIR: '/srv/hr', STORAGE_URL: '' }).storage.kind).toBe('local');
    expect(loadConfig({ STORAGE_URL: 's3://hr-files/prod/v1/', AWS_REGION: 'eu-west-1' }).storage).toEqual({
      kind: 's3',
      bucket: 'hr-files',
      prefix: 'prod/v1',
      region: 'eu-west-1',
      forcePathStyle: false,
    });
  });

  test('an endpoint means path-style and a default region, unless said otherwise; keys go together', () => {
    const minio = loadConfig({ STORAGE_URL: 's3://hr-files', AWS_ENDPOINT_URL: 'http://minio:9000', AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret' });
    expect(minio.storage).toEqual({
      kind: 's3',
      bucket: 'hr-files',
      prefix: '',
      endpoint: 'http://minio:9000',
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'id', secretAccessKey: 'secret' },
    });
    // The keys live only in storage settings, nowhere else in the config.
    expect(JSON.stringify({ ...minio, storage: undefined })).not.toContain('secret');
    const vhost = loadConfig({ STORAGE_URL: 's3://hr-files', AWS_ENDPOINT_URL: 'https://r2.example', S3_FORCE_PATH_STYLE: 'false' });
    expect(vhost.storage).toMatchObject({ forcePathStyle: false });
    expect(() => loadConfig({ STORAGE_URL: 's3://hr-files', AWS_ACCESS_KEY_ID: 'id' })).toThrow(/AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together/);
  });

  test('a bad STORAGE_URL stops the start naming it', () => {
    for (const [url, why] of [
      ['/data/files', /STORAGE_URL must look like s3:\/\/bucket\/prefix/],
      ['gs://bucket/x', /STORAGE_URL must start with s3:\/\//],
      ['s3://key:secret@bucket/x', /STORAGE_URL must not hold credentials/],
      ['s3://bucket:9000/x', /STORAGE_URL takes no port/],
      ['s3://B_ad/x', /STORAGE_URL bucket "B_ad" is not a valid bucket name/],
      ['s3://bucket/a/%zz', /STORAGE_URL prefix has a broken %-escape/],
      ['s3://bucket/a%00b', /STORAGE_URL prefix must be a plain path/],
    ] as const) {
      expect(() => loadConfig({ STORAGE_URL: url }), url).toThrow(why);
    }
  });
});

describe('/health checks the storage', () => {
  let s: TestServices;
  beforeAll(async () => {
    s = await createTestServices();
  });
  afterAll(() => s?.cleanup());

  async function health(env: Record<string, string> | null) {
    const config: Config = env ? { ...s.config, storage: loadConfig(env).storage } : s.config;
    const res = await createApp({ ...s, config }).request('/health');
    const text = await res.text();
    return { status: res.status, text, body: JSON.parse(text) as Record<string, unknown> };
  }

  test('the folder, and a bucket that answers: 200 with the kind and where', async () => {
    const local = await health(null);
    expect(local.status).toBe(200);
    expect(local.body.storage).toMatchObject({ status: 'ok', kind: 'local', location: 'DATA_DIR' });
    const s3 = await health(bucket.env('health'));
    expect(s3.status).toBe(200);
    expect(s3.body.storage).toMatchObject({ status: 'ok', kind: 's3', location: 's3://hr-test/health' });
  });

  test('a bucket that refuses the credentials: 503 naming storage, without secrets or the endpoint', async () => {
    const res = await health({ ...bucket.env('health'), AWS_ACCESS_KEY_ID: 'WRONGKEY', AWS_SECRET_ACCESS_KEY: 'wrong-secret-value' });
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({
      status: 'degraded',
      down: ['storage'],
      postgres: { status: 'ok' },
      storage: { status: 'down', kind: 's3', location: 's3://hr-test/health', error: 'storage refused access: the access key id is unknown' },
    });
    expect(res.text).not.toMatch(new RegExp(`WRONGKEY|wrong-secret|${new URL(bucket.endpoint).host}`));
  });
});
