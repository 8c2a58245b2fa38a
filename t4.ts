import { ChunkReader } from './worker/load-reader.js';
import { TABLES } from './core/tables.js';
const r = await ChunkReader.open(process.argv[2]!, TABLES[process.argv[3] as 'jobs'], 0, 1, Number(process.argv[4] ?? 3));
const t0 = performance.now(); let rows = 0, rej = 0, n = 0;
for (;;) { const c = await r.next(); n++; rows += c.rowsRead; rej += c.rejects.length;
  if (process.argv[5]) console.log(JSON.stringify({ ...c, refs: undefined, starts: undefined, ends: undefined, lines: undefined }));
  if (c.final) break; }
console.log({ rows, rej, chunks: n, ms: Math.round(performance.now() - t0), rss: process.memoryUsage().rss >> 20 });
