/**
 * loads/ — CSV files into their tables through the `loads` queue. Owns: uploads and the landing
 * folder, the landing inbox (scans, claims, done/ and failed/), the `loads` table (a load's state and checkpoint), queueing, the chunked CSV reader and
 * writer, the processor, and the demo data. May import: core/, pg/, storage/, jobs/, warehouse/ (its surface).
 */
export { startDemo, DEMO_ROWS } from './demo.js';
export { enqueueLoads } from './enqueue.js';
export { landingObject, resolveLandingFile } from './landing.js';
export { closeStorage, namedObject, storageOf } from './source.js';
export { LANDING_SCAN_JOB, type ScanResult } from './inbox.js';
export { landingStatus, requestScan, type FinishedFile, type LandingView, type ScanOutcome } from './inbox-status.js';
export { startLoadWorker } from './processor.js';
export { generate } from './sample.js';
export { startLoads, waitForLoads } from './start.js';
export { getLoad, getLoads, isTerminal, listLoads, rejectsOf, toView, type LoadRow, type LoadSource, type LoadStatus, type LoadView } from './store.js';
export { landCsvBody, landMultipart, uploadTarget, type Landed } from './uploads.js';
export { createUpload, getUpload, loadUpload, receiveUpload, type NewUpload, type UploadRow } from './presigned.js';
