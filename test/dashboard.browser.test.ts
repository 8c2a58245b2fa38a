import { serve } from '@hono/node-server';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { CHALLENGE_DIR, ingestChallenge, postCsv, postJson } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

let s: TestServices;
let workers: Workers;
let server: ReturnType<typeof serve>;
let base: string;
let keyedPort: number;
const received: { method: string; path: string; status: number; site: string | null; origin: string | null }[] = [];
let browser: Browser;
/** The same service with API_KEY set, and a page of another site. */
let keyedServer: ReturnType<typeof serve>;
let keyedBase: string;
let evilServer: ReturnType<typeof serve>;
let evilPort: number;
const API_KEY = 'dashboard-test-key-0123456789';

function listen(fetch: (req: Request) => Response | Promise<Response>): Promise<{ server: ReturnType<typeof serve>; port: number }> {
  return new Promise((resolve) => {
    const server = serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve({ server, port: info.port }));
  });
}

/** A page on another site that tries what a hostile page would: a restore, a multipart load, a form post. */
const EVIL_PAGE = `<!doctype html><html><body>
<form id="f" method="post" enctype="application/x-www-form-urlencoded"><input name="mode" value="replace"></form>
<script>
window.attack = async (base) => {
  const out = [];
  const send = (url, init) => fetch(base + url, { method: 'POST', mode: 'no-cors', ...init }).then(() => out.push(url), (e) => out.push(url + ' ' + e));
  await send('/backups/jobs/restore');
  const form = new FormData();
  form.append('departments', new Blob(['900,Evil\\n'], { type: 'text/csv' }), 'd.csv');
  await send('/loads', { body: form });
  await send('/ingest/departments', { body: JSON.stringify([{ id: 901, department: 'Evil' }]), headers: { 'content-type': 'text/plain' } });
  return out;
};
</script></body></html>`;

beforeAll(async () => {
  s = await createTestServices();
  workers = await startWorkers(s);
  const app = createApp(s);
  await ingestChallenge(app);
  expect((await app.request('/warehouse/refresh?wait=true', { method: 'POST' })).status).toBeLessThan(300);
  const port = await new Promise<number>((resolve) => {
    // Records what reached the service and how it answered: the browser hides no-cors answers from the page.
    const fetch = async (req: Request) => {
      const res = await app.fetch(req);
      const h = req.headers;
      received.push({ method: req.method, path: new URL(req.url).pathname, status: res.status, site: h.get('sec-fetch-site'), origin: h.get('origin') });
      return res;
    };
    server = serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve(info.port));
  });
  base = `http://127.0.0.1:${port}`;
  ({ server: keyedServer, port: keyedPort } = await listen(createApp({ ...s, config: { ...s.config, API_KEY } }).fetch));
  keyedBase = `http://127.0.0.1:${keyedPort}`;
  ({ server: evilServer, port: evilPort } = await listen(() => new Response(EVIL_PAGE, { headers: { 'content-type': 'text/html' } })));
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
  await new Promise((r) => keyedServer?.close(r));
  await new Promise((r) => evilServer?.close(r));
  await workers?.close();
  await s?.cleanup();
});

/** Counts the pixels of an element's screenshot close to a CSS colour, using the browser's canvas. */
async function countPixels(page: import('playwright-core').Page, selector: string, rgb: [number, number, number]): Promise<number> {
  const png = (await page.locator(selector).screenshot()).toString('base64');
  return page.evaluate(
    async ({ png, rgb }) => {
      const img = new Image();
      img.src = `data:image/png;base64,${png}`;
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext('2d')!;
      ctx.drawImage(img, 0, 0);
      const data = ctx.getImageData(0, 0, img.width, img.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i]! - rgb[0]) < 12 && Math.abs(data[i + 1]! - rgb[1]) < 12 && Math.abs(data[i + 2]! - rgb[2]) < 12) n++;
      }
      return n;
    },
    { png, rgb },
  );
}

test('the dashboard draws both charts and the table from the challenge data', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${base}/?year=2021`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });

  // Hires by quarter: one stacked bar per department (12), segments in the four quarter colours.
  const segments = await page.locator('#hbq-chart svg rect').count();
  expect(segments).toBeGreaterThanOrEqual(12 * 3);
  expect(await page.locator('#hbq-table tbody tr').count()).toBe(933);
  await expect.poll(() => page.locator('#hbq-count').textContent()).toBe('933');

  // Above the mean: the seven departments, biggest first, and the mean line.
  const labels = await page.locator('#am-chart svg > text[text-anchor="end"]').allTextContents();
  expect(labels.slice(0, 7)).toEqual(['Support', 'Engineering', 'Human Resources', 'Services', 'Business Development', 'Research and Development', 'Marketing']);
  expect(await page.locator('#am-chart svg line[data-series="mean"]').count()).toBe(1);
  expect(await page.locator('#am-chart svg rect').count()).toBe(7);

  // What a person sees: the charts are painted in their colours (Q1 blue, Q4 red).
  expect(await countPixels(page, '#hbq-chart', [0x2f, 0x6f, 0xdb])).toBeGreaterThan(2000);
  expect(await countPixels(page, '#hbq-chart', [0xc8, 0x45, 0x5d])).toBeGreaterThan(2000);
  expect(await countPixels(page, '#am-chart', [0x2f, 0x6f, 0xdb])).toBeGreaterThan(2000);
  expect(errors).toEqual([]);

  // Another year redraws.
  await page.selectOption('#year', '2020');
  await page.waitForFunction(() => location.search === '?year=2020');
  await page.waitForSelector('#hbq-chart p, #hbq-chart svg');
  await page.close();
}, 60_000);

test('the API reference at /docs renders the operations with nothing fetched from outside the service', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  const elsewhere: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.protocol !== 'data:' && url.origin !== base) elsewhere.push(r.url());
  });
  await page.goto(`${base}/docs`);
  const ingest = page.locator('.opblock-summary', { hasText: '/ingest/{table}' }).filter({ hasText: 'POST' });
  await expect.poll(() => ingest.first().textContent(), { timeout: 15_000 }).toContain('Upsert a batch of 1 to 1000 rows');
  // The page is drawn: the operation's block is visible and painted, not only present in the DOM.
  expect(await ingest.first().isVisible()).toBe(true);
  await page.waitForLoadState('networkidle');
  expect(elsewhere).toEqual([]);
  expect(errors).toEqual([]);
  await page.close();
}, 60_000);

test('with API_KEY set, the dashboard asks for the key when a call answers 401, and keeps it for the tab', async () => {
  const csv = await readFile(path.join(CHALLENGE_DIR, 'hired_employees.csv'), 'utf8');
  const loaded = await postCsv({ request: (u, i) => fetch(keyedBase + u, i) }, '/loads?table=hired_employees&wait=true', csv, {
    authorization: `Bearer ${API_KEY}`,
  });
  expect(loaded.status).toBe(200);
  const load = (await loaded.json()) as { id: string; rejected: number };
  expect(load.rejected).toBeGreaterThan(0);

  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${keyedBase}/?year=2021`);
  // The charts, loads and backups are open: no prompt for them.
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
  expect(await page.locator('#key-dialog').isVisible()).toBe(false);
  expect(await page.locator('#hbq-table tbody tr').count()).toBe(933);

  // The rejected lines are row-level data: the first click asks for the key.
  await page.locator('button.show-rejects').first().click();
  await page.locator('#key-dialog').waitFor({ state: 'visible' });
  await page.fill('#key-input', 'a-wrong-key-0123456789');
  await page.click('#key-ok');
  await expect.poll(() => page.locator('#key-why').textContent()).toMatch(/refused/);
  await page.fill('#key-input', API_KEY);
  await page.click('#key-ok');
  await page.locator('#rejects-table tbody tr').first().waitFor();
  expect(await page.locator('#rejects-table tbody tr').count()).toBe(Math.min(200, load.rejected));
  expect(await page.locator('#rejects-table tbody tr').first().locator('td').nth(1).textContent()).not.toBe('');
  expect(await page.evaluate(() => sessionStorage.getItem('hr.apiKey'))).toBe(API_KEY);

  // Kept for the tab: after a reload the rejects show without asking again.
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await page.locator('button.show-rejects').first().click();
  await page.locator('#rejects-table tbody tr').first().waitFor();
  expect(await page.locator('#key-dialog').isVisible()).toBe(false);
  expect(errors).toEqual([]);
  await page.close();
}, 60_000);

test("a page of another site cannot restore, load or ingest through the visitor's browser; the service's own page can", async () => {
  const app = createApp(s);
  const backup = await postJson(app, '/backups?wait=true', { tables: ['jobs'] });
  expect(backup.status).toBe(200);
  expect((await postCsv(app, '/ingest/jobs', '1,Changed after the backup\n')).status).toBe(200);
  const loadsBefore = (await s.pool.query('SELECT count(*)::int AS n FROM loads')).rows[0].n as number;

  // localhost is another site than 127.0.0.1 (Sec-Fetch-Site: cross-site).
  const page = await browser.newPage();
  const mark = received.length;
  await page.goto(`http://localhost:${evilPort}/`);
  const sent = await page.evaluate((b) => (window as unknown as { attack: (b: string) => Promise<string[]> }).attack(b), base);
  expect(sent).toEqual(['/backups/jobs/restore', '/loads', '/ingest/departments']);
  // A plain HTML form posted to the restore route, as the oldest CSRF does.
  await page.evaluate((u) => {
    const f = document.getElementById('f') as HTMLFormElement;
    f.action = u;
    f.submit();
  }, `${base}/backups/jobs/restore`);
  await page.waitForURL(`${base}/backups/jobs/restore`);
  expect(await page.textContent('body')).toContain('forbidden');
  const attempts = received.slice(mark).filter((r) => r.method === 'POST');
  expect(attempts.map((r) => r.path)).toEqual(['/backups/jobs/restore', '/loads', '/ingest/departments', '/backups/jobs/restore']);
  for (const r of attempts) expect(r).toMatchObject({ status: 403, site: 'cross-site', origin: `http://localhost:${evilPort}` });
  // Nothing happened: the job keeps its later name, no load, no department.
  expect((await s.pool.query('SELECT job FROM jobs WHERE id = 1')).rows[0].job).toBe('Changed after the backup');
  expect((await s.pool.query('SELECT count(*)::int AS n FROM loads')).rows[0].n).toBe(loadsBefore);
  expect((await s.pool.query('SELECT count(*)::int AS n FROM departments WHERE id IN (900, 901)')).rows[0].n).toBe(0);

  // Another port of the same host is the same site but another origin: refused too.
  const sameSite = await browser.newPage();
  await sameSite.goto(`http://127.0.0.1:${evilPort}/`);
  const before = received.length;
  await sameSite.evaluate((b) => fetch(`${b}/warehouse/refresh`, { method: 'POST', mode: 'no-cors' }), base);
  expect(received.slice(before)).toMatchObject([{ path: '/warehouse/refresh', status: 403, site: 'same-site' }]);

  // The dashboard's own page may post (Sec-Fetch-Site: same-origin).
  const own = await browser.newPage();
  await own.goto(`${base}/`);
  const ownStatus = await own.evaluate(async () => (await fetch('/warehouse/refresh', { method: 'POST' })).status);
  expect(ownStatus).toBe(202);
  await Promise.all([page.close(), sameSite.close(), own.close()]);
}, 60_000);
