import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The challenge's three CSV files, byte for byte, kept in the repository so a bare clone can test. */
export const CHALLENGE_DIR = fileURLToPath(new URL('../fixtures/challenge/', import.meta.url));

export async function challengeLines(table: string): Promise<string[]> {
  const text = await readFile(path.join(CHALLENGE_DIR, `${table}.csv`), 'utf8');
  return text.split(/\r?\n/).filter((l) => l.length > 0);
}

/** Splits lines into text/csv bodies of at most `size` lines. */
export function chunks(lines: string[], size = 1000): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i += size) out.push(lines.slice(i, i + size).join('\n') + '\n');
  return out;
}

type Fetcher = { request(input: string, init?: RequestInit): Response | Promise<Response> };

export function postJson(app: Fetcher, url: string, body: unknown, headers: Record<string, string> = {}) {
  return app.request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export function postCsv(app: Fetcher, url: string, body: string, headers: Record<string, string> = {}) {
  return app.request(url, { method: 'POST', headers: { 'content-type': 'text/csv', ...headers }, body });
}

/** Posts the challenge files through POST /ingest as text/csv, 1000 lines a request; every answer must be 200. */
export async function ingestChallenge(
  app: Fetcher,
  tables: readonly string[] = ['departments', 'jobs', 'hired_employees'],
): Promise<void> {
  for (const table of tables) {
    for (const body of chunks(await challengeLines(table))) {
      const res = await postCsv(app, `/ingest/${table}`, body);
      if (res.status !== 200) throw new Error(`POST /ingest/${table} answered ${res.status}: ${await res.text()}`);
    }
  }
}

/** What the challenge data must give for GET /analytics/departments-above-mean?year=2021. */
export const CHALLENGE_ABOVE_MEAN_2021: [string, number][] = [
  ['Support', 216],
  ['Engineering', 205],
  ['Human Resources', 201],
  ['Services', 200],
  ['Business Development', 185],
  ['Research and Development', 148],
  ['Marketing', 142],
];
