import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

/** s3rver knows one account; it checks the access key id (not SigV4 signatures) and presigned expiry. */
export const S3RVER_KEY = 'S3RVER';

export interface TestBucket {
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  readonly bucket: string;
  /**
   * Settings for a process (or loadConfig) using the bucket under `prefix`: STORAGE_URL,
   * AWS_ENDPOINT_URL, the keys and a region. Path-style follows from AWS_ENDPOINT_URL.
   */
  env(prefix?: string): Record<string, string>;
  stop(): Promise<void>;
}

/**
 * An S3-compatible server (s3rver) on 127.0.0.1 and a free port, its files in a temp folder, with
 * one bucket made; run as a child process (see s3rver-process.mjs for why). Spawned service
 * processes reach it over loopback like the suite does. Stops with `stop()` or with the suite.
 */
export async function startTestBucket({ bucket = 'hr-test' }: { bucket?: string } = {}): Promise<TestBucket> {
  const directory = await mkdtemp(path.join(tmpdir(), 'hrs3-'));
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', path.join(import.meta.dirname, 's3rver-process.mjs'), directory, bucket],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([
    once(lines, 'line').then(([line]) => String(line)),
    exited.then(([code]) => {
      throw new Error(`s3rver exited (${code}) before listening`);
    }),
  ]);
  const { port } = JSON.parse(first) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  let stopped = false;
  return {
    endpoint,
    bucket,
    env: (prefix = '') => ({
      STORAGE_URL: `s3://${bucket}${prefix ? `/${prefix}` : ''}`,
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: S3RVER_KEY,
      AWS_SECRET_ACCESS_KEY: S3RVER_KEY,
      AWS_REGION: 'us-east-1',
    }),
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await rm(directory, { recursive: true, force: true });
    },
  };
}
