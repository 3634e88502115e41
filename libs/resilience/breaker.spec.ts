import { Breaker, BreakerOpenError, breakerSettingsFromEnv, DEFAULT_BREAKER_SETTINGS } from './breaker';

const settings = { ...DEFAULT_BREAKER_SETTINGS, volumeThreshold: 3, resetTimeoutMs: 100 };
const down = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
const mistake = Object.assign(new Error('duplicate key'), { code: '23505' });
const isFailure = (err: unknown) => (err as { code?: string }).code === 'ECONNREFUSED';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Breaker', () => {
  it('opens on repeated failures that count, fails fast while open, and a successful probe closes it', async () => {
    const lines: string[] = [];
    const log = { info: (_: object, m?: string) => lines.push(m ?? ''), warn: (_: object, m?: string) => lines.push(m ?? '') };
    const b = new Breaker('db', settings, isFailure, log);
    let calls = 0;
    const failing = () => { calls++; return Promise.reject(down); };
    for (let i = 0; i < 3; i++) await expect(b.run(failing)).rejects.toBe(down); // volumeThreshold calls, all failed
    expect(b.state).toBe('open');
    const before = calls;
    const err = await b.run(failing).catch((e) => e);
    expect(err).toBeInstanceOf(BreakerOpenError);
    expect(err.retryAfterMs).toBeGreaterThan(0);
    expect(calls).toBe(before); // not called
    await sleep(150);
    expect(b.state).toBe('half-open');
    await expect(b.run(async () => 'ok')).resolves.toBe('ok');
    expect(b.state).toBe('closed');
    expect(lines).toEqual(['circuit breaker db opened: failing fast', 'circuit breaker db half-open: probing', 'circuit breaker db closed']);
    b.shutdown();
  });

  it('vouches for the dependency while closed and for a second after a call it answered', async () => {
    const b = new Breaker('db', settings, isFailure);
    expect(b.recentlySucceeded()).toBe(false); // nothing answered yet
    await b.run(async () => 'ok');
    expect(b.recentlySucceeded()).toBe(true);
    await expect(b.run(() => Promise.reject(mistake))).rejects.toBe(mistake); // answered: the caller's mistake
    for (let i = 0; i < 3; i++) await expect(b.run(() => Promise.reject(down))).rejects.toBe(down);
    expect(b.state).toBe('open');
    expect(b.recentlySucceeded()).toBe(false); // open: whatever answered before
    await sleep(150);
    await b.run(async () => 'ok'); // the probe closes it
    expect(b.recentlySucceeded()).toBe(true);
    await sleep(1050);
    expect(b.recentlySucceeded()).toBe(false);
    b.shutdown();
  });

  it('a failed probe opens it again', async () => {
    const b = new Breaker('db', settings, isFailure);
    for (let i = 0; i < 4; i++) await b.run(() => Promise.reject(down)).catch(() => undefined);
    await sleep(150);
    await expect(b.run(() => Promise.reject(down))).rejects.toBe(down);
    expect(b.state).toBe('open');
    b.shutdown();
  });

  it('does not count errors that are not the dependency failing', async () => {
    const b = new Breaker('db', settings, isFailure);
    for (let i = 0; i < 10; i++) await expect(b.run(() => Promise.reject(mistake))).rejects.toBe(mistake);
    expect(b.state).toBe('closed');
    b.shutdown();
  });

  it('counts calls slower than its timeout', async () => {
    const b = new Breaker('db', { ...settings, timeoutMs: 20 }, () => false);
    for (let i = 0; i < 3; i++) await expect(b.run(() => sleep(200))).rejects.toThrow(/Timed out after 20ms/);
    expect(b.state).toBe('open');
    b.shutdown();
  });

  it('reads TX_BREAKER_* and names a bad one', () => {
    expect(breakerSettingsFromEnv({})).toEqual(DEFAULT_BREAKER_SETTINGS);
    expect(breakerSettingsFromEnv({ TX_BREAKER_VOLUME: '7', TX_BREAKER_RESET_MS: '200' })).toMatchObject({ volumeThreshold: 7, resetTimeoutMs: 200 });
    expect(() => breakerSettingsFromEnv({ TX_BREAKER_ERROR_PERCENT: '101' })).toThrow(/^TX_BREAKER_ERROR_PERCENT must be an integer between 1 and 100/);
  });
});
