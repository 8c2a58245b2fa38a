import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApp } from '../api/app.js';
import { createTestServices, EMBEDDED, type TestServices } from './support/services.js';

let s: TestServices;
beforeAll(async () => {
  s = await createTestServices();
});
afterAll(() => s.cleanup());

test('health names both dependencies', async () => {
  const res = await createApp(s).request('/health');
  expect(res.status).toBe(200);
  const embedded = EMBEDDED ? { embedded: true } : {};
  expect(await res.json()).toMatchObject({ status: 'ok', postgres: { status: 'ok', ...embedded }, redis: { status: 'ok', ...embedded } });
});
