import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig } from '../core/config.js';

/** What a person sees of the logs: main.ts's logger set up from the environment, in a child process. */
const ROOT = path.resolve(import.meta.dirname, '..');

describe('log format', () => {
  const line = (env: Record<string, string>, tty = false): string => {
    const cmd = [process.execPath, '--import', 'tsx', 'test/support/log-line.ts'];
    const opts = { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' as const };
    // `script` gives the command a terminal for its stdout, as a person's shell would.
    return tty ? execFileSync('script', ['-qec', cmd.join(' '), '/dev/null'], opts) : execFileSync(cmd[0]!, cmd.slice(1), opts);
  };
  const isJson = (text: string) => {
    try {
      return typeof JSON.parse(text.trim()) === 'object';
    } catch {
      return false;
    }
  };

  test('JSON lines into a pipe, readable lines on a terminal', () => {
    const piped = line({});
    expect(JSON.parse(piped)).toMatchObject({ level: 'info', msg: 'listening on http://localhost:3000', port: 3000, role: 'test' });
    const terminal = line({}, true);
    expect(isJson(terminal)).toBe(false);
    expect(terminal).toMatch(/INFO.*listening on http:\/\/localhost:3000/);
  });

  test('LOG_FORMAT forces one or the other', () => {
    const pretty = line({ LOG_FORMAT: 'pretty' });
    expect(isJson(pretty)).toBe(false);
    expect(pretty).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: listening on http:\/\/localhost:3000 \{"role":"test","port":3000\}\n$/);
    expect(isJson(line({ LOG_FORMAT: 'json' }, true))).toBe(true);
  });

  test('LOG_FORMAT: json, pretty, or unset (empty counts as unset); anything else stops the start', () => {
    expect(loadConfig({ LOG_FORMAT: 'pretty' }).LOG_FORMAT).toBe('pretty');
    expect(loadConfig({ LOG_FORMAT: '' }).LOG_FORMAT).toBeUndefined();
    expect(loadConfig({}).LOG_FORMAT).toBeUndefined();
    expect(() => loadConfig({ LOG_FORMAT: 'xml' })).toThrow(ConfigError);
    expect(() => loadConfig({ LOG_FORMAT: 'xml' })).toThrow(/LOG_FORMAT must be json or pretty/);
  });
});
