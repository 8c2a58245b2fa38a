/**
 * `hr` — the command line for a running service. A thin caller of the HTTP API: every command
 * is one or a few requests. Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 service
 * unreachable or 5xx, 4 rows rejected (with --strict).
 */
import { once } from 'node:events';
import { createReadStream, openAsBlob } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliError, Client, EXIT } from './client.js';
import { csv, progressLine, ProgressWriter, table } from './format.js';

const TABLES = ['departments', 'jobs', 'hired_employees'];

interface Command {
  usage: string;
  summary: string;
  options?: ParseArgsConfig['options'];
  run(client: Client, args: { values: Record<string, unknown>; positionals: string[] }): Promise<number>;
}

interface Load {
  id: string;
  table: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed';
  rowsRead: number;
  inserted: number;
  updated: number;
  unchanged?: number;
  rejected: number;
  error: string | null;
}

const out = (text: string) => process.stdout.write(`${text}\n`);
const print = (rows: Record<string, unknown>[], asCsv: unknown, columns?: string[]) =>
  out(asCsv ? csv(rows, columns) : table(rows, columns));

/** Data records in a CSV file, roughly: its line breaks (good enough for a progress bar). */
async function countLines(file: string): Promise<number> {
  let lines = 0;
  let last = 10;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
    last = chunk[chunk.length - 1] ?? last;
  }
  return last === 10 ? lines : lines + 1;
}

function tableOf(file: string, given: unknown): string {
  const name = typeof given === 'string' ? given : path.basename(file).replace(/\.csv$/i, '');
  if (!TABLES.includes(name)) {
    throw new CliError(`cannot tell the table of ${file}; name it ${TABLES.map((t) => `${t}.csv`).join(', ')} or pass --table`, EXIT.usage);
  }
  return name;
}

async function follow(client: Client, loads: Load[], totals: Map<string, number>): Promise<Load[]> {
  const progress = new ProgressWriter();
  const started = Date.now();
  let current = loads;
  for (;;) {
    current = await Promise.all(current.map((l) => client.json<Load>('GET', `/loads/${l.id}`)));
    const done = current.reduce((s, l) => s + l.rowsRead, 0);
    const total = current.reduce((s, l) => s + (totals.get(l.id) ?? 0), 0);
    const rejected = current.reduce((s, l) => s + l.rejected, 0);
    const finished = current.every((l) => l.status === 'succeeded' || l.status === 'failed');
    const line = progressLine({
      label: current.length === 1 ? `${current[0]!.table}` : `${current.filter((l) => l.status === 'succeeded' || l.status === 'failed').length}/${current.length} loads`,
      done,
      total: finished ? done : total,
      rejected,
      elapsedSeconds: (Date.now() - started) / 1000,
    });
    if (finished) {
      progress.finish(line);
      return current;
    }
    progress.update(line);
    await new Promise((r) => setTimeout(r, 500));
  }
}

function loadResult(loads: Load[], strict: unknown): number {
  print(
    loads.map((l) => ({ id: l.id, table: l.table, status: l.status, rowsRead: l.rowsRead, inserted: l.inserted, updated: l.updated, unchanged: l.unchanged ?? 0, rejected: l.rejected })),
    false,
  );
  for (const l of loads.filter((x) => x.status === 'failed')) process.stderr.write(`load ${l.id} (${l.table}) failed: ${l.error}\n`);
  for (const l of loads.filter((x) => x.rejected > 0)) process.stderr.write(`see the rejects with: hr rejects ${l.id}\n`);
  if (loads.some((l) => l.status === 'failed')) return EXIT.failed;
  if (strict && loads.some((l) => l.rejected > 0)) return EXIT.rejects;
  return EXIT.ok;
}

interface Upload {
  uploadId: string;
  url: string;
  method: 'PUT';
  expiresAt: string;
}

/** Whether the service hands out upload URLs (GET /health says so; an older service does not). */
async function presignedUploads(client: Client): Promise<boolean> {
  try {
    const res = await client.request('GET', '/health');
    const health = (await res.json()) as { storage?: { presignedUploads?: boolean } };
    return health.storage?.presignedUploads === true;
  } catch {
    return false; // degraded (503) or too old to say: the plain upload says what is wrong
  }
}

const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;

/**
 * PUTs a file to a presigned URL, streamed, with a progress line. No API key goes with it: the
 * URL's signature authorizes the PUT (and a bucket would refuse a second authorization).
 */
async function putFile(label: string, file: string, url: string): Promise<void> {
  const size = (await stat(file)).size;
  const progress = new ProgressWriter();
  const started = Date.now();
  let sent = 0;
  const line = () => {
    const frac = size > 0 ? sent / size : 1;
    const filled = Math.round(frac * 24);
    const rate = sent / Math.max(0.001, (Date.now() - started) / 1000);
    return `uploading ${label}  [${'#'.repeat(filled)}${'.'.repeat(24 - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${mib(sent)}/${mib(size)}  ${mib(rate)}/s`;
  };
  const target = new URL(url);
  const { request } = target.protocol === 'https:' ? await import('node:https') : await import('node:http');
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(target, { method: 'PUT', headers: { 'content-length': String(size) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (text.length < 4096) text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(new CliError(`cannot send ${file} to the upload URL (${err.code ?? err.message})`, EXIT.unavailable)),
    );
    const input = createReadStream(file);
    input.on('data', (chunk) => {
      sent += chunk.length;
      progress.update(line());
    });
    input.on('error', (err) => req.destroy(err));
    input.pipe(req);
  });
  if (status < 200 || status >= 300) {
    // The service answers JSON; a bucket answers XML with a Code and a Message.
    let reason = body.slice(0, 300);
    try {
      reason = (JSON.parse(body) as { error?: { message?: string } }).error?.message ?? reason;
    } catch {
      const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
      const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1];
      if (code || message) reason = [code, message].filter(Boolean).join(': ');
    }
    throw new CliError(`the upload of ${file} was refused: ${status}: ${reason}`, status >= 500 ? EXIT.unavailable : EXIT.failed);
  }
  progress.finish(line());
}

/**
 * The presigned flow: each file is PUT to its own URL, then loaded. hired_employees sent with
 * departments or jobs is loaded once they have finished (as a multipart upload does), and not at
 * all when one of them failed.
 */
async function presignedLoad(client: Client, files: { file: string; table: string }[], values: Record<string, unknown>): Promise<number> {
  const uploads: { file: string; table: string; id: string }[] = [];
  for (const f of files) {
    const bytes = (await stat(f.file)).size;
    const upload = await client.json<Upload>('POST', '/uploads', { table: f.table, bytes });
    await putFile(`${f.table} (${path.basename(f.file)})`, f.file, upload.url);
    uploads.push({ ...f, id: upload.uploadId });
  }
  const start = (u: { id: string }) => client.json<Load>('POST', `/uploads/${u.id}/load`);
  const first = uploads.filter((u) => u.table !== 'hired_employees' || uploads.length === 1);
  const later = uploads.filter((u) => !first.includes(u));
  const started = await Promise.all(first.map(start));
  if (values['no-follow'] && later.length === 0) {
    print(started.map((l) => ({ id: l.id, table: l.table, status: l.status })), false);
    return EXIT.ok;
  }
  const totals = new Map<string, number>();
  await Promise.all(uploads.map(async (u) => totals.set(u.id, await countLines(u.file))));
  let loads = await follow(client, started, totals);
  if (later.length > 0) {
    const failed = loads.filter((l) => l.status === 'failed');
    if (failed.length > 0) {
      for (const u of later) process.stderr.write(`${u.table} not loaded: the ${failed.map((f) => f.table).join(' and ')} load failed; fix it and load again\n`);
      return Math.max(loadResult(loads, values.strict), EXIT.failed);
    }
    const next = await Promise.all(later.map(start));
    loads = [...loads, ...(values['no-follow'] ? next : await follow(client, next, totals))];
  }
  return loadResult(loads, values.strict);
}

/** A metric from GET /analytics/{endpoint}, as an aligned table or CSV. */
function metric(name: string, endpoint: string, summary: string, columns: string[]): Command {
  return {
    usage: `hr ${name} [--year 2021] [--csv]`,
    summary,
    options: { year: { type: 'string' }, csv: { type: 'boolean' } },
    async run(client, { values }) {
      const rows = await client.json<Record<string, unknown>[]>('GET', `/analytics/${endpoint}?year=${values.year ?? 2021}`);
      print(rows, values.csv, columns);
      return EXIT.ok;
    },
  };
}

/** A command that prints what one GET answers, as JSON. */
function showJson(name: string, route: string, summary: string): Command {
  return {
    usage: `hr ${name}`,
    summary,
    async run(client) {
      out(JSON.stringify(await client.json('GET', route), null, 2));
      return EXIT.ok;
    },
  };
}

/** Copies a streamed answer to stdout as it arrives; a reader that went away (`| head`) ends the command quietly. */
async function streamToStdout(body: ReadableStream<Uint8Array> | null): Promise<void> {
  if (!body) return;
  // Writes already queued fail after the reader is gone: exit then, which also drops the HTTP
  // connection so the server stops its export.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT.ok);
    throw err;
  });
  for await (const chunk of body) {
    if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
  }
}

const ROW_FILTERS = { department: 'department_id', job: 'job_id', from: 'from', to: 'to' } as const;

/** `hr rows`: a page of a table, every page, one row, or the CSV export. */
const rows: Command = {
  usage: 'hr rows TABLE [ID] [--department N] [--job N] [--from ISO] [--to ISO] [--after CURSOR] [--limit N] [--all] [--csv]',
  summary: 'Read a table: one page as an aligned table, --all pages, or --csv the whole selection streamed',
  options: {
    department: { type: 'string' },
    job: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    after: { type: 'string' },
    limit: { type: 'string' },
    all: { type: 'boolean' },
    csv: { type: 'boolean' },
  },
  async run(client, { values, positionals }) {
    const [t, id, ...extra] = positionals;
    if (!t || !TABLES.includes(t)) throw new CliError(`name the table: ${TABLES.join(', ')}`, EXIT.usage);
    if (extra.length > 0) throw new CliError(`unexpected ${extra.join(' ')}`, EXIT.usage);
    const query = new URLSearchParams();
    for (const [flag, param] of Object.entries(ROW_FILTERS)) {
      const v = values[flag];
      if (typeof v !== 'string') continue;
      if (t !== 'hired_employees') throw new CliError(`--${flag} filters hired_employees only`, EXIT.usage);
      query.set(param, v);
    }
    if (id !== undefined) {
      if (query.size > 0 || values.after || values.limit || values.all) throw new CliError('an ID reads one row: no filters, --after, --limit or --all', EXIT.usage);
      const row = await client.json<Record<string, unknown>>('GET', `/${t}/${encodeURIComponent(id)}`);
      print([row], values.csv);
      return EXIT.ok;
    }
    if (typeof values.after === 'string') query.set('after', values.after);
    if (values.csv) {
      // The server streams the whole selection from PostgreSQL's COPY; pages and --limit do not apply.
      query.set('format', 'csv');
      const res = await client.request('GET', `/${t}?${query}`);
      await streamToStdout(res.body);
      return EXIT.ok;
    }
    const limit = typeof values.limit === 'string' ? values.limit : values.all ? '1000' : undefined;
    if (limit !== undefined) query.set('limit', limit);
    const collected: Record<string, unknown>[] = [];
    for (;;) {
      const page = await client.json<{ rows: Record<string, unknown>[]; next: string | null }>('GET', `/${t}?${query}`);
      collected.push(...page.rows);
      if (page.next === null) break;
      query.set('after', page.next);
      if (!values.all) {
        out(table(collected));
        process.stderr.write(`more rows follow: add --after ${page.next} (or --all, or --csv for everything)\n`);
        return EXIT.ok;
      }
    }
    out(table(collected));
    return EXIT.ok;
  },
};

const commands: Record<string, Command> = {
  load: {
    usage: 'hr load FILE... [--table T] [--no-follow] [--strict] [--no-presign]',
    summary: 'Upload CSV files (to a presigned URL when the service offers one) and follow the loads with a progress bar',
    options: { table: { type: 'string' }, 'no-follow': { type: 'boolean' }, strict: { type: 'boolean' }, 'no-presign': { type: 'boolean' } },
    async run(client, { values, positionals }) {
      if (positionals.length === 0) throw new CliError('name at least one CSV file', EXIT.usage);
      if (values.table && positionals.length > 1) throw new CliError('--table goes with a single file', EXIT.usage);
      const files = positionals.map((f) => ({ file: f, table: tableOf(f, values.table) }));
      for (const f of files) await stat(f.file).catch(() => { throw new CliError(`no such file: ${f.file}`, EXIT.usage); });
      if (!values['no-presign'] && (await presignedUploads(client))) return presignedLoad(client, files, values);
      let loads: Load[];
      if (files.length === 1) {
        const f = files[0]!;
        const res = await client.request('POST', `/loads?table=${f.table}`, { body: await openAsBlob(f.file), headers: { 'content-type': 'text/csv' } });
        loads = [(await res.json()) as Load];
      } else {
        const form = new FormData();
        for (const f of files) form.append(f.table, await openAsBlob(f.file), path.basename(f.file));
        const res = await client.request('POST', '/loads', { body: form });
        loads = ((await res.json()) as { loads: Load[] }).loads;
      }
      if (values['no-follow']) {
        print(loads.map((l) => ({ id: l.id, table: l.table, status: l.status })), false);
        return EXIT.ok;
      }
      const totals = new Map<string, number>();
      await Promise.all(loads.map(async (l, i) => totals.set(l.id, await countLines(files[i]!.file))));
      return loadResult(await follow(client, loads, totals), values.strict);
    },
  },
  loads: {
    usage: 'hr loads [--csv]',
    summary: 'List recent loads, newest first',
    options: { csv: { type: 'boolean' } },
    async run(client, { values }) {
      const body = await client.json<Load[] | { loads: Load[] }>('GET', '/loads');
      const loads = Array.isArray(body) ? body : body.loads;
      print(loads as unknown as Record<string, unknown>[], values.csv, ['id', 'table', 'status', 'source', 'sourceName', 'rowsRead', 'inserted', 'updated', 'unchanged', 'rejected', 'createdAt']);
      return EXIT.ok;
    },
  },
  rejects: {
    usage: 'hr rejects LOAD_ID [--json]',
    summary: "Show a load's rejected lines with their reasons",
    options: { json: { type: 'boolean' } },
    async run(client, { values, positionals }) {
      const id = positionals[0];
      if (!id) throw new CliError('name the load id', EXIT.usage);
      const res = await client.request('GET', `/loads/${encodeURIComponent(id)}/rejects`);
      const text = await res.text();
      if (values.json) {
        process.stdout.write(text);
        return EXIT.ok;
      }
      const rows = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { line: number; raw: string; errors: { field: string | null; message: string }[] });
      print(rows.map((r) => ({ line: r.line, reasons: r.errors.map((e) => `${e.field ?? 'row'} ${e.message}`).join('; '), raw: r.raw })), false);
      return EXIT.ok;
    },
  },
  refresh: {
    usage: 'hr refresh [--no-wait]',
    summary: 'Refresh the warehouse (waits for it unless --no-wait)',
    options: { 'no-wait': { type: 'boolean' } },
    async run(client, { values }) {
      const body = await client.json<Record<string, unknown>>('POST', `/warehouse/refresh${values['no-wait'] ? '' : '?wait=true'}`);
      out(JSON.stringify(body, null, 2));
      return EXIT.ok;
    },
  },
  warehouse: showJson('warehouse', '/warehouse', 'Show when the warehouse was refreshed, its row counts and file path'),
  'hires-by-quarter': metric(
    'hires-by-quarter',
    'hires-by-quarter',
    'Hires per department and job by quarter of a year',
    ['department', 'job', 'q1', 'q2', 'q3', 'q4'],
  ),
  'above-mean': metric(
    'above-mean',
    'departments-above-mean',
    'Departments that hired more than the mean in a year',
    ['id', 'department', 'hired'],
  ),
  backup: {
    usage: 'hr backup [--tables departments,jobs] [--no-wait]',
    summary: 'Back up tables to Avro files (all three by default)',
    options: { tables: { type: 'string' }, 'no-wait': { type: 'boolean' } },
    async run(client, { values }) {
      const tables = typeof values.tables === 'string' ? values.tables.split(',').map((t) => t.trim()) : undefined;
      const body = await client.json<unknown>('POST', `/backups${values['no-wait'] ? '' : '?wait=true'}`, tables ? { tables } : {});
      if (Array.isArray(body)) print(body as Record<string, unknown>[], false, ['id', 'table', 'rows', 'bytes', 'file']);
      else out(JSON.stringify(body, null, 2));
      return EXIT.ok;
    },
  },
  backups: {
    usage: 'hr backups [--table T] [--csv]',
    summary: 'List backups, newest first',
    options: { table: { type: 'string' }, csv: { type: 'boolean' } },
    async run(client, { values }) {
      const body = await client.json<unknown>('GET', `/backups${values.table ? `?table=${values.table}` : ''}`);
      const rows = (Array.isArray(body) ? body : (body as { backups: unknown[] }).backups) as Record<string, unknown>[];
      print(rows, values.csv, ['id', 'table', 'rows', 'bytes', 'createdAt']);
      return EXIT.ok;
    },
  },
  restore: {
    usage: 'hr restore TABLE [--backup ID] [--mode replace|merge]',
    summary: 'Restore a table from a backup (the newest by default)',
    options: { backup: { type: 'string' }, mode: { type: 'string' } },
    async run(client, { values, positionals }) {
      const t = positionals[0];
      if (!t || !TABLES.includes(t)) throw new CliError(`name the table: ${TABLES.join(', ')}`, EXIT.usage);
      if (values.mode && values.mode !== 'replace' && values.mode !== 'merge') throw new CliError('--mode is replace or merge', EXIT.usage);
      const body = await client.json<Record<string, unknown>>('POST', `/backups/${t}/restore`, {
        ...(values.backup ? { backup: values.backup } : {}),
        ...(values.mode ? { mode: values.mode } : {}),
      });
      print([body], false);
      return EXIT.ok;
    },
  },
  rows,
  health: showJson('health', '/health', 'Is the service up, and PostgreSQL and Redis behind it?'),
};

const GLOBAL = 'Global options: --url URL (or HR_URL; default http://localhost:3000), --api-key KEY (or HR_API_KEY), --help';

function help(): string {
  const w = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'hr — command line for the HR hiring data store',
    '',
    'Commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(w)}  ${c.summary}`),
    '',
    GLOBAL,
    'Run "hr COMMAND --help" for a command\'s options.',
    'Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 service unreachable or 5xx, 4 rows rejected (with --strict).',
  ].join('\n');
}

export async function main(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  // The command is the first word that is neither an option nor a global option's value.
  const at = argv.findIndex((a, i) => !a.startsWith('-') && !['--url', '--api-key'].includes(argv[i - 1] ?? ''));
  const name = at >= 0 ? argv[at] : undefined;
  if (!name || argv.includes('--help') && !commands[name]) {
    out(help());
    return name || argv.includes('--help') ? EXIT.ok : EXIT.usage;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`unknown command "${name}"\n\n${help()}\n`);
    return EXIT.usage;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv.filter((_, i) => i !== at),
      allowPositionals: true,
      options: { ...command.options, url: { type: 'string' }, 'api-key': { type: 'string' }, help: { type: 'boolean' } },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\nusage: ${command.usage}\n`);
    return EXIT.usage;
  }
  if (parsed.values.help) {
    out(`${command.summary}\n\nusage: ${command.usage}\n${GLOBAL}`);
    return EXIT.ok;
  }
  const client = new Client({
    url: (parsed.values.url as string | undefined) ?? env.HR_URL ?? 'http://localhost:3000',
    apiKey: (parsed.values['api-key'] as string | undefined) ?? env.HR_API_KEY,
  });
  try {
    return await command.run(client, parsed as { values: Record<string, unknown>; positionals: string[] });
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`hr ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}
