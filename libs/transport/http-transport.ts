import CircuitBreaker from 'opossum';
import { Agent, Dispatcher } from 'undici';
import { Slots } from '../concurrency/slots';
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
  /**
   * Posts under way to one destination at most, each on a kept-alive connection of its own
   * (default 16). More wait for one of them to finish, within deliveryBudgetMs: a busy receiver
   * gets its work at the pace it answers instead of a flood of new connections, and a post
   * that only waited here counts nothing against the destination's breaker.
   */
  connectionsPerDestination?: number;
  /** Posts of one message, first included (default 3). */
  attempts?: number;
  /** First pause between attempts, doubling, with jitter (default 100). */
  retryDelayMs?: number;
  /**
   * Attempts of one message start within this (default 2000), each with its whole request
   * timeout; then send() rejects. A post never starts short of time, so a slow answer after a
   * wait for a connection is not taken for a failing destination.
   */
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
    /** No answer within the request timeout. */
    readonly timedOut = false,
  ) {
    super(message);
  }
}

/** Destinations (breaker and slots) kept at most; the least recently used one goes first. */
const MAX_DESTINATIONS = 1000;

/** What is kept per destination URL: its circuit breaker and the posts under way to it. */
interface Destination {
  breaker: CircuitBreaker<[Buffer, Record<string, string>, number], void>;
  slots: Slots;
}

/**
 * The protocol over HTTP (CONTRACT section 3b): the same message values and `tx-signature` header
 * as on Kafka, one message per POST.
 *
 * Sending: coordinator → participant messages go to `<participant url>/tx/messages` (the URL from
 * send()'s routes, else from participantUrls), the others to `<coordinatorUrl>/v1/messages`.
 * Messages to one URL go one after the other, in order; different URLs in parallel. At most
 * connectionsPerDestination posts are under way to one URL, on kept-alive connections (undici);
 * the rest wait their turn. A failed post is tried again a few times with backoff and jitter
 * within deliveryBudgetMs; after that send() rejects, and the caller's own resend takes over.
 * Each destination URL has a circuit breaker: after repeated failures (refused connections, 5xx,
 * 429, or timeouts from a destination that answered nothing for a whole window) it fails fast,
 * and after breakerResetMs lets one probe through.
 *
 * Receiving: receive() is the one decode path of both sides. The coordinator's web app calls it
 * from its route; a participant gets a small server of its own (`listen`). A readable message is
 * handed to the handler and answered 202 at once, without waiting for the handler: the handler may
 * itself post to the sender, which must not wait on this answer. A handler that fails is logged;
 * the sender's resend brings the message again, as a redelivery would on Kafka.
 */
export class HttpTransport implements MessageTransport {
  private readonly logger: TransportLogger;
  private readonly destinations = new Map<string, Destination>();
  private readonly agent: Agent;
  private readonly running = new Set<Promise<void>>();
  private handler?: MessageHandler;
  private listener?: MessageListener;
  private stopped = false;

  constructor(private readonly opts: HttpTransportOptions) {
    if (opts.role === 'participant' && !opts.coordinatorUrl) throw new Error('HttpTransport: coordinatorUrl is required for a participant');
    this.logger = opts.logger ?? silentLogger;
    // The same cap as the slots: without it undici opens a new connection for a post that comes
    // as another's answer is read, before that connection is free again (measured: 6 connections
    // for 3 slots). Keep-alive below Node's server default (5 s), so a connection is not reused as
    // the server closes it.
    this.agent = new Agent({ connections: this.connections, keepAliveTimeout: 4000 });
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
    for (const d of this.destinations.values()) d.breaker.shutdown();
    this.destinations.clear();
    await this.agent.destroy().catch(() => undefined); // posts still under way end now; resends cover them
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
    const { breaker, slots } = this.destinationAt(url);
    const attempts = this.opts.attempts ?? 3;
    const budget = this.opts.deliveryBudgetMs ?? 2000;
    const requestTimeout = this.opts.requestTimeoutMs ?? 1000;
    const started = Date.now();
    const left = () => Math.max(1, budget - (Date.now() - started));
    for (let attempt = 1; ; attempt++) {
      if (!(await slots.acquire(left()))) {
        throw new Error(`no free connection within the delivery budget (${slots.size} posts to it under way)`);
      }
      let err: unknown;
      try {
        await breaker.fire(body, headers, requestTimeout);
        return;
      } catch (e) {
        err = e;
      } finally {
        slots.release();
      }
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

  private get connections(): number {
    return this.opts.connectionsPerDestination ?? 16;
  }

  /** The destination's breaker and slots, kept for the most recently used MAX_DESTINATIONS URLs. */
  private destinationAt(url: string): Destination {
    let d = this.destinations.get(url);
    if (d) {
      this.destinations.delete(url); // re-inserted below: the map's order is least recently used first
    } else {
      const target = new URL(url);
      const windowMs = this.opts.breakerWindowMs ?? 10_000;
      let answeredAt = Date.now(); // a new destination has a window's grace, as if it had just answered
      const breaker = new CircuitBreaker(async (body: Buffer, headers: Record<string, string>, timeoutMs: number) => {
        await post(this.agent, target, body, headers, timeoutMs, () => (answeredAt = Date.now()));
      }, {
        timeout: false, // each post has its own AbortSignal timeout
        volumeThreshold: this.opts.breakerVolumeThreshold ?? 5,
        errorThresholdPercentage: this.opts.breakerErrorPercentage ?? 50,
        resetTimeout: this.opts.breakerResetMs ?? 5000,
        rollingCountTimeout: windowMs,
        // Not failures of the destination: a 4xx other than 429 (it is up and answered), and a
        // timeout while it answered some post within the window (slow under load, not down:
        // opening would stop every post to it for breakerResetMs and pile the resends up for
        // afterwards; the slots already bound what its slowness costs).
        errorFilter: (err: unknown) =>
          err instanceof PostError && (isClientError(err.status) || (err.timedOut && Date.now() - answeredAt < windowMs)),
      });
      breaker.on('open', () => this.logger.warn({ url, resetMs: this.opts.breakerResetMs ?? 5000 }, 'circuit breaker opened: failing fast'));
      breaker.on('halfOpen', () => this.logger.info({ url }, 'circuit breaker half-open: letting one probe through'));
      breaker.on('close', () => this.logger.info({ url }, 'circuit breaker closed: destination answers again'));
      d = { breaker, slots: new Slots(this.connections) };
      if (this.destinations.size >= MAX_DESTINATIONS) {
        const [oldest, old] = this.destinations.entries().next().value!;
        old.breaker.shutdown();
        this.destinations.delete(oldest);
      }
    }
    this.destinations.set(url, d);
    return d;
  }
}

/** One POST through the agent's kept-alive connections; `answered` is called when any answer comes. */
async function post(agent: Agent, target: URL, body: Buffer, headers: Record<string, string>, timeoutMs: number, answered: () => void): Promise<void> {
  let res: Dispatcher.ResponseData;
  try {
    res = await agent.request({ origin: target.origin, path: target.pathname + target.search, method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new PostError(describe(err), undefined, isTimeout(err));
  }
  answered();
  const text = await res.body.text().catch(() => '');
  if (res.statusCode >= 200 && res.statusCode < 300) return;
  throw new PostError(`answered ${res.statusCode}: ${problemDetail(text) ?? `HTTP ${res.statusCode}`}`, res.statusCode);
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

/** The reason of a failed post: a timeout, a socket error code (ECONNREFUSED, ...), or the message. */
function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  if (isTimeout(err)) return 'no answer in time';
  if (e?.code && !e.code.startsWith('UND_ERR')) return e.code; // ECONNREFUSED, ECONNRESET, ...
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

/** An AbortSignal.timeout() that ended the request. */
function isTimeout(err: unknown): boolean {
  return (err as { name?: string })?.name === 'TimeoutError';
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

const silentLogger: TransportLogger = { info() {}, warn() {}, error() {} };
