import pino, { Logger } from 'pino';
import { PARTICIPANT_NAME } from '../protocol';
import { Breaker, BreakerOpenError, breakerSettingsFromEnv } from '../resilience/breaker';

export interface EnlistOptions {
  /** Default: env `COORDINATOR_URL`, else `http://localhost:3000`. */
  coordinatorUrl?: string;
  txId: string;
  /** The participant's name, as it runs `startParticipant` / `ParticipantModule`. */
  name: string;
  /** What `prepare` will receive as `ctx.payload`. */
  payload?: Record<string, unknown>;
  /** HTTP transport: where the coordinator reaches this participant (the runtime's `url`). */
  url?: string;
  /** Sent as `Authorization: Bearer <apiKey>` when the coordinator requires keys. */
  apiKey?: string;
  /** Abort the request after this many milliseconds (default 10000). */
  timeoutMs?: number;
  /**
   * Calls to one coordinator URL share a circuit breaker (settings: the TX_BREAKER_* variables):
   * after repeated failures to reach it (network errors, timeouts, 5xx) enlist fails at once with
   * BreakerOpenError until a probe gets through. false: bypass it for this call.
   */
  breaker?: false;
}

/** The coordinator answered with an error (problem JSON, RFC 9457). */
export class EnlistError extends Error {
  override name = 'EnlistError';
  constructor(
    message: string,
    readonly status: number,
    readonly problem: Record<string, unknown> | null,
  ) {
    super(message);
  }
}

/** A transaction as the coordinator's REST API returns it (CONTRACT section 2). */
export interface TransactionView {
  id: string;
  protocol: '2pc' | '3pc';
  state: string;
  outcome: 'commit' | 'abort' | null;
  participants: { name: string; vote?: string | null; acked?: boolean; payload?: Record<string, unknown>; url?: string | null }[];
  [field: string]: unknown;
}

/**
 * Enlists a participant in a transaction: `POST /v1/transactions/{txId}/participants`.
 * Resolves with the transaction on 200 (already enlisted) or 201; throws an EnlistError carrying
 * the problem's detail otherwise.
 */
export async function enlist(options: EnlistOptions): Promise<TransactionView> {
  const { txId, name, apiKey } = options;
  if (typeof txId !== 'string' || !/^[0-9a-f-]{36}$/i.test(txId)) throw new TypeError(`enlist: txId must be a UUID`);
  if (typeof name !== 'string' || !PARTICIPANT_NAME.test(name)) throw new TypeError(`enlist: invalid participant name ${JSON.stringify(name)}`);
  const base = (options.coordinatorUrl ?? process.env.COORDINATOR_URL ?? 'http://localhost:3000').replace(/\/+$/, '');
  const url = `${base}/v1/transactions/${encodeURIComponent(txId)}/participants`;
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, application/problem+json' };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;

  const post = () => postEnlist(url, headers, base, options);
  if (options.breaker === false) return post();
  return coordinatorBreaker(base).run(post);
}

async function postEnlist(url: string, headers: Record<string, string>, base: string, options: EnlistOptions): Promise<TransactionView> {
  const { txId, name, payload, url: participantUrl } = options;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name, ...(participantUrl === undefined ? {} : { url: participantUrl }), ...(payload === undefined ? {} : { payload }) }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
  } catch (err) {
    throw new Error(`enlist ${name} in ${txId}: cannot reach the coordinator at ${base}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (res.status === 200 || res.status === 201) {
    if (!body || typeof body !== 'object') {
      throw new EnlistError(`enlist ${name} in ${txId}: the coordinator answered ${res.status} without a JSON body`, res.status, null);
    }
    return body as TransactionView;
  }
  const problem = body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : null;
  const detail =
    (typeof problem?.detail === 'string' && problem.detail) ||
    (typeof problem?.title === 'string' && problem.title) ||
    text.slice(0, 200) ||
    res.statusText;
  throw new EnlistError(`enlist ${name} in ${txId} failed (${res.status}): ${detail}`, res.status, problem);
}

const breakers = new Map<string, Breaker>();
let breakerLogger: Logger | undefined;

/** What counts against a coordinator's breaker: not reaching it, timeouts, 5xx — never a 4xx answer. */
function coordinatorFailed(err: unknown): boolean {
  return !(err instanceof EnlistError) || err.status >= 500;
}

function coordinatorBreaker(base: string): Breaker {
  let b = breakers.get(base);
  if (!b) {
    breakerLogger ??= pino({ name: 'txp-enlist', level: process.env.LOG_LEVEL || 'info' });
    b = new Breaker(`coordinator-http ${base}`, breakerSettingsFromEnv(), coordinatorFailed, breakerLogger);
    breakers.set(base, b);
  }
  return b;
}

/** The state of the breaker of each coordinator URL enlist has called (for a service's health details). */
export function enlistBreakers(): Record<string, ReturnType<Breaker['describe']>> {
  return Object.fromEntries([...breakers].map(([base, b]) => [base, b.describe()]));
}

export { BreakerOpenError };
