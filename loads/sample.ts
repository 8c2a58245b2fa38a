/**
 * Sample data in the challenge's format (no header, LF, ISO 8601 UTC date-times), generated
 * deterministically from a seed and streamed so any size fits. Used by `npm start -- --demo`,
 * `npm run gen` and the benchmarks.
 *
 * Some good rows carry quoted names (a comma, or a CRLF inside quotes) so loads meet real quoting;
 * `badShare` of the hired_employees rows break one rule each (missing field, wrong width,
 * impossible date, unknown department, bad id, blank name), as the challenge file does.
 */
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

/** A deterministic pseudo-random generator (mulberry32), so runs are comparable. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const DEPARTMENTS = [
  'Product Management', 'Sales', 'Research and Development', 'Business Development', 'Engineering',
  'Human Resources', 'Services', 'Support', 'Marketing', 'Training', 'Legal', 'Accounting',
];
const JOB_WORDS = ['Marketing', 'Sales', 'Software', 'Data', 'Research', 'Account', 'Support', 'Quality', 'Legal', 'Finance'];
const JOB_ROLES = ['Assistant', 'Engineer', 'Analyst', 'Manager', 'Coordinator', 'Specialist', 'Director', 'Associate'];
const LEVELS = ['', ' I', ' II', ' III', ' IV'];
const FIRST = ['Harold', 'Ty', 'Lyman', 'Thia', 'Ludvig', 'Cirstoforo', 'Beltran', 'Ana', 'Marta', 'José', 'Zoë', 'Kenji', 'Amara', 'Liam', 'Noor', 'Sven'];
const LAST = ['Vogt', 'Hofer', 'Hadye', 'Morican', 'Norwood', 'Martinetto', 'Natte', 'García', 'Okafor', 'Schmidt', 'Tanaka', 'Dubois', 'Rossi', 'Nowak'];
export const JOB_COUNT = 183;

async function writeLines(file: string, count: number, line: (i: number) => string): Promise<void> {
  const out: WriteStream = createWriteStream(file);
  let buf = '';
  for (let i = 1; i <= count; i++) {
    buf += line(i);
    if (buf.length > 1 << 16) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'finish');
}

const pad = (n: number) => (n < 10 ? '0' : '') + n;

export interface GenOptions {
  rows: number;
  out: string;
  badShare?: number;
  seed?: number;
}

export async function generate({ rows, out, badShare = 0, seed = 42 }: GenOptions): Promise<void> {
  await mkdir(out, { recursive: true });
  const rand = rng(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)]!;
  await writeLines(path.join(out, 'departments.csv'), DEPARTMENTS.length, (i) => `${i},${DEPARTMENTS[i - 1]}\n`);
  await writeLines(path.join(out, 'jobs.csv'), JOB_COUNT, (i) => {
    const word = JOB_WORDS[i % JOB_WORDS.length]!;
    const role = JOB_ROLES[Math.floor(i / JOB_WORDS.length) % JOB_ROLES.length]!;
    return `${i},${word} ${role}${LEVELS[Math.floor(i / 80) % LEVELS.length]}\n`;
  });
  const start = Date.UTC(2020, 0, 1) / 1000;
  await writeLines(path.join(out, 'hired_employees.csv'), rows, (i) => {
    let name = `${pick(FIRST)} ${pick(LAST)}`;
    const q = rand();
    if (q < 0.002) name = `"${name}, Jr."`;
    else if (q < 0.003) name = `"${name}\r\n(rehired)"`;
    const d = new Date((start + Math.floor(rand() * 3 * 365 * 86400)) * 1000);
    let dt = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`;
    let dep = String(1 + Math.floor(rand() * DEPARTMENTS.length));
    let job = String(1 + Math.floor(rand() * JOB_COUNT));
    let id = String(i);
    if (badShare > 0 && rand() < badShare) {
      switch (Math.floor(rand() * 7)) {
        case 0: dep = ''; break;
        case 1: job = ''; break;
        case 2: dt = '2021-02-30T10:00:00Z'; break;
        case 3: dep = String(DEPARTMENTS.length + 100); break;
        case 4: id = `x${i}`; break;
        case 5: name = ' '; break;
        case 6: return `${id},${name},${dt},${dep}\n`;
      }
    }
    return `${id},${name},${dt},${dep},${job}\n`;
  });
}
