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
export { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.js';
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
