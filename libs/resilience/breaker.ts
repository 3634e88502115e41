import CircuitBreaker from 'opossum';

/**
 * A circuit breaker (opossum) around one outbound dependency: the decision log's Postgres, the
 * Kafka producer, the coordinator's HTTP API as seen from the participant library.
 *
 * Closed: calls go through; failures that count (`isFailure`: connection-level errors, never a
 * caller's mistake) are tallied over a rolling window. When at least `volumeThreshold` calls were
 * made in the window and more than `errorThresholdPercentage` of them failed, it opens. Open: calls
 * fail at once with BreakerOpenError (no waiting for connection timeouts). After `resetTimeoutMs` it
 * is half-open: the next call is let through as a probe (others still fail fast); its success
 * closes the breaker, its failure opens it again. Every change of state is logged.
 */
export interface BreakerSettings {
  /** Percentage of failed calls in the window above which the breaker opens. */
  errorThresholdPercentage: number;
  /** Calls needed in the window before the breaker may open. */
  volumeThreshold: number;
  /** Length of the rolling window. */
  windowMs: number;
  /** How long the breaker stays open before it lets a probe through (half-open). */
  resetTimeoutMs: number;
  /** A call that takes longer fails (and counts); 0 disables. */
  timeoutMs: number;
}

export const DEFAULT_BREAKER_SETTINGS: Readonly<BreakerSettings> = {
  errorThresholdPercentage: 50,
  volumeThreshold: 5,
  windowMs: 10_000,
  resetTimeoutMs: 5_000,
  timeoutMs: 0,
};

export type BreakerState = 'closed' | 'open' | 'half-open';

/** How recently a call must have succeeded to vouch for the dependency (recentlySucceeded). */
const VOUCHES_FOR_MS = 1000;

export interface BreakerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** Thrown instead of calling the dependency while the breaker is open. */
export class BreakerOpenError extends Error {
  override name = 'BreakerOpenError';
  readonly code = 'EOPENBREAKER';
  constructor(
    readonly breaker: string,
    /** When the breaker will let the next probe through. */
    readonly retryAfterMs: number,
  ) {
    super(`circuit breaker ${breaker} is open: failing fast; next probe in ${Math.max(0, Math.round(retryAfterMs))} ms`);
  }
}

export class Breaker {
  private readonly cb: CircuitBreaker<[() => Promise<unknown>], unknown>;
  private openedAt = 0;
  private succeededAt = 0;

  constructor(
    readonly name: string,
    readonly settings: BreakerSettings,
    isFailure: (err: unknown) => boolean,
    logger?: BreakerLogger,
  ) {
    this.cb = new CircuitBreaker((fn: () => Promise<unknown>) => fn(), {
      errorThresholdPercentage: settings.errorThresholdPercentage,
      volumeThreshold: settings.volumeThreshold,
      rollingCountTimeout: settings.windowMs,
      rollingCountBuckets: 10,
      resetTimeout: settings.resetTimeoutMs,
      timeout: settings.timeoutMs > 0 ? settings.timeoutMs : false,
      // Errors that are not the dependency's failure (a unique violation, a 4xx) do not count.
      errorFilter: (err: unknown) => !(isTimeout(err) || isFailure(err)),
      name,
    });
    this.cb.on('open', () => {
      this.openedAt = Date.now();
      const stats = this.cb.stats;
      logger?.warn({ breaker: name, state: 'open', failures: stats.failures, calls: stats.fires, retryInMs: settings.resetTimeoutMs }, `circuit breaker ${name} opened: failing fast`);
    });
    this.cb.on('success', () => (this.succeededAt = Date.now()));
    this.cb.on('halfOpen', () => logger?.info({ breaker: name, state: 'half-open' }, `circuit breaker ${name} half-open: probing`));
    this.cb.on('close', () => logger?.info({ breaker: name, state: 'closed' }, `circuit breaker ${name} closed`));
  }

  /** Runs `fn` through the breaker; rejects with BreakerOpenError while open. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return (await this.cb.fire(fn)) as T;
    } catch (err) {
      if ((err as { code?: string })?.code === 'EOPENBREAKER' && !(err instanceof BreakerOpenError)) {
        throw new BreakerOpenError(this.name, this.retryAfterMs());
      }
      throw err;
    }
  }

  get state(): BreakerState {
    if (this.cb.opened) return 'open';
    if (this.cb.halfOpen) return 'half-open';
    return 'closed';
  }

  /**
   * Closed, and a call was answered within the last second (it succeeded, or failed by the
   * caller's mistake, not the dependency's): the dependency answers. Readiness asks this first,
   * since under load a ping of its own would only queue behind the calls that say so.
   */
  recentlySucceeded(): boolean {
    return this.state === 'closed' && Date.now() - this.succeededAt < VOUCHES_FOR_MS;
  }

  /** Milliseconds until the next probe while open; 0 otherwise. */
  retryAfterMs(): number {
    if (!this.cb.opened) return 0;
    return Math.max(0, this.openedAt + this.settings.resetTimeoutMs - Date.now());
  }

  /** For health details: state and the counts of the current window. */
  describe(): { state: BreakerState; failures: number; calls: number; rejected: number; timeouts: number } {
    const s = this.cb.stats;
    return { state: this.state, failures: s.failures, calls: s.fires, rejected: s.rejects, timeouts: s.timeouts };
  }

  shutdown(): void {
    this.cb.shutdown();
  }
}

function isTimeout(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === 'ETIMEDOUT' && /^Timed out after/.test(e.message ?? '');
}

/** A problem with one breaker variable; the message names it. */
export class BreakerConfigError extends Error {
  constructor(readonly variable: string, readonly problem: string, readonly value: string) {
    super(`${variable} ${problem} (got ${JSON.stringify(value)})`);
    this.name = 'BreakerConfigError';
  }
}

/** The breaker variables (the coordinator and the participant library read the same names). */
export const BREAKER_ENV = {
  TX_BREAKER_ERROR_PERCENT: { key: 'errorThresholdPercentage', min: 1, max: 100 },
  TX_BREAKER_VOLUME: { key: 'volumeThreshold', min: 1, max: 10_000 },
  TX_BREAKER_WINDOW_MS: { key: 'windowMs', min: 1000, max: 600_000 },
  TX_BREAKER_RESET_MS: { key: 'resetTimeoutMs', min: 100, max: 600_000 },
} as const satisfies Record<string, { key: keyof BreakerSettings; min: number; max: number }>;

/** Reads TX_BREAKER_* (defaults for the unset ones); throws BreakerConfigError naming a bad variable. */
export function breakerSettingsFromEnv(env: NodeJS.ProcessEnv = process.env, base: BreakerSettings = DEFAULT_BREAKER_SETTINGS): BreakerSettings {
  const s: BreakerSettings = { ...base };
  for (const [variable, rule] of Object.entries(BREAKER_ENV)) {
    const raw = env[variable];
    if (raw === undefined || raw === '') continue;
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || n < rule.min || n > rule.max) {
      throw new BreakerConfigError(variable, `must be an integer between ${rule.min} and ${rule.max}`, raw);
    }
    s[rule.key] = n;
  }
  return s;
}
