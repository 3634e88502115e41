import type { Logger } from 'pino';
import type { DataSource, QueryRunner } from 'typeorm';
import {
  CommitProtocol,
  isForParticipant,
  ParticipantToCoordinator,
  PrepareMessage,
  ProtocolMessage,
  PROTOCOL_VERSION,
} from '../protocol';
import type { MessageTransport } from '../transport/transport';
import { KeyedQueue } from '../concurrency/keyed-queue';
import {
  findRecord,
  HANDLER_SAVEPOINT,
  IN_DOUBT,
  insertRecordSql,
  listInDoubt,
  moveRecordSql,
  ParticipantRecord,
  startLockedTx,
} from './log-store';
import { commitTransactionWith } from './typeorm-transaction';
import { participantCrashPoints, ParticipantCrashPoint } from './crash-points';
import { runParticipantMigrations } from './schema';
import type { ParticipantRuntime, ParticipantTxState, TransactionParticipant, VoteResult } from './types';

/** Votes and acks carry at most this many characters of reason (the protocol's limit). */
const MAX_REASON = 500;
/** Status requests sent in one transport call at start-up. */
const RESUME_BATCH = 100;
/** How long stop() waits for running handlers before closing anyway. */
const STOP_DRAIN_MS = 30_000;

export interface RuntimeTiming {
  statusRequestAfterMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
}

export interface RuntimeDeps {
  name: string;
  participant: TransactionParticipant;
  dataSource: DataSource;
  transport: MessageTransport;
  /** The URL to enlist with, when the library built an HTTP transport. */
  url?: string | null;
  logger: Logger;
  timing: RuntimeTiming;
  /** Called once by stop(), after the transport stopped: closes what start-up opened. */
  onStopped?: () => Promise<void>;
}

type DecisionKind = 'commit' | 'abort' | 'pre-commit';

/** Statements to send with the local transaction's COMMIT, in order (see inLockedTx). */
type WithCommit = (...statements: string[]) => void;

interface Decision {
  kind: DecisionKind;
  txId: string;
  protocol: CommitProtocol;
  reason?: string;
}

/** Why a transaction is being watched: waiting for the decision, or retrying a failed handler. */
interface Tracker {
  txId: string;
  protocol: CommitProtocol;
  /** Status requests sent / retries made so far; drives the backoff. */
  attempt: number;
  timer?: NodeJS.Timeout;
  /** A decision whose handler failed; retried until it succeeds. */
  pending?: Decision;
}

type Vote = { vote: 'yes' | 'no'; reason?: string };

/** A decision's result: acknowledge, refuse (never acknowledge), or retry a failed handler. */
type DecisionOutcome =
  | { kind: 'ack'; state: ParticipantTxState; final: boolean }
  | { kind: 'refuse'; state: ParticipantTxState | null }
  | { kind: 'handler-failed'; error: unknown };

/**
 * Applies the protocol at one participant. Every message is handled inside a local transaction of
 * the participant's database, under a per-transaction lock: read the record, run the member's
 * handler, write the record, COMMIT; only then does the reply leave (persist before send).
 */
export class ParticipantRunner implements ParticipantRuntime {
  readonly name: string;
  readonly url: string | null;
  private readonly participant: TransactionParticipant;
  private readonly ds: DataSource;
  private readonly transport: MessageTransport;
  private readonly log: Logger;
  private readonly timing: RuntimeTiming;
  private readonly onStopped?: () => Promise<void>;
  /** TEST-ONLY crash points (TX_TEST_CRASH_AT); inert unless set. */
  private readonly crash: { hit(point: ParticipantCrashPoint): void };
  private readonly queue = new KeyedQueue();
  private readonly trackers = new Map<string, Tracker>();
  private started = false;
  private consuming = false;
  private stopping = false;
  private stopped?: Promise<void>;
  private _ready = false;

  constructor(deps: RuntimeDeps) {
    this.name = deps.name;
    this.url = deps.url ?? null;
    this.participant = deps.participant;
    this.ds = deps.dataSource;
    this.transport = deps.transport;
    this.log = deps.logger.child({ participant: deps.name });
    this.timing = deps.timing;
    this.onStopped = deps.onStopped;
    this.crash = participantCrashPoints(deps.name);
  }

  get ready(): boolean {
    return this._ready;
  }

  /** Creates the table, starts consuming, then asks about every transaction still in doubt. */
  async start(): Promise<void> {
    if (this.started) throw new Error('participant runtime already started');
    this.started = true;
    const applied = await runParticipantMigrations(this.ds);
    if (applied.length) this.log.info({ migrations: applied }, 'participant log migrated');
    // Read what is in doubt before consuming: a decision waiting on the topic may finish it first,
    // and a restarted participant still asks, so its recovery never depends on that race.
    const inDoubt = await listInDoubt(this.ds, this.name);
    await this.transport.start((message) => this.handle(message));
    this.consuming = true;
    await this.resume(inDoubt);
    this._ready = true;
    this.log.info(this.url ? { url: this.url } : {}, 'participant started');
  }

  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    this._ready = false;
    for (const t of this.trackers.values()) if (t.timer) clearTimeout(t.timer);
    this.trackers.clear();
    try {
      // Let the messages in hand finish, replies included, while the transport can still send;
      // deliveries from now on are refused, so they stay unconsumed for the next run.
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        this.queue.drain().then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), STOP_DRAIN_MS))),
      ]);
      clearTimeout(timer);
      if (!drained) this.log.warn({ running: this.queue.size }, 'handlers still running at stop; stopping anyway');
      if (this.consuming) await this.transport.stop();
    } finally {
      await this.onStopped?.();
      this.log.info('participant stopped');
    }
  }

  /**
   * The transport's handler. Resolves once the message is fully handled (reply sent); throws only
   * when it could not be handled (database or broker unreachable), so the transport redelivers.
   */
  handle(message: ProtocolMessage): Promise<void> {
    if (this.stopping) return Promise.reject(new Error('participant is stopping; the message stays for the next run'));
    if (!isForParticipant(message)) {
      this.log.warn({ txId: message.txId, type: message.type }, 'ignoring a message meant for the coordinator');
      return Promise.resolve();
    }
    if (message.participant !== this.name) {
      this.log.warn(
        { txId: message.txId, type: message.type, to: message.participant },
        'ignoring a message addressed to another participant',
      );
      return Promise.resolve();
    }
    return this.queue.run(message.txId, async () => {
      switch (message.type) {
        case 'prepare':
          return this.onPrepare(message);
        case 'commit':
        case 'abort':
        case 'pre-commit': {
          const reason = message.type === 'abort' ? message.reason : undefined;
          return this.onDecision({ kind: message.type, txId: message.txId, protocol: message.protocol, reason });
        }
      }
    });
  }

  // ---- prepare ---------------------------------------------------------------------------------

  private async onPrepare(m: PrepareMessage): Promise<void> {
    const log = this.log.child({ txId: m.txId });
    const deadline = new Date(m.deadline);
    const base = { txId: m.txId, participant: this.name, protocol: m.protocol, payload: m.payload, deadline };
    type Prepared = { vote: Vote; existing?: ParticipantRecord };
    let result: Prepared;
    try {
      result = await this.inLockedTx(m.txId, async (q, rec, withCommit): Promise<Prepared> => {
        if (rec) return { vote: answerFromRecord(rec), existing: rec };
        if (deadline.getTime() <= Date.now()) {
          withCommit(insertRecordSql({ ...base, state: 'aborted', reason: 'deadline-passed' }));
          return { vote: { vote: 'no', reason: 'deadline-passed' } };
        }
        let vote: Vote;
        try {
          vote = normalizeVote(
            await this.participant.prepare({
              txId: m.txId,
              participant: this.name,
              protocol: m.protocol,
              payload: m.payload,
              deadline,
              manager: q.manager,
              logger: log,
            }),
          );
        } catch (err) {
          log.warn({ err }, 'prepare handler failed; voting no');
          vote = { vote: 'no', reason: errorMessage(err) };
        }
        if (vote.vote === 'yes' && deadline.getTime() <= Date.now()) {
          log.warn({ deadline: m.deadline }, 'prepare handler finished after the deadline; voting no');
          vote = { vote: 'no', reason: 'deadline-passed' };
        }
        if (vote.vote === 'yes') {
          withCommit(insertRecordSql({ ...base, state: 'prepared' }));
        } else {
          withCommit(`ROLLBACK TO SAVEPOINT ${HANDLER_SAVEPOINT}`, insertRecordSql({ ...base, state: 'aborted', reason: vote.reason ?? 'vote-no' }));
        }
        return { vote };
      });
    } catch (err) {
      // 25P02: the handler voted yes but swallowed an SQL error, so its local transaction could
      // only roll back (and did, without its record). Record the no in a transaction of its own,
      // unless a prepare that ran meanwhile left a record to answer from.
      if ((err as { code?: string }).code !== '25P02') throw err;
      log.error({ err }, 'prepare handler voted yes on a failed local transaction; voting no');
      const no: Vote = { vote: 'no', reason: 'prepare-failed: local transaction aborted' };
      result = await this.inLockedTx(m.txId, async (_q, rec, withCommit): Promise<Prepared> => {
        if (rec) return { vote: answerFromRecord(rec), existing: rec };
        withCommit(insertRecordSql({ ...base, state: 'aborted', reason: no.reason }));
        return { vote: no };
      });
    }

    const { vote, existing } = result;
    if (!existing && vote.vote === 'yes') this.crash.hit('after-prepared-persist');
    if (existing) {
      log.info({ state: existing.state, vote: vote.vote }, 'duplicate prepare; answering from the record');
    } else {
      log.info({ vote: vote.vote, reason: vote.reason }, vote.vote === 'yes' ? 'prepared; voting yes' : 'voting no');
    }
    // Watch for a late decision from now on: the record is durable whether or not the vote gets out.
    const state = existing?.state ?? (vote.vote === 'yes' ? 'prepared' : 'aborted');
    if (IN_DOUBT.has(state) && !this.trackers.has(m.txId)) {
      const recordedDeadline = existing?.deadline ?? deadline;
      const wait = recordedDeadline.getTime() + this.timing.statusRequestAfterMs - Date.now();
      this.track(m.txId, m.protocol, Math.max(wait, 0));
    }
    await this.transport.send([this.outgoing(m.txId, m.protocol, { type: 'vote', ...vote })]);
    this.crash.hit('after-vote-send');
  }

  // ---- commit / abort / pre-commit -----------------------------------------------------------------

  private async onDecision(d: Decision): Promise<void> {
    const log = this.log.child({ txId: d.txId });
    const pending = this.trackers.get(d.txId)?.pending;
    if (pending && conflicts(pending.kind, d.kind)) {
      // We already hold the opposite decision (its handler is being retried).
      log.error(
        { of: d.kind, pending: pending.kind, alert: 'atomicity' },
        `PROTOCOL VIOLATION: received ${d.kind} after ${pending.kind}; not applying it and not acknowledging`,
      );
      return;
    }
    const outcome = await this.inLockedTx(d.txId, (q, rec, withCommit) => this.applyDecision(q, rec, d, log, withCommit)).catch(
      (error: unknown): DecisionOutcome => {
        // The COMMIT did not run, the handler's work is gone: a handler that let its local
        // transaction fail (25P02), or a record that was not in the state read (the move's guard,
        // P0001). Retried like a failing handler; anything else (the database unreachable) is
        // the transport's to redeliver.
        if (!['25P02', 'P0001'].includes((error as { code?: string }).code ?? '')) throw error;
        return { kind: 'handler-failed', error };
      },
    );
    switch (outcome.kind) {
      case 'ack': {
        if (outcome.final) this.untrack(d.txId);
        else this.clearPending(d.txId);
        log.info({ of: d.kind, state: outcome.state }, `acknowledging ${d.kind}`);
        if (d.kind === 'commit') this.crash.hit('after-commit-persist');
        if (d.kind === 'pre-commit') this.crash.hit('after-precommit-persist');
        await this.transport.send([this.outgoing(d.txId, d.protocol, { type: 'ack', of: d.kind })]);
        return;
      }
      case 'refuse':
        this.untrack(d.txId);
        // Acknowledging would tell the coordinator something that is not true; say it loudly.
        log.error(
          { of: d.kind, state: outcome.state ?? 'none', alert: 'atomicity' },
          `PROTOCOL VIOLATION: received ${d.kind} but this participant's record is ${outcome.state ?? 'absent'}; ` +
            'not applying it and not acknowledging',
        );
        return;
      case 'handler-failed': {
        const t = this.trackers.get(d.txId) ?? this.newTracker(d.txId, d.protocol);
        t.pending = d;
        t.attempt += 1;
        const delay = this.backoff(t.attempt);
        log.error({ err: outcome.error, of: d.kind, retryInMs: Math.round(delay) }, `${d.kind} handler failed; will retry`);
        this.schedule(t, delay);
        return;
      }
    }
  }

  private async applyDecision(
    q: QueryRunner,
    rec: ParticipantRecord | null,
    d: Decision,
    log: Logger,
    withCommit: WithCommit,
  ): Promise<DecisionOutcome> {
    const state = rec?.state ?? null;
    const runHandler = async (
      call: (ctx: Parameters<TransactionParticipant['commit']>[0]) => Promise<void>,
      to: ParticipantTxState,
    ): Promise<DecisionOutcome> => {
      try {
        await call({
          txId: d.txId,
          participant: this.name,
          protocol: d.protocol,
          payload: rec?.payload ?? {},
          reason: d.reason,
          manager: q.manager,
          logger: log,
        });
        withCommit(moveRecordSql(d.txId, this.name, rec!.state, to, d.kind === 'abort' ? d.reason : undefined));
        return { kind: 'ack', state: to, final: to === 'committed' || to === 'aborted' };
      } catch (error) {
        await q.query(`ROLLBACK TO SAVEPOINT ${HANDLER_SAVEPOINT}`);
        return { kind: 'handler-failed', error };
      }
    };

    switch (d.kind) {
      case 'commit':
        if (state === 'committed') return { kind: 'ack', state, final: true };
        if (state === 'prepared' || state === 'precommitted') {
          return runHandler((ctx) => this.participant.commit(ctx), 'committed');
        }
        return { kind: 'refuse', state };
      case 'abort':
        if (state === 'aborted') return { kind: 'ack', state, final: true };
        if (state === null) {
          // A tombstone, so that a prepare arriving late is refused.
          withCommit(insertRecordSql({ txId: d.txId, participant: this.name, protocol: d.protocol, state: 'aborted', reason: d.reason ?? 'abort' }));
          return { kind: 'ack', state: 'aborted', final: true };
        }
        // Not once pre-committed: in 3PC the commit decision is durable before any pre-commit leaves.
        if (state === 'prepared') {
          return runHandler((ctx) => this.participant.abort(ctx), 'aborted');
        }
        return { kind: 'refuse', state };
      case 'pre-commit':
        if (state === 'precommitted' || state === 'committed') return { kind: 'ack', state, final: state === 'committed' };
        if (state === 'prepared') {
          return runHandler(async (ctx) => {
            if (this.participant.preCommit) await this.participant.preCommit(ctx);
          }, 'precommitted');
        }
        return { kind: 'refuse', state };
    }
  }

  // ---- waiting for a decision ------------------------------------------------------------------

  /** Start-up recovery: every transaction in doubt at restart gets a status request now. */
  private async resume(inDoubt: Awaited<ReturnType<typeof listInDoubt>>): Promise<void> {
    if (!inDoubt.length) return;
    this.log.info({ count: inDoubt.length }, 'resuming in-doubt transactions; asking the coordinator');
    for (let i = 0; i < inDoubt.length; i += RESUME_BATCH) {
      const batch = inDoubt.slice(i, i + RESUME_BATCH);
      for (const r of batch) this.log.info({ txId: r.txId, state: r.state }, 'in doubt after restart; sending status-request');
      try {
        await this.transport.send(batch.map((r) => this.outgoing(r.txId, r.protocol, { type: 'status-request' })));
      } catch (err) {
        this.log.warn({ err }, 'could not send status requests at start-up; will retry');
      }
      for (const r of batch) {
        if (this.trackers.has(r.txId)) continue;
        const t = this.newTracker(r.txId, r.protocol);
        t.attempt = 1;
        this.schedule(t, this.backoff(1));
      }
    }
  }

  private newTracker(txId: string, protocol: CommitProtocol): Tracker {
    const t: Tracker = { txId, protocol, attempt: 0 };
    this.trackers.set(txId, t);
    return t;
  }

  private track(txId: string, protocol: CommitProtocol, delayMs: number): void {
    if (this.stopping) return;
    this.schedule(this.trackers.get(txId) ?? this.newTracker(txId, protocol), delayMs);
  }

  private untrack(txId: string): void {
    const t = this.trackers.get(txId);
    if (t?.timer) clearTimeout(t.timer);
    this.trackers.delete(txId);
  }

  /** A decision succeeded but the transaction is still in doubt (3PC pre-commit): keep asking. */
  private clearPending(txId: string): void {
    const t = this.trackers.get(txId);
    if (t?.pending) {
      t.pending = undefined;
      this.schedule(t, this.backoff(t.attempt));
    }
  }

  private schedule(t: Tracker, delayMs: number): void {
    if (this.stopping) return;
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => {
      t.timer = undefined;
      void this.queue.run(t.txId, () => this.onTimer(t)).catch((err) => {
        this.log.error({ err, txId: t.txId }, 'in-doubt timer failed');
      });
    }, delayMs);
    t.timer.unref();
  }

  private async onTimer(t: Tracker): Promise<void> {
    if (this.stopping || this.trackers.get(t.txId) !== t || t.timer) return;
    const log = this.log.child({ txId: t.txId });
    let commitDue: number | undefined;
    try {
      if (t.pending) {
        log.info({ of: t.pending.kind, attempt: t.attempt }, `retrying ${t.pending.kind}`);
        await this.onDecision(t.pending);
        return;
      }
      const rec = await findRecord(this.ds, t.txId, this.name);
      if (!rec || !IN_DOUBT.has(rec.state)) {
        this.untrack(t.txId);
        return;
      }
      if (rec.state === 'precommitted') {
        // 3PC timeout action (Skeen): pre-committed and no commit by the timeout, it commits on its
        // own. Safe: the coordinator made the commit decision durable before any pre-commit left.
        // `prepared` has no such action: it only ever asks (aborting there could break atomicity).
        commitDue = (rec.deadline?.getTime() ?? 0) + this.timing.statusRequestAfterMs;
        if (Date.now() >= commitDue) {
          log.warn({ attempt: t.attempt }, 'pre-committed and no commit by the timeout: committing on its own (3PC)');
          await this.onDecision({ kind: 'commit', txId: t.txId, protocol: rec.protocol });
          return;
        }
      }
      t.attempt += 1;
      log.info({ state: rec.state, attempt: t.attempt }, 'decision is late; sending status-request');
      await this.transport.send([this.outgoing(t.txId, rec.protocol, { type: 'status-request' })]);
    } catch (err) {
      log.warn({ err }, 'could not ask for or apply the decision; will retry');
      if (t.pending) t.attempt += 1;
    }
    if (this.trackers.get(t.txId) === t && !t.timer) {
      const delay = this.backoff(t.attempt);
      this.schedule(t, commitDue === undefined ? delay : Math.max(0, Math.min(delay, commitDue - Date.now())));
    }
  }

  /** Exponential backoff with equal jitter: attempt 1 waits ~initial, doubling up to the cap. */
  private backoff(attempt: number): number {
    const { retryInitialMs, retryMaxMs } = this.timing;
    const d = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30)));
    return d / 2 + (Math.random() * d) / 2;
  }

  // ---- plumbing --------------------------------------------------------------------------------

  /**
   * Runs `fn` in a local transaction holding this transaction's lock, with the current record.
   * Statements `fn` hands to withCommit are sent with the COMMIT, in its round trip (a new
   * record's insert, a record's move): a prepare or a decision then costs two round trips to
   * Postgres besides the handler's.
   */
  private async inLockedTx<T>(
    txId: string,
    fn: (q: QueryRunner, rec: ParticipantRecord | null, withCommit: WithCommit) => Promise<T>,
  ): Promise<T> {
    const q = this.ds.createQueryRunner();
    await q.connect();
    try {
      try {
        const lastly: string[] = [];
        const result = await fn(q, await startLockedTx(q, txId, this.name), (...sql) => lastly.push(...sql));
        await commitTransactionWith(q, lastly);
        return result;
      } catch (err) {
        if (q.isTransactionActive) await q.rollbackTransaction().catch(() => undefined);
        throw err;
      }
    } finally {
      await q.release();
    }
  }

  private outgoing(
    txId: string,
    protocol: CommitProtocol,
    body:
      | { type: 'vote'; vote: 'yes' | 'no'; reason?: string }
      | { type: 'ack'; of: DecisionKind }
      | { type: 'status-request' },
  ): ParticipantToCoordinator {
    return {
      v: PROTOCOL_VERSION,
      txId,
      participant: this.name,
      protocol,
      sentAt: new Date().toISOString(),
      ...body,
    } as ParticipantToCoordinator;
  }
}

/**
 * Whether `next` contradicts a decision already received. A pre-commit carries the commit decision
 * (the coordinator makes it durable before any pre-commit leaves), so it excludes abort like commit.
 */
function conflicts(held: DecisionKind, next: DecisionKind): boolean {
  return (held !== 'abort' && next === 'abort') || (held === 'abort' && next !== 'abort');
}

/** The vote a repeated prepare gets, from what is recorded. */
function answerFromRecord(rec: ParticipantRecord): Vote {
  return rec.state === 'aborted' ? { vote: 'no', reason: 'already-aborted' } : { vote: 'yes' };
}

function normalizeVote(v: VoteResult): Vote {
  if (v === 'yes' || v === 'no') return { vote: v };
  if (v && typeof v === 'object' && (v.vote === 'yes' || v.vote === 'no')) {
    const reason = typeof v.reason === 'string' && v.reason.length ? v.reason.slice(0, MAX_REASON) : undefined;
    return reason === undefined ? { vote: v.vote } : { vote: v.vote, reason };
  }
  throw new Error(`prepare returned ${JSON.stringify(v)}, expected 'yes', 'no' or { vote, reason? }`);
}

function errorMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return (msg || 'prepare failed').slice(0, MAX_REASON);
}
