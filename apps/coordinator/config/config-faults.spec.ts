import { ConfigError, loadConfig } from './config';

describe('coordinator configuration: breakers, stuck reporting, test crash points', () => {
  it('has sensible defaults', () => {
    const c = loadConfig({});
    expect(c.breaker).toEqual({ errorThresholdPercentage: 50, volumeThreshold: 5, windowMs: 10_000, resetTimeoutMs: 5000, timeoutMs: 0 });
    expect(c.dbTimeoutMs).toBe(10_000);
    expect(c.stuckAfterMs).toBe(60_000);
    expect(c.testCrashAt).toBeNull();
  });

  it('reads the variables', () => {
    const c = loadConfig({
      TX_BREAKER_ERROR_PERCENT: '25', TX_BREAKER_VOLUME: '3', TX_BREAKER_WINDOW_MS: '5000', TX_BREAKER_RESET_MS: '250',
      TX_DB_TIMEOUT_MS: '2000', TX_STUCK_AFTER_MS: '1500', TX_TEST_CRASH_AT: 'after-first-send@2',
    });
    expect(c.breaker).toMatchObject({ errorThresholdPercentage: 25, volumeThreshold: 3, windowMs: 5000, resetTimeoutMs: 250 });
    expect(c).toMatchObject({ dbTimeoutMs: 2000, stuckAfterMs: 1500, testCrashAt: 'after-first-send@2' });
  });

  it.each([
    ['TX_BREAKER_ERROR_PERCENT', '0'],
    ['TX_BREAKER_VOLUME', 'many'],
    ['TX_BREAKER_WINDOW_MS', '10'],
    ['TX_BREAKER_RESET_MS', '-1'],
    ['TX_DB_TIMEOUT_MS', '5'],
    ['TX_STUCK_AFTER_MS', '999'],
    ['TX_TEST_CRASH_AT', 'after-everything'],
    ['TX_TEST_CRASH_AT', 'after-first-send@0'],
    ['TX_TEST_CRASH_AT', 'after-prepared-persist'], // a participant's point, not the coordinator's
  ])('refuses %s=%j with one line naming it', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^configuration error: ${name} `));
  });
});
