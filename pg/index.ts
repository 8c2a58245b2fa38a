/**
 * pg/ — PostgreSQL plumbing shared by the features: the embedded server (PGlite) used when
 * DATABASE_URL is unset, bulk writes (`COPY … FROM STDIN`; on PGlite, COPY through its blob device
 * inside a transaction, else batched inserts), the one
 * binary COPY codec, and the rejects table. May import: core/.
 */
export {
  BinaryCopyReader,
  BinaryCopyToRecords,
  BinaryCopyWriter,
  fieldBytes,
  putFieldCount,
  putInt4,
  putInt8,
  putNull,
  putText,
  putTextBytes,
  putTimestamp,
  type CopyType,
  type CopyValue,
} from './copy-binary.js';
export { copyIn, isEmbeddedPostgres, type CopyColumn, type CopyFormat } from './copy-in.js';
export type { EmbeddedPostgres } from './embedded.js';

/**
 * See pg/embedded.ts. PGlite and its socket server are loaded when the embedded server starts,
 * not by every process that imports pg/ (a worker or a restore on a PostgreSQL server never needs them).
 */
export async function startEmbeddedPostgres(
  ...args: Parameters<typeof import('./embedded.js').startEmbeddedPostgres>
): Promise<import('./embedded.js').EmbeddedPostgres> {
  return (await import('./embedded.js')).startEmbeddedPostgres(...args);
}
export { isoToMicros, microsToIso, type Micros } from './timestamps.js';
export { DEFAULT_REJECT_RAW_MAX_BYTES, rawForStorage, storeRejects, type Reject, type RejectSource } from './rejects.js';
export { diffStatement, rowDiffers, upsertIfDifferent, type UpsertSource } from './upsert.js';
export {
  findMissingReferences,
  missingFlag,
  missingReference,
  referenceChecks,
  referencesTo,
  unknownReference,
  type ReferenceCheck,
} from './references.js';
