import { serve } from '@hono/node-server';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { startWorkers, type Workers } from '../worker/index.js';
import { ingestChallenge } from './support/http.js';
import { createTestServices, type TestServices } from './support/services.js';

let s: TestServices;
let workers: Workers;
let server: ReturnType<typeof serve>;
let base: string;
let browser: Browser;

beforeAll(async () => {
  s = await createTestServices();
  workers = await startWorkers(s);
  const app = createApp(s);
  await ingestChallenge(app);
  expect((await app.request('/warehouse/refresh?wait=true', { method: 'POST' })).status).toBeLessThan(300);
  const port = await new Promise<number>((resolve) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve(info.port));
  });
  base = `http://127.0.0.1:${port}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
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
