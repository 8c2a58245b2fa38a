/**
 * backup/ — Avro backup sets and table restores, run on the `backups` queue. Owns: writing a set
 * from one snapshot, reading and verifying files, restore (rules, diff, apply), the schedule and
 * retention, and the processor. May import: core/, pg/, jobs/, warehouse/ (its surface).
 */
export { createBackup, type BackupOptions } from './create.js';
export { startBackupWorker } from './processor.js';
export { verifyBackup, type VerifyReport } from './read.js';
export { requestBackup, requestRestore, type Outcome } from './request.js';
export { restoreTable, type RestoreMode, type RestoreRequest, type RestoreResult } from './restore.js';
export { backupStorage, isBackupId, listBackups, readManifest, type BackupEntry, type Manifest } from './sets.js';
