import { BreakerOpenError } from '../../../libs/resilience/breaker';

/** Name of the circuit breaker around the decision log (health details, logs). */
export const LOG_STORE_BREAKER = 'decision-log';

/**
 * Connection-level failures of the log store (refused, reset, timed out, server shutting down, too
 * many connections) and the log store's open circuit breaker: the API answers 503 with Retry-After.
 * Only these count against the breaker; a constraint violation or a bad query does not.
 */
export function isStoreUnavailable(err: unknown): boolean {
  if (err instanceof BreakerOpenError) return err.breaker === LOG_STORE_BREAKER;
  const e = err as { code?: string; message?: string; name?: string };
  const codes = ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', '57P01', '57P02', '57P03', '08000', '08003', '08006', '53300'];
  if (e?.code && codes.includes(e.code)) return true;
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection is not established/i.test(e?.message ?? '');
}

/** Seconds a client should wait before retrying: until the breaker's next probe, else 5. */
export function retryAfterSeconds(err: unknown): number {
  return err instanceof BreakerOpenError ? Math.max(1, Math.ceil(err.retryAfterMs / 1000)) : 5;
}
