import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { EventEmitter } from 'node:events';
import pLimit from 'p-limit';
import { begin, BeginInput, EngineConfig, keptAs, sendsOf, step, StepResult, TxEvent, TxState } from '../../../libs/engine';
import { ProtocolMessage } from '../../../libs/protocol';
import { MessageTransport } from '../../../libs/transport/transport';
import { CONFIG, CoordinatorConfig } from '../config/config';
import { DecisionLog, IdempotencyKey, InsertResult } from '../log/decision-log';
import { MetricsService } from '../metrics/metrics.service';
import { AnswerTimes } from './answer-times';
import { CoordinatorCrashHooks } from './crash-hooks';
import { ResendBudget } from './resend-budget';
import { TxTimers } from './timers';
import { TRANSPORT } from './tokens';

/**
 * Steps started by timers (deadlines, resends) under way at once. Thousands of transactions begun
 * together reach their deadlines together (after a crash, all of them): stepping them all at once
 * held thousands of reads and saves in memory and let them time out in the queue (TX_DB_TIMEOUT_MS),
 * to be retried by the sweep. One group-commit statement's worth at a time keeps the log busy.
 */
const TIMER_STEPS_AT_ONCE = 256;
/**
 * A vote that finds its transaction still active is stepped once more after this long: it
 * overtook the save of `preparing` (the prepares leave ahead of it, perhaps from another replica).
 */
const VOTE_AGAIN_AFTER_MS = 100;
/**
 * Steps of answers (votes, acks) that the inbox does not wait for, at most; beyond, it waits for
 * each (see stepAnswer). Bounds the memory the steps hold when answers come faster than the log
 * takes them.
 */
const ANSWER_STEPS_UNAWAITED = 2048;
/** Sends remembered for answer-time samples at most (a sample lost is harmless). */
const LAST_SENDS_AT_MOST = 100_000;

/** Messages a step sent ahead of its persist (see sendAhead): when they left, and whether they got out. */
interface SentAhead {
  at: number;
  messages: ProtocolMessage[];
  /** Rejects with the send's error. */
  done: Promise<void>;
}

/** An event without its time: the driver stamps `now` under the transaction's lock. */
export type TimelessEvent = TxEvent extends infer E ? (E extends TxEvent ? Omit<E, 'now'> : never) : never;

/**
 * The driver of the engine. For each event: read the transaction from the decision log, step the
 * engine, save the new state and commit; only then send the messages and set the timers the step
 * asked for. That order is the write-ahead rule: a decision is durable before it leaves. The one
 * exception is the engine's to make: messages it places before the persist (the prepares) leave
 * while the save is under way. What the engine only remembers (votes and acks that decide nothing)
 * the log holds in memory and writes with the next durable step, or when the resend timer fires.
 */
@Injectable()
export class CoordinatorService implements OnApplicationShutdown {
  private readonly timers = new TxTimers();
  private readonly decided = new EventEmitter().setMaxListeners(0);
  private readonly engine: EngineConfig;
  /** TEST-ONLY crash points (TX_TEST_CRASH_AT); inert unless set. */
  private readonly crash: CoordinatorCrashHooks;
  /** Per transaction, the latest step that set its resend timer after its send, while that send is under way (see carryOut). */
  private readonly stepSeq = new Map<string, number>();
  private stepCounter = 0;
  /** Steps (begin, apply) under way, for graceful shutdown. */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Answer steps under way that the inbox did not wait for (see stepAnswer). */
  private answerStepsUnawaited = 0;
  /** Shutting down: no more protocol messages or timers start steps. */
  private intakeClosed = false;
  /** Resends per second, following the answers per second (see postponeResend). */
  private readonly resendBudget = new ResendBudget();
  /** Timer-fired steps wait here for a turn (see TIMER_STEPS_AT_ONCE). */
  private readonly timerSteps = pLimit(TIMER_STEPS_AT_ONCE);
  /** How long answers take lately; a resend waits until its answer is overdue (see resendWait). */
  private readonly answerTimes: AnswerTimes;
  /** Per transaction, when this process last sent a step's messages, their type, and whether that type went out before. */
  private readonly lastSends = new Map<string, { at: number; type: ProtocolMessage['type']; repeated: boolean }>();

  constructor(
    private readonly log: DecisionLog,
    @Inject(TRANSPORT) private readonly transport: MessageTransport,
    @Inject(CONFIG) config: CoordinatorConfig,
    private readonly logger: PinoLogger,
    private readonly metrics: MetricsService,
  ) {
    this.engine = { resendInitialMs: config.resendInitialMs, resendMaxMs: config.resendMaxMs };
    this.answerTimes = new AnswerTimes(config.resendInitialMs);
    this.crash = new CoordinatorCrashHooks(config.testCrashAt);
    this.logger.setContext('coordinator');
  }

  begin(input: Omit<BeginInput, 'now'>, idempotency?: IdempotencyKey): Promise<InsertResult | { error: string }> {
    return this.track(this.beginNow(input, idempotency));
  }

  /** Applies one event; null when the transaction is unknown. */
  apply(txId: string, event: TimelessEvent): Promise<StepResult | null> {
    return this.track(this.applyNow(txId, event));
  }

  /**
   * Graceful shutdown, first step: protocol messages are refused from now on (Kafka redelivers
   * them, HTTP senders send again), timers no longer fire, and requests waiting for an outcome
   * are answered with the state as it is. Steps already under way go on (see `settled`).
   */
  closeIntake(): void {
    this.intakeClosed = true;
    this.timers.clearAll();
    this.timerSteps.clearQueue();
    for (const txId of this.decided.eventNames()) this.decided.emit(txId);
  }

  /**
   * Resolves once no step is under way, or after `timeoutMs`; returns how many are still under
   * way. A step cut short by the exit is safe: its database transaction either committed (then
   * recovery resends what it had to send) or left nothing.
   */
  async settled(timeoutMs: number): Promise<number> {
    const until = Date.now() + timeoutMs;
    while (this.inFlight.size > 0 && Date.now() < until) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.inFlight]),
        new Promise((resolve) => (timer = setTimeout(resolve, until - Date.now()))),
      ]);
      clearTimeout(timer);
    }
    return this.inFlight.size;
  }

  private track<T>(step: Promise<T>): Promise<T> {
    this.inFlight.add(step);
    const done = () => this.inFlight.delete(step);
    step.then(done, done);
    return step;
  }

  private async beginNow(input: Omit<BeginInput, 'now'>, idempotency?: IdempotencyKey): Promise<InsertResult | { error: string }> {
    const r = begin({ ...input, now: Date.now() });
    if (r.error) return { error: r.error.message };
    const inserted = await this.log.insert(r.state, idempotency);
    if (inserted.created) {
      this.metrics.onBegin(r.state);
      this.logger.info({ txId: r.state.id, protocol: r.state.protocol }, 'transaction begun');
      await this.carryOut(r.state.id, r, 'begin');
    }
    return inserted;
  }

  private async applyNow(txId: string, event: TimelessEvent): Promise<StepResult | null> {
    let before: TxState | undefined;
    let ahead: SentAhead | undefined;
    let cutBeforeSave = false;
    const saved = await this.log.update(txId, (state) => {
      before = state;
      const r = step(state, { ...event, now: Date.now() } as TxEvent, this.engine);
      const kept = keptAs(r);
      this.crash.beforePersist(state, r);
      cutBeforeSave = this.crash.cutBeforeSave(state, r);
      // Called again when the save lost a race with another replica: sent again then (harmless).
      ahead = this.sendAhead(txId, r);
      return { next: kept && !cutBeforeSave ? r.state : null, hold: kept === 'remember', result: r };
    }, {
      // A resend means the transaction is slow: the votes or acks held in memory go to the log then.
      writeBack: event.type === 'resend',
      // A vote for a transaction known here as active answers a prepare that left from another
      // replica, or ahead of its save: the log may have moved on since this process last saw it.
      readLogIf: event.type === 'vote' ? (s) => s.phase === 'active' : undefined,
    });
    if (cutBeforeSave) {
      // TEST-ONLY (TX_TEST_CRASH_AT): the prepares got out, the save never happened; the process dies.
      await ahead?.done.catch(() => undefined);
      this.crash.hit('before-preparing-persist');
    }
    if (!saved) return null;
    const r = saved.result;
    if (r.error) return r;
    this.metrics.onStep(before!, r.state, r.effects, event.type);
    this.crash.afterRecord(before!, event, r);
    const cut = this.crash.cutAfterFirstSend(before!, r);
    // The step is durable: its messages leave without the caller waiting for them (carryOut hands
    // them to the transport at once, in step order). Waiting would chain requests over HTTP into a
    // cycle: a participant's vote request would wait for the decision to reach that participant,
    // which is still busy sending the vote. A failed send is the resend timer's to repeat.
    void this.track(this.carryOut(txId, r, event.type, event.type === 'resend' ? event.attempt + 1 : 0, cut ? () => this.crash.hit(cut) : undefined, ahead))
      .catch((err) => this.logger.error({ txId, err: String(err) }, 'carrying out a step failed; the sweep will retry'));
    return r;
  }

  /**
   * The transaction once it has an outcome, or as it is after `waitMs`. `current`: its state as a
   * step just returned it, so the first look needs no read (a decision after that step wakes us).
   */
  async waitForOutcome(txId: string, waitMs: number, current?: TxState): Promise<TxState | null> {
    const until = Date.now() + waitMs;
    const over = () => Date.now() >= until || this.intakeClosed;
    let state = current ?? (await this.log.get(txId));
    for (;;) {
      if (!state || state.outcome !== null || over()) return state;
      // Woken by this replica's decision (with the state it saved: no need to read it back);
      // else look at least every second for another replica's: at the outcome alone, reading the
      // whole transaction only once there is one (or to answer with it as it is, the wait over).
      const saved = await new Promise<TxState | undefined>((resolve) => {
        const done = (s?: TxState) => { clearTimeout(timer); this.decided.off(txId, done); resolve(s); };
        const timer = setTimeout(done, Math.min(until - Date.now(), 1000));
        this.decided.once(txId, done);
      });
      if (saved) return saved;
      if (!over() && (await this.log.decided(txId)) === false && !over()) continue;
      state = await this.log.get(txId);
    }
  }

  /** One protocol message from a participant. */
  async receive(m: ProtocolMessage): Promise<void> {
    // Not handled: Kafka delivers it again (to whoever has the partition next), HTTP senders resend.
    if (this.intakeClosed) throw new Error('coordinator shutting down: message left for redelivery');
    this.metrics.onReceived(m.type);
    this.resendBudget.onReceived();
    const sent = this.lastSends.get(m.txId);
    const answers = sent && (m.type === 'vote' ? sent.type === 'prepare' : m.type === 'ack' && m.of === sent.type);
    if (answers && !sent.repeated) {
      this.answerTimes.observe(Date.now() - sent.at);
      this.metrics.onAnswerTimeout(this.answerTimes.timeoutMs());
    }
    const log = { txId: m.txId, participant: m.participant, type: m.type };
    switch (m.type) {
      case 'vote': {
        this.logger.info({ ...log, vote: m.vote, reason: m.reason }, 'vote received');
        const vote: TimelessEvent = { type: 'vote', participant: m.participant, vote: m.vote, reason: m.reason };
        return this.stepAnswer(m.txId, vote, (r) => {
          if (!r) this.logger.warn(log, 'vote for an unknown transaction ignored');
          else if (r.state.phase === 'active') this.voteAgainLater(m.txId, vote);
        });
      }
      case 'ack':
        this.logger.info({ ...log, of: m.of }, 'ack received');
        return this.stepAnswer(m.txId, { type: 'ack', participant: m.participant, of: m.of });
      case 'status-request': {
        this.logger.info(log, 'status request');
        const r = await this.apply(m.txId, { type: 'status-request', participant: m.participant });
        // Presumed abort: no record of the transaction means it did not commit. With no record
        // there is no enlisted URL either: over HTTP only TX_PARTICIPANT_URLS can route this.
        if (!r) {
          await this.transport.send([{
            v: 1, type: 'abort', txId: m.txId, participant: m.participant, protocol: m.protocol,
            sentAt: new Date().toISOString(), reason: 'unknown-transaction',
          }]);
        }
        return;
      }
      default:
        this.logger.warn(log, 'message meant for a participant arrived at the coordinator; ignored');
    }
  }

  /**
   * Steps an answer without the inbox waiting for the step, up to ANSWER_STEPS_UNAWAITED at once.
   * A Kafka consumer fetches again only when every message of its last fetch is handled, so waiting
   * for the step that makes a decision durable (a group commit) held every partition's next answers
   * behind it: under load the inbox fell behind. Not waiting gives up nothing the protocol needs:
   * the step's own order is kept (steps of one transaction queue in the log in the order they
   * start), and an answer lost because the coordinator stopped before its step was saved is asked
   * for again by the resend that recovery sends, as for answers held in memory. A failed step is
   * the resend's to repeat too.
   */
  private async stepAnswer(txId: string, event: TimelessEvent, then?: (r: StepResult | null) => void): Promise<void> {
    const stepped = this.apply(txId, event).then(then);
    if (this.answerStepsUnawaited >= ANSWER_STEPS_UNAWAITED) return stepped;
    this.answerStepsUnawaited++;
    void stepped
      .catch((err) => this.logger.warn({ txId, type: event.type, err: String(err) }, 'answer step failed; a resend will ask again'))
      .finally(() => this.answerStepsUnawaited--);
  }

  /** Steps a vote once more a little later (see VOTE_AGAIN_AFTER_MS); a resend would ask for it only much later. */
  private voteAgainLater(txId: string, vote: TimelessEvent): void {
    setTimeout(() => {
      if (this.intakeClosed) return;
      void this.apply(txId, vote).catch((err) => this.logger.warn({ txId, err: String(err) }, 'vote stepped again failed; a resend will ask again'));
    }, VOTE_AGAIN_AFTER_MS).unref();
  }

  /**
   * Recovers one unfinished transaction found in the log (at start, or by the sweep), stepping the
   * state as it was read there: resending needs no write, so most recoveries cost no round trip.
   * A stale read is harmless then (a prepare or a durable decision sent again; the timers it sets
   * step on fresh reads). A step that changes the state (presumed abort past the deadline) goes
   * through the log on the state as it is now.
   *
   * With `sendAfter`, its messages and timers wait for that promise: start-up recovery reads and
   * steps every transaction first, without the event loop busy encoding the sends of those read
   * before, and then lets them go.
   */
  async recover(found: TxState, sendAfter?: Promise<void>): Promise<void> {
    if (this.holdsTimers(found.id) || this.intakeClosed) return;
    const r = step(found, { type: 'recovered', now: Date.now() }, this.engine);
    if (r.error || keptAs(r) === 'persist') {
      await this.apply(found.id, { type: 'recovered' });
      return;
    }
    this.metrics.onStep(found, r.state, r.effects, 'recovered');
    // Marks the transaction as driven here (holdsTimers) until its held step is carried out.
    const seq = ++this.stepCounter;
    this.stepSeq.set(found.id, seq);
    const carry = async () => {
      // A later step of this transaction (an answer read meanwhile) has carried out its own sends
      // and timers: this older one is not needed.
      if (this.stepSeq.get(found.id) !== seq) return;
      this.stepSeq.delete(found.id);
      if (!this.intakeClosed) await this.carryOut(found.id, r, 'recovered');
    };
    void this.track(sendAfter ? sendAfter.then(carry) : carry())
      .catch((err) => this.logger.error({ txId: found.id, err: String(err) }, 'carrying out a recovery failed; the sweep will retry'));
  }

  /**
   * How much longer a due resend waits (0: it goes now). Under load, answers are late rather than
   * lost, and resending anyway multiplies the load that made them late (every duplicate is answered
   * again): the system collapses into resends. So a resend first waits until its answer is overdue
   * by the answer times lately seen (AnswerTimes, at most TX_RESEND_MAX_MS after the send).
   * The partition of the coordinator's inbox where the answer arrives (its key is the transaction
   * id) may also hold a backlog, with the answer a resend would ask for already in it: the resend
   * then waits another interval, for as long as that partition is behind. A resend into it would
   * only lengthen it: every transaction on a partition that fell behind resent into the same
   * partition, which then never caught up (BENCHMARKS.md, seventh session). A message really lost
   * is still resent, once its partition has been read up to date. Beyond that,
   * resends of all transactions together keep within a budget that follows the rate of answers
   * (ResendBudget), so they never outgrow the traffic that is getting through. While the inbox
   * cannot be read at all (the Kafka consumer joining its group, as after a restart, or
   * rebalancing), every resend waits: no answer could be read, and after a crash with thousands in
   * flight the resends would bury the first sends of recovery. A resend that goes backs the answer
   * timeout off (AnswerTimes.backOff).
   */
  private resendWait(txId: string, interval: number): number {
    const sent = this.lastSends.get(txId);
    const overdueAt = sent && !sent.repeated ? sent.at + Math.min(this.answerTimes.timeoutMs(), this.engine.resendMaxMs) : 0;
    const now = Date.now();
    if (overdueAt > now) {
      this.metrics.onResendPostponed();
      return overdueAt - now;
    }
    if (this.postponeResend(txId)) return interval;
    this.answerTimes.backOff(this.engine.resendInitialMs, this.engine.resendMaxMs);
    return 0;
  }

  private postponeResend(txId: string): boolean {
    const wait = this.transport.receiving?.() === false || (this.transport.backlog?.(txId) ?? 0) > 0 || !this.resendBudget.take();
    if (wait) this.metrics.onResendPostponed();
    return wait;
  }

  holdsTimers(txId: string): boolean {
    // A step whose send is still under way arms its resend timer when the send ends.
    return this.timers.has(txId) || this.stepSeq.has(txId);
  }

  onApplicationShutdown(): void {
    this.timers.clearAll();
  }

  /**
   * Hands the messages the step placed ahead of its persist (prepares) to the transport at once,
   * while the log saves the step; carryOut waits for them. None: undefined.
   */
  private sendAhead(txId: string, r: StepResult): SentAhead | undefined {
    if (r.error) return undefined;
    const { ahead } = sendsOf(r);
    if (ahead.length === 0) return undefined;
    const sent: SentAhead = { at: Date.now(), messages: ahead, done: this.transport.send(ahead, routesOf(r.state)) };
    // Whoever waits for it sees the error; a step whose save failed has no one waiting.
    void this.track(sent.done).catch(() => undefined);
    return sent;
  }

  private async carryOut(
    txId: string, r: StepResult, cause: string, resendAttempt = 0, crashAfterFirstSend?: () => void, ahead?: SentAhead,
  ): Promise<void> {
    const state = r.state;
    if (keptAs(r) === 'persist') {
      this.logger.info({ txId, state: state.phase, outcome: state.outcome, reason: state.reason, cause }, 'transaction saved');
      if (state.outcome !== null) this.decided.emit(txId, state);
    }
    // Without `ahead` (begin, recovery) nothing left yet: every message goes now.
    const split = sendsOf(r);
    const sends = ahead ? split.afterPersist : [...split.ahead, ...split.afterPersist];
    const sending = sends.length > 0 || ahead !== undefined;
    const now = Date.now();
    // The resend timer is armed once this step's send has finished (its delay counted from then),
    // so a slow or failing send is never overlapped by the next resend of the same transaction:
    // with the broker down, overlapping resends would pile up and go out all at once on its return.
    // A step that sets the resend timer or clears the timers takes a number; a deferred arm is
    // dropped when a later such step came meanwhile (its timers are the current ones).
    const touchesResend = r.effects.some((e) => e.type === 'clear-timers' || (e.type === 'set-timer' && e.timer === 'resend'));
    const seq = touchesResend ? ++this.stepCounter : undefined;
    if (seq !== undefined) this.stepSeq.set(txId, seq);
    const afterSend: (() => void)[] = [];
    for (const e of r.effects) {
      if (e.type === 'clear-timers') {
        this.timers.clear(txId);
        this.lastSends.delete(txId);
      }
      if (e.type === 'set-timer') {
        const fire = (attempt: number) => {
          if (this.intakeClosed) return; // shutting down: recovery picks it up after the restart
          const wait = e.timer === 'resend' ? this.resendWait(txId, Math.max(0, e.at - now)) : 0;
          if (wait > 0) {
            // The answer is not overdue yet, or may be waiting in our own inbox: resending now would only add to the load.
            this.timers.set(txId, 'resend', Date.now() + wait, Date.now(), fire, attempt);
            return;
          }
          const event: TimelessEvent = e.timer === 'deadline' ? { type: 'deadline' } : { type: 'resend', attempt };
          void this.timerSteps(() => (this.intakeClosed ? null : this.apply(txId, event)))
            .catch((err) => this.logger.warn({ txId, err: String(err) }, `${e.timer} timer failed; the sweep will retry`));
        };
        if (e.timer === 'deadline' || !sending) this.timers.set(txId, e.timer, e.at, now, fire, resendAttempt);
        else afterSend.push(() => this.timers.set(txId, e.timer, Date.now() + (e.at - now), Date.now(), fire, resendAttempt));
      }
    }
    const armResend = () => {
      if (seq === undefined || this.stepSeq.get(txId) !== seq) return;
      this.stepSeq.delete(txId);
      afterSend.forEach((arm) => arm());
    };
    if (crashAfterFirstSend) {
      // TEST-ONLY (TX_TEST_CRASH_AT): one message of the step leaves, then the process dies.
      await this.transport.send(sends.slice(0, 1), routesOf(state)).catch(() => undefined);
      crashAfterFirstSend();
    }
    if (!sending) return armResend();
    const sentAt = ahead?.at ?? Date.now();
    try {
      if (ahead) await ahead.done;
      if (sends.length > 0) await this.transport.send(sends, routesOf(state));
      const all = [...(ahead?.messages ?? []), ...sends];
      this.noteSend(txId, cause, sentAt, all);
      this.logger.info({ txId, sent: all.map((m) => `${m.type}:${m.participant}`) }, 'messages sent');
    } catch (err) {
      // Not lost: the resend timer of this step sends again with backoff.
      this.metrics.onSendFailed();
      this.lastSends.delete(txId); // nothing on its way to wait for
      this.logger.warn({ txId, err: String(err) }, 'send failed; will resend');
    } finally {
      armResend();
    }
  }

  /**
   * Answers to the first send of a type are answer-time samples. Once a type has gone out twice
   * (a resend, or a decision sent again for a duplicate vote) its answers may be to either send,
   * so they are none (Karn's rule).
   */
  private noteSend(txId: string, cause: string, at: number, sends: ProtocolMessage[]): void {
    const type = sends[0].type;
    const repeated = cause === 'resend' || this.lastSends.get(txId)?.type === type;
    if (this.lastSends.size >= LAST_SENDS_AT_MOST) this.lastSends.clear();
    this.lastSends.set(txId, { at, type, repeated });
  }
}

/** Where the HTTP transport reaches each participant that enlisted with a URL (Kafka ignores it). */
function routesOf(state: TxState): Map<string, string> {
  return new Map(state.participants.flatMap((p) => (p.url ? [[p.name, p.url] as [string, string]] : [])));
}
