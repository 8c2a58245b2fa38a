import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Readable } from 'node:stream';
import type { S3Settings } from '../core/config.js';
import { checkKey, checkPrefix } from './keys.js';
import { s3Error } from './s3-errors.js';
import type { Body, ByteRange, ObjectInfo, PresignedPut, PresignOptions, PutResult, Storage } from './storage.js';
import { checkExpiry, checkRange, existsByStat, toBytes } from './args.js';

export interface S3Tuning {
  /** Bytes per multipart part (5 MiB at least); parts in flight × this is the memory a put holds. */
  partSize?: number;
  /** Parts uploaded at once by one put. */
  queueSize?: number;
  /** Larger objects move by streaming through this process instead of CopyObject (S3 copies at most 5 GiB at once). */
  copyLimitBytes?: number;
}

const MiB = 1024 * 1024;

/**
 * Objects in an S3-compatible bucket under an optional prefix (`s3://bucket/prefix`). Credentials
 * come from the settings when AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set, otherwise from
 * the SDK's default chain (profiles, SSO, web identity, container and instance roles), which
 * reads its own AWS_* variables.
 */
export class S3Storage implements Storage {
  readonly kind = 's3' as const;
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  /** '' or the prefix with a trailing '/'. */
  private readonly root: string;
  private readonly tuning: Required<S3Tuning>;
  private closed = false;

  constructor(settings: S3Settings, tuning: S3Tuning = {}) {
    this.bucket = settings.bucket;
    this.root = settings.prefix ? `${settings.prefix}/` : '';
    this.location = `s3://${settings.bucket}${settings.prefix ? `/${settings.prefix}` : ''}`;
    this.tuning = { partSize: 8 * MiB, queueSize: 3, copyLimitBytes: 5 * 1024 * MiB, ...tuning };
    this.client = new S3Client({
      ...(settings.region && { region: settings.region }),
      ...(settings.endpoint && { endpoint: settings.endpoint }),
      forcePathStyle: settings.forcePathStyle,
      ...(settings.credentials && { credentials: settings.credentials }),
      // Other S3-compatible stores often reject the SDK's default trailing checksums
      // (aws-chunked bodies); with an endpoint set, send checksums only where S3 requires them.
      ...(settings.endpoint && { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }),
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 120_000 },
    });
  }

  private full(key: string): string {
    return this.root + checkKey(key);
  }

  private async send<T>(key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw s3Error(err, key);
    }
  }

  async put(key: string, body: Body): Promise<PutResult> {
    const Key = this.full(key);
    let size = 0;
    const counted = Readable.from(
      (async function* () {
        for await (const chunk of toBytes(body)) {
          size += chunk.byteLength;
          yield chunk;
        }
      })(),
      { objectMode: false },
    );
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: counted },
      partSize: Math.max(this.tuning.partSize, 5 * MiB),
      queueSize: this.tuning.queueSize,
      // Aborted below instead, so the caller sees why the put failed, not a failed abort.
      leavePartsOnError: true,
    });
    try {
      const out = await upload.done();
      return { key, size, etag: out.ETag ?? '' };
    } catch (err) {
      if (upload.uploadId) {
        // Best effort: a bucket lifecycle rule for incomplete multipart uploads is the backstop.
        await this.client
          .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: upload.uploadId }))
          .catch(() => {});
      }
      throw s3Error(err, key);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const Key = this.full(key);
    if (range) checkRange(range);
    const Range = range ? `bytes=${range.start}-${range.end ?? ''}` : undefined;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, ...(Range && { Range }) }));
      if (!(out.Body instanceof Readable)) throw new TypeError('the S3 client returned no stream');
      return out.Body;
    } catch (err) {
      // S3 answers 416 for a range starting at or past the end; the interface says: no bytes.
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (range && (e.name === 'InvalidRange' || e.$metadata?.httpStatusCode === 416)) {
        await this.stat(key); // still NotFound when the object is missing
        return Readable.from([]);
      }
      throw s3Error(err, key);
    }
  }

  async stat(key: string): Promise<ObjectInfo> {
    const Key = this.full(key);
    const out = await this.send(key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key })));
    return { key, size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0), etag: out.ETag ?? '' };
  }

  exists(key: string): Promise<boolean> {
    return existsByStat(() => this.stat(key));
  }

  async *list(prefix: string, { pageSize = 1000 }: { pageSize?: number } = {}): AsyncIterable<ObjectInfo> {
    const Prefix = this.root + checkPrefix(prefix);
    let ContinuationToken: string | undefined;
    do {
      const page = await this.send(prefix, () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix, MaxKeys: pageSize, ...(ContinuationToken && { ContinuationToken }) }),
        ),
      );
      for (const o of page.Contents ?? []) {
        if (!o.Key) continue;
        yield { key: o.Key.slice(this.root.length), size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0), etag: o.ETag ?? '' };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async move(from: string, to: string): Promise<void> {
    const source = this.full(from);
    const target = this.full(to);
    const { size } = await this.stat(from);
    if (source === target) return;
    if (size <= this.tuning.copyLimitBytes) {
      const CopySource = `${this.bucket}/${source.split('/').map(encodeURIComponent).join('/')}`;
      await this.send(from, () => this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: target, CopySource })));
    } else {
      await this.put(to, await this.get(from));
    }
    await this.delete(from);
  }

  async delete(key: string): Promise<void> {
    const Key = this.full(key);
    await this.send(key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })));
  }

  async presignPut(key: string, options: PresignOptions): Promise<PresignedPut> {
    const Key = this.full(key);
    const expiresIn = checkExpiry(options.expiresInSeconds);
    const signedAt = options.signedAt ?? new Date();
    const url = await this.send(key, () =>
      getSignedUrl(this.client, new PutObjectCommand({ Bucket: this.bucket, Key }), { expiresIn, signingDate: signedAt }),
    );
    return { url, method: 'PUT', expiresAt: new Date(signedAt.getTime() + expiresIn * 1000) };
  }

  /** One-key listing of the prefix: works with a policy that grants only the prefix (HeadBucket may not). */
  async check(): Promise<void> {
    await this.send('', () => this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.root, MaxKeys: 1 })));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
  }
}
