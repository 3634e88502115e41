/**
 * Bad configuration (CONTRACT section 1): for every variable the coordinator reads, a bad value
 * stops it at start with one clear line naming the variable, and a non-zero exit code — checked
 * on the configuration code for each variable, and on the built coordinator as a process.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../apps/coordinator/config/config';

jest.setTimeout(180_000);

const ROOT = join(__dirname, '..', '..');

/** One bad value per variable. Adding a variable to the configuration? Add it here too. */
const BAD: Record<string, string> = {
  PORT: 'eighty',
  DATABASE_URL: 'mysql://user:hunter2-password@h/db',
  KAFKA_BROKERS: 'kafka://broker',
  TX_TOPIC_PREFIX: 'has space',
  TX_DEFAULT_TIMEOUT_MS: '50',
  COORDINATOR_API_KEYS: 'short-key',
  TX_MESSAGE_SECRET: 'short-secret',
  TX_PARTICIPANT_URLS: 'inventory',
  COORDINATOR_URL: 'ftp://coordinator',
  KAFKA_MAX_WAIT_MS: '0',
  KAFKA_SESSION_TIMEOUT_MS: '10',
  TX_RESEND_INITIAL_MS: '5',
  TX_RESEND_MAX_MS: 'soon',
  TX_SWEEP_INTERVAL_MS: '1',
  TX_BODY_LIMIT_BYTES: '10',
  LOG_LEVEL: 'loud',
  TX_STUCK_AFTER_MS: '5',
  TX_RETENTION_MS: '500',
  TX_BREAKER_ERROR_PERCENT: '0',
  TX_BREAKER_VOLUME: '0',
  TX_BREAKER_WINDOW_MS: '10',
  TX_BREAKER_RESET_MS: '10',
  TX_DB_TIMEOUT_MS: '1',
  TX_RATE_LIMIT_PER_MINUTE: '-1',
  TX_SHUTDOWN_DELAY_MS: '-5',
  TX_SHUTDOWN_TIMEOUT_MS: '10',
  TX_TEST_CRASH_AT: 'nonsense',
};
/** Variables with no bad value: any non-empty folder path will do. */
const ANY_VALUE = new Set(['TX_EMBEDDED_DATA_DIR']);
/** Values that must never appear in an error line (of DATABASE_URL: its password). */
const SECRET: Record<string, string> = { COORDINATOR_API_KEYS: BAD.COORDINATOR_API_KEYS, TX_MESSAGE_SECRET: BAD.TX_MESSAGE_SECRET, DATABASE_URL: 'hunter2' };

/** Combinations that are wrong together though each value is fine alone. */
const BAD_TOGETHER: [string, Record<string, string>][] = [
  ['TX_RESEND_MAX_MS', { TX_RESEND_INITIAL_MS: '2000', TX_RESEND_MAX_MS: '1000' }],
  ['TX_SHUTDOWN_DELAY_MS', { TX_SHUTDOWN_DELAY_MS: '5000', TX_SHUTDOWN_TIMEOUT_MS: '5000' }],
];

/** Every variable loadConfig reads, seen by running it on an environment that records lookups. */
function variablesRead(): string[] {
  const seen = new Set<string>();
  loadConfig(new Proxy({}, { get: (t, k) => (typeof k === 'string' && seen.add(k), undefined) }) as NodeJS.ProcessEnv);
  return [...seen].sort();
}

const cases: [string, Record<string, string>][] = [...Object.entries(BAD).map(([name, value]) => [name, { [name]: value }] as [string, Record<string, string>]), ...BAD_TOGETHER];

describe('the configuration', () => {
  it('has a bad value in this test for every variable it reads', () => {
    expect(variablesRead().filter((v) => !ANY_VALUE.has(v))).toEqual(Object.keys(BAD).sort());
  });

  it.each(cases)('refuses a bad %s with one line naming it', (name, env) => {
    let err: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message.split('\n')).toHaveLength(1);
    expect(message.startsWith(`configuration error: ${name} `)).toBe(true);
    if (SECRET[name]) expect(message).not.toContain(SECRET[name]);
  });
});

/** Runs the built coordinator with `env` only; resolves with its exit code and output. */
function runCoordinator(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'apps', 'coordinator', 'main.js')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  // 'close', not 'exit': only then has all of its output been read.
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    }),
  );
}

/** A sample of every kind of rule for the process-level check (each start costs a second or two). */
const AS_PROCESS = ['PORT', 'DATABASE_URL', 'KAFKA_BROKERS', 'COORDINATOR_API_KEYS', 'TX_PARTICIPANT_URLS', 'LOG_LEVEL', 'TX_RATE_LIMIT_PER_MINUTE', 'TX_SHUTDOWN_TIMEOUT_MS', 'TX_TEST_CRASH_AT'];

describe('the built coordinator with a bad variable', () => {
  it('exits non-zero at once with one line on stderr naming the variable', async () => {
    const results: [string, Awaited<ReturnType<typeof runCoordinator>>][] = [];
    const queue = [...cases.filter(([name]) => AS_PROCESS.includes(name)), ...BAD_TOGETHER];
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let c = queue.shift(); c; c = queue.shift()) results.push([c[0], await runCoordinator(c[1])]);
    }));
    for (const [name, r] of results) {
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      expect({ name, code: r.code, stdout: r.stdout, lines: lines.length }).toEqual({ name, code: 1, stdout: '', lines: 1 });
      expect(lines[0]).toMatch(new RegExp(`^configuration error: ${name} `));
      if (SECRET[name]) expect(r.stderr).not.toContain(SECRET[name]);
    }
    expect(results).toHaveLength(AS_PROCESS.length + BAD_TOGETHER.length);
  });
});
