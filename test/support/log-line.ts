/** Writes one log line the way main.ts sets its logger up, for test/start.test.ts. */
import { loadConfig } from '../../core/config.js';
import { createLogger } from '../../core/log.js';

const config = loadConfig();
createLogger(config.LOG_LEVEL, { role: 'test' }, config.LOG_FORMAT).info({ port: 3000 }, 'listening on http://localhost:3000');
