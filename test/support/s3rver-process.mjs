// The S3-compatible test server (s3rver) as a process of its own, started by test/support/s3.ts
// with --openssl-legacy-provider: s3rver makes ListObjectsV2 continuation tokens with DES, which
// OpenSSL 3 only offers there. Listens on 127.0.0.1 (a free port), prints {"port"} once, and
// exits when its stdin closes (the test process ended) or on SIGTERM.
import S3rver from 's3rver';

const [directory, bucket] = process.argv.slice(2);
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory,
  configureBuckets: [{ name: bucket, configs: [] }],
});
const { port } = await server.run();
process.stdout.write(`${JSON.stringify({ port })}\n`);

let closing = false;
const stop = () => {
  if (closing) return;
  closing = true;
  server.close().then(() => process.exit(0), () => process.exit(1));
};
process.stdin.on('end', stop).resume();
process.on('SIGTERM', stop);
