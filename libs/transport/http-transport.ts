import CircuitBreaker from 'opossum';
import { decodeMessage, encodeMessage, isForParticipant, ProtocolMessage, sign, SIGNATURE_HEADER } from '../protocol';
import { listenForMessages, MessageListener } from './http-listener';
import type { TransportLogger } from './kafka-transport';
import { Envelope, MessageHandler, MessageTransport } from './transport';

/** Where participants take messages (relative to their URL) and where the coordinator does. */
export const PARTICIPANT_MESSAGES_PATH = '/tx/messages';
export const COORDINATOR_MESSAGES_PATH = '/v1/messages';

/** What a receiver answers: 202 taken, 400 unreadable, 503 not receiving (try again later). */
export type ReceiveResult = { status: 202 } | { status: 400; error: string } | { status: 503; error: string };

export interface HttpTransportOptions {
  /** The side this process plays: decides check() and what it listens for. */
  role: 'coordinator' | 'participant';
  /** COORDINATOR_URL: where coordinator-bound messages go (participants). */
  coordinatorUrl?: string;
  /** Sent as `Authorization: Bearer <apiKey>` on posts to the coordinator only. */
  apiKey?: string;
  /** TX_PARTICIPANT_URLS: participant name → URL, for messages whose send() gave no route. */
  participantUrls?: ReadonlyMap<string, string>;
  /** TX_MESSAGE_SECRET: sign outgoing messages and refuse unsigned or badly signed incoming ones. */
  secret?: string;
  logger?: TransportLogger;
  /** Serve `POST <path>` and `GET /health` on a server of its own (a participant without a web framework). */
  listen?: { host: string; port: number; limitBytes?: number };
  /** Timeout of one POST (default 1000). */
  requestTimeoutMs?: number;
  /** Posts of one message, first included (default 3). */
  attempts?: number;
  /** First pause between attempts, doubling, with jitter (default 100). */
  retryDelayMs?: number;
  /** All attempts of one message end within this (default 2000); then send() rejects. */
  deliveryBudgetMs?: number;
  /** Failures within `windowMs` before a destination's breaker may open (default 5). */
  breakerVolumeThreshold?: number;
  /** Share of failed posts in the window that opens the breaker (default 50). */
  breakerErrorPercentage?: number;
  /** How long an open breaker fails fast before one probe goes through (default 5000). */
  breakerResetMs?: number;
  /** Rolling window of the breaker's counts (default 10000). */
  breakerWindowMs?: number;
  /** How long check() waits for the coordinator (default 3000). */
  checkTimeoutMs?: number;
  /** Messages being handled at once; more are answered 503 (default 1000). */
  maxInFlight?: number;
  /** How long stop() waits for handlers in progress (default 5000). */
  stopTimeoutMs?: number;
}

/** A post that the destination answered with an error status, or that did not get through. */
class PostError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** Breakers kept at most; the least recently used one goes first. */
const MAX_BREAKERS = 1000;

/**
 * The protocol over HTTP (CONTRACT section 3b): the same message values and `tx-signature` header
 * as on Kafka, one message per POST.
 *
 * Sending: coordinator → participant messages go to `<participant url>/tx/messages` (the URL from
 * send()'s routes, else from participantUrls), the others to `<coordinatorUrl>/v1/messages`.
 * Messages to one URL go one after the other, in order; different URLs in parallel. A failed post
 * is tried again a few times with backoff and jitter within deliveryBudgetMs; after that send()
 * rejects, and the caller's own resend takes over. Each destination URL has a circuit breaker:
 * after repeated failures it fails fast, and after breakerResetMs lets one probe through.
 *
 * Receiving: receive() is the one decode path of both sides. The coordinator's web app calls it
 * from its route; a participant gets a small server of its own (`listen`). A readable message is
 * handed to the handler and answered 202 at once, without waiting for the handler: the handler may
 * itself post to the sender, which must not wait on this answer. A handler that fails is logged;
 * the sender's resend brings the message again, as a redelivery would on Kafka.
 */
export class HttpTransport implements MessageTransport {
  private readonly logger: TransportLogger;
  private readonly breakers = new Map<string, CircuitBreaker<[Buffer, Record<string, string>, number], void>>();
  private readonly running = new Set<Promise<void>>();
  private handler?: MessageHandler;
  private listener?: MessageListener;
  private stopped = false;

  constructor(private readonly opts: HttpTransportOptions) {
    if (opts.role === 'participant' && !opts.coordinatorUrl) throw new Error('HttpTransport: coordinatorUrl is required for a participant');
    this.logger = opts.logger ?? silentLogger;
  }

  async start(handler: MessageHandler): Promise<void> {
    if (this.stopped) throw new Error('HttpTransport: stopped');
    if (this.handler) throw new Error('HttpTransport: already started');
    this.handler = handler;
    const listen = this.opts.listen;
    if (!listen) return;
    try {
      this.listener = await listenForMessages({ ...listen, path: PARTICIPANT_MESSAGES_PATH }, (value, signature) =>
        this.receive(value, signature),
      );
    } catch (err) {
      this.handler = undefined;
      throw err;
    }
    this.logger.info({ host: listen.host, port: listen.port, path: PARTICIPANT_MESSAGES_PATH }, 'listening for protocol messages over HTTP');
  }

  async send(messages: ProtocolMessage[], routes?: ReadonlyMap<string, string>): Promise<void> {
    if (this.stopped) throw new Error('HttpTransport: stopped');
    const failures: string[] = [];
    const byUrl = new Map<string, ProtocolMessage[]>();
    for (const m of messages) {
      const url = this.destination(m, routes);
      if (!url) {
        failures.push(`${m.type}:${m.participant}: no URL for participant ${m.participant} (enlist it with a url, or list it in TX_PARTICIPANT_URLS)`);
        continue;
      }
      const list = byUrl.get(url);
      if (list) list.push(m);
      else byUrl.set(url, [m]);
    }
    const results = await Promise.allSettled([...byUrl].map(([url, list]) => this.deliverInOrder(url, list)));
    for (const r of results) if (r.status === 'rejected') failures.push(String((r.reason as Error)?.message ?? r.reason));
    if (failures.length) {
      throw new Error(`HTTP send failed for ${failures.length} destination(s): ${failures.join('; ')}`);
    }
  }

  /**
   * One message as it came off the wire: decoded and verified, then handed to the handler without
   * waiting for it. Never throws.
   */
  async receive(value: Buffer, signature?: string): Promise<ReceiveResult> {
    if (!this.handler || this.stopped) {
      return { status: 503, error: this.stopped ? 'this process is stopping' : 'this process is not receiving yet' };
    }
    const r = decodeMessage(value, { secret: this.opts.secret, signature });
    if (!r.ok) {
      this.logger.warn({ error: r.error, bytes: value.length }, 'unreadable message refused');
      return { status: 400, error: r.error };
    }
    if (this.running.size >= (this.opts.maxInFlight ?? 1000)) return { status: 503, error: 'too many messages in progress' };
    const m = r.message;
    const envelope: Envelope = {
      topic: this.opts.role === 'coordinator' ? COORDINATOR_MESSAGES_PATH : PARTICIPANT_MESSAGES_PATH,
      key: m.txId,
      value,
      headers: { [SIGNATURE_HEADER]: signature },
    };
    const handler = this.handler;
    const run: Promise<void> = Promise.resolve()
      .then(() => handler(m, envelope))
      .catch((err) =>
        this.logger.warn({ txId: m.txId, type: m.type, participant: m.participant, err }, 'message handler failed; the sender will send it again'),
      )
      .finally(() => this.running.delete(run));
    this.running.add(run);
    return { status: 202 };
  }

  /** The coordinator has nothing to reach; a participant checks that the coordinator answers. */
  async check(): Promise<void> {
    if (this.stopped) throw new Error('HttpTransport: stopped');
    if (this.opts.role === 'coordinator') return;
    const url = `${trimSlash(this.opts.coordinatorUrl!)}/health/live`;
    const res = await fetch(url, { signal: AbortSignal.timeout(this.opts.checkTimeoutMs ?? 3000) }).catch((err) => {
      throw new Error(`coordinator not reachable at ${url}: ${describe(err)}`);
    });
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw new Error(`coordinator at ${url} answered ${res.status}`);
  }

  /** Stops taking messages, waits a while for handlers in progress, drops the breakers. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.listener?.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.running]),
      new Promise((resolve) => (timer = setTimeout(resolve, this.opts.stopTimeoutMs ?? 5000))),
    ]);
    clearTimeout(timer);
    for (const b of this.breakers.values()) b.shutdown();
    this.breakers.clear();
  }

  private destination(m: ProtocolMessage, routes?: ReadonlyMap<string, string>): string | null {
    if (!isForParticipant(m)) {
      return this.opts.coordinatorUrl ? `${trimSlash(this.opts.coordinatorUrl)}${COORDINATOR_MESSAGES_PATH}` : null;
    }
    const base = routes?.get(m.participant) ?? this.opts.participantUrls?.get(m.participant);
    return base ? `${trimSlash(base)}${PARTICIPANT_MESSAGES_PATH}` : null;
  }

  /** Messages to one URL, one at a time in order; stops at the first that cannot be delivered. */
  private async deliverInOrder(url: string, messages: ProtocolMessage[]): Promise<void> {
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      const body = encodeMessage(m);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (this.opts.secret) headers[SIGNATURE_HEADER] = sign(body, this.opts.secret);
      // The API key is the coordinator's; it never goes to a participant.
      if (!isForParticipant(m) && this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;
      try {
        await this.deliver(url, body, headers);
      } catch (err) {
        const unsent = messages.length - i - 1;
        throw new Error(`${m.type}:${m.participant} → ${url}: ${(err as Error).message}${unsent ? ` (${unsent} more not sent)` : ''}`);
      }
    }
  }

  /** One message, retried on network errors, timeouts, 429 and 5xx within the delivery budget. */
  private async deliver(url: string, body: Buffer, headers: Record<string, string>): Promise<void> {
    const breaker = this.breaker(url);
    const attempts = this.opts.attempts ?? 3;
    const budget = this.opts.deliveryBudgetMs ?? 2000;
    const requestTimeout = this.opts.requestTimeoutMs ?? 1000;
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      const left = budget - (Date.now() - started);
      try {
        await breaker.fire(body, headers, Math.max(1, Math.min(requestTimeout, left)));
        return;
      } catch (err) {
        if ((err as { code?: string }).code === 'EOPENBREAKER') {
          throw new Error('circuit breaker open after repeated failures; failing fast');
        }
        if (!retriable(err) || attempt >= attempts) throw err;
        // Equal jitter: half the delay fixed, half random, so retries of many senders spread.
        const d = (this.opts.retryDelayMs ?? 100) * 2 ** (attempt - 1);
        const delay = d / 2 + (Math.random() * d) / 2;
        if (Date.now() - started + delay >= budget) throw err;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  private breaker(url: string): CircuitBreaker<[Buffer, Record<string, string>, number], void> {
    let b = this.breakers.get(url);
    if (b) {
      this.breakers.delete(url); // re-inserted below: the map's order is least recently used first
    } else {
      b = new CircuitBreaker((body: Buffer, headers: Record<string, string>, timeoutMs: number) => post(url, body, headers, timeoutMs), {
        timeout: false, // each post has its own AbortSignal timeout
        volumeThreshold: this.opts.breakerVolumeThreshold ?? 5,
        errorThresholdPercentage: this.opts.breakerErrorPercentage ?? 50,
        resetTimeout: this.opts.breakerResetMs ?? 5000,
        rollingCountTimeout: this.opts.breakerWindowMs ?? 10_000,
        // A 4xx other than 429 means the destination is up and answered: not a failure of it.
        errorFilter: (err: unknown) => err instanceof PostError && isClientError(err.status),
      });
      b.on('open', () => this.logger.warn({ url, resetMs: this.opts.breakerResetMs ?? 5000 }, 'circuit breaker opened: failing fast'));
      b.on('halfOpen', () => this.logger.info({ url }, 'circuit breaker half-open: letting one probe through'));
      b.on('close', () => this.logger.info({ url }, 'circuit breaker closed: destination answers again'));
      if (this.breakers.size >= MAX_BREAKERS) {
        const [oldest, old] = this.breakers.entries().next().value!;
        old.shutdown();
        this.breakers.delete(oldest);
      }
    }
    this.breakers.set(url, b);
    return b;
  }
}

async function post(url: string, body: Buffer, headers: Record<string, string>, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new PostError(describe(err));
  }
  const text = await res.text().catch(() => '');
  if (res.ok) return;
  throw new PostError(`answered ${res.status}: ${problemDetail(text) ?? res.statusText}`, res.status);
}

function retriable(err: unknown): boolean {
  return !(err instanceof PostError) || !isClientError(err.status);
}

function isClientError(status: number | undefined): boolean {
  return status !== undefined && status >= 400 && status < 500 && status !== 429;
}

function problemDetail(text: string): string | null {
  try {
    const p = JSON.parse(text) as { detail?: unknown };
    if (typeof p?.detail === 'string') return p.detail;
  } catch {
    /* not JSON */
  }
  return text ? text.slice(0, 200) : null;
}

/** fetch's errors hide the reason in `cause` (ECONNREFUSED, ...) or name it (TimeoutError). */
function describe(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return 'no answer in time';
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

const silentLogger: TransportLogger = { info() {}, warn() {}, error() {} };
