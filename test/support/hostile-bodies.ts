/**
 * The worst bodies POST /ingest can be sent within INGEST_MAX_BYTES (5 MiB): each aims at one way
 * a parser can be made to spend memory or time out of proportion. Shared by the hostile-input
 * suite and `npm run bench:ingest-hostile`.
 */
export interface HostileBody {
  name: string;
  type: 'text/csv' | 'application/json';
  /** The status a correct service answers. */
  status: 200 | 400 | 413;
  make(): Buffer;
}

const M = 5 * 1024 * 1024;

export const WORST_INGEST_BODIES: HostileBody[] = [
  { name: 'CSV: 5 MiB of "a\\n" (2.6M one-field records)', type: 'text/csv', status: 413, make: () => Buffer.from('a\n'.repeat(M / 2 - 8)) },
  { name: 'CSV: one 5 MiB field', type: 'text/csv', status: 200, make: () => Buffer.from('1,' + 'x'.repeat(M - 16) + '\n') },
  { name: 'CSV: one 5 MiB quoted field', type: 'text/csv', status: 200, make: () => Buffer.from('1,"' + 'x'.repeat(M - 16) + '"\n') },
  { name: 'CSV: 5 MiB of commas (one record, 5M fields)', type: 'text/csv', status: 200, make: () => Buffer.from(','.repeat(M - 8)) },
  {
    name: 'CSV: 1000 records of 5 KiB names full of NUL bytes',
    type: 'text/csv',
    status: 200,
    make: () => Buffer.from(Array.from({ length: 1000 }, (_, i) => `${i + 1},${'n\u0000'.repeat(2600)}`).join('\n')),
  },
  { name: 'JSON: 5 MiB of "[" (deep nesting)', type: 'application/json', status: 400, make: () => Buffer.from('['.repeat(M - 8)) },
  {
    name: 'JSON: 200k rows (413 at the 1001st)',
    type: 'application/json',
    status: 413,
    make: () => Buffer.from(JSON.stringify(Array.from({ length: 200_000 }, (_, i) => ({ id: i + 1, job: 'j' }))).slice(0, M - 8)),
  },
  { name: 'JSON: one 5 MiB string', type: 'application/json', status: 200, make: () => Buffer.from(JSON.stringify([{ id: 1, job: 'x'.repeat(M - 40) }])) },
  {
    name: 'JSON: a 5 MiB string of \\u escapes (lone surrogates)',
    type: 'application/json',
    status: 200,
    make: () => Buffer.from('[{"id":1,"job":"' + '\\ud800'.repeat((M - 40) / 6) + '"}]'),
  },
  {
    name: 'JSON: one row with 650k keys',
    type: 'application/json',
    status: 200,
    make: () => Buffer.from('[{' + Array.from({ length: (M - 16) / 8 }, (_, i) => `"k":${i % 10},`).join('') + '"id":1}]'),
  },
  {
    name: 'JSON: a 2.6M-element array as a value',
    type: 'application/json',
    status: 200,
    make: () => Buffer.from('[{"id":1,"job":[' + '1,'.repeat(M / 2 - 16) + '1]}]'),
  },
  {
    name: 'JSON: 1000 rows of 5 KiB with a key "\\u0000"',
    type: 'application/json',
    status: 200,
    make: () => Buffer.from(JSON.stringify(Array.from({ length: 1000 }, (_, i) => ({ id: i + 1, job: 'x'.repeat(5000), '\u0000': 1 })))),
  },
];
