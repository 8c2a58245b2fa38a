#!/usr/bin/env node
/**
 * Compiles the service into dist/ (tsc with tsconfig.build.json) and copies beside it the files
 * the compiled code reads at run time, so dist/ mirrors the source tree. `npm install` runs it
 * (the `prepare` script, with --clean); `npm start` runs it again only when a source file is
 * newer than the last build (see isStale). Plain JavaScript: it must run before anything is built.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DIST = path.join(ROOT, 'dist');
/** Written after a good build, with the time the build started (a file saved during it is newer). */
const STAMP = path.join(DIST, '.built');
/** Read at run time relative to a module (new URL('../…', import.meta.url)): copied into dist/. */
const ASSETS = ['sql/migrations', 'api/public'];
/**
 * What the build reads: the compiler settings, the compiled folders (tsconfig.build.json's
 * `include`, read from it so a new folder cannot be forgotten here) and the run-time assets.
 */
const SOURCES = ['tsconfig.json', 'tsconfig.build.json', ...buildIncludes(), ...ASSETS];

function buildIncludes() {
  try {
    const text = readFileSync(path.join(ROOT, 'tsconfig.build.json'), 'utf8');
    // The file has line comments (tsconfig is JSONC); none of its strings contains `//`.
    return JSON.parse(text.replace(/^\s*\/\/.*$/gm, '')).include ?? [];
  } catch {
    return []; // a production image has no sources: nothing is ever stale there
  }
}

function newestMtime(file) {
  let st;
  try {
    st = statSync(file);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs; // a deleted or renamed file changes its folder's mtime
  for (const name of readdirSync(file)) newest = Math.max(newest, newestMtime(path.join(file, name)));
  return newest;
}

/**
 * True when dist/ is missing or older than a source file. Takes a few milliseconds. Never true
 * without the sources (a production image holds dist/ only): there is nothing to build from.
 */
export function isStale() {
  if (!existsSync(path.join(ROOT, 'main.ts'))) return false;
  let built;
  try {
    built = statSync(STAMP).mtimeMs;
  } catch {
    return true;
  }
  return SOURCES.some((s) => newestMtime(path.join(ROOT, s)) > built);
}

/** The TypeScript compiler, or undefined where dev dependencies are not installed. */
function tscPath() {
  try {
    return createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    return undefined;
  }
}

export function canBuild() {
  return tscPath() !== undefined;
}

/** Compiles and copies the assets; throws with the compiler's exit code on a type error. */
export function build({ clean = false } = {}) {
  const tsc = tscPath();
  if (!tsc) throw new Error('TypeScript is not installed (dev dependencies omitted): cannot build dist/');
  const started = new Date();
  if (clean) rmSync(DIST, { recursive: true, force: true });
  const run = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' });
  if (run.status !== 0) throw new Error(`tsc failed (exit ${run.status ?? run.signal}): dist/ is not up to date`);
  for (const dir of ASSETS) {
    rmSync(path.join(DIST, dir), { recursive: true, force: true });
    cpSync(path.join(ROOT, dir), path.join(DIST, dir), { recursive: true });
  }
  mkdirSync(DIST, { recursive: true });
  writeFileSync(STAMP, `${started.toISOString()}\n`);
  utimesSync(STAMP, started, started);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = new Set(process.argv.slice(2));
  if (!canBuild() && existsSync(STAMP)) {
    // `npm ci --omit=dev` runs `prepare` too: keep the dist/ that a full install built.
    process.stderr.write('build: TypeScript is not installed; keeping the existing dist/\n');
  } else if (!canBuild()) {
    process.stderr.write('build: TypeScript is not installed (dev dependencies omitted); dist/ not built. Run `npm install` with dev dependencies, or use an image that ships dist/.\n');
  } else if (!args.has('--if-stale') || isStale()) {
    try {
      build({ clean: args.has('--clean') });
    } catch (err) {
      process.stderr.write(`build: ${err.message}\n`);
      process.exit(1);
    }
  }
}
