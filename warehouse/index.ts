/**
 * warehouse/ — the analytical copy. Owns: change export from PostgreSQL to Parquet, the DuckDB
 * star schema and its atomic publish, compaction, the analytics queries, the refresh processor,
 * and the one way to ask for a refresh after a write. May import: core/, pg/, jobs/.
 */
export { departmentsAboveMean, hiresByQuarter, tableCounts, type DepartmentAboveMeanRow, type HiresByQuarterRow } from './analytics.js';
export { layoutOf, type WarehouseLayout } from './layout.js';
export { startWarehouseWorker } from './processor.js';
export { sharedReader, WarehouseNotReadyError, type WarehouseInfo, type WarehouseReader } from './reader.js';
export { publishedFollower } from './remote.js';
export { refreshWarehouse, type RefreshResult } from './refresh.js';
export { REFRESH_DEDUP_ID, refreshNow, requestWarehouseRefresh, type RefreshOutcome } from './request.js';
export { warehouseStatus, type WarehouseStatus } from './status.js';
