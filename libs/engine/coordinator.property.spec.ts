/**
 * Whole-world property test of the coordinator engine (CONTRACT section 4), for 2PC and for 3PC.
 *
 * The real engine (`begin`/`step`, no mocks) runs inside a simulated world:
 *  - a driver that carries out effects the way the coordinator process must: the sends placed
 *    before a step's persist (prepares) leave first, then the persist is made durable (one
 *    database transaction), then the sends after it leave one by one;
 *    what a step only remembers (votes and acks that decide nothing) is lost in a crash;
 *    timers are in memory, `set-timer` replaces the timer of that kind, `clear-timers` drops both;
 *  - a client that requests commit or abort and enlists participants (also when no longer active,
 *    which the engine must refuse without a trace);
 *  - a network holding every in-flight message in both directions, where any message can be
 *    delivered in any order, duplicated or lost;
 *  - participants following CONTRACT section 4: vote yes or no on prepare (chosen per run), once
 *    yes never abort on their own, record the decision they are told, ack every decision message,
 *    repeat their vote on a duplicate prepare, send status-request while in doubt;
 *  - a clock that only moves forward; timers fire at or after their time, resends with the attempt
 *    counting up from the last progress;
 *  - coordinator crashes between steps and inside a step (before its persist: nothing durable, and
 *    of the sends placed ahead of it any number gone out; after its persist: the list of sends cut
 *    anywhere). A crash throws away every in-memory state
 *    and timer; a restart loads the last persisted state of every transaction and feeds
 *    `recovered` to each unfinished one (and a restart's own steps can be cut by a crash too).
 *
 * Checked after every step: atomicity over the whole history (never `commit` and `abort` sent for
 * one transaction), a durable outcome never changes, `commit` leaves only when the durable log
 * holds the commit decision, a participant told `commit` had voted yes, the engine never throws,
 * the in-memory state after a step that persists is the one persisted (and never differs from the
 * log in phase or outcome), refused events leave no trace.
 * At the end of each run the world settles (no loss, no crash, the client asks to commit what is
 * still active, everything delivered, timers fired, participants in doubt ask)
 * and every transaction must be final with every participant knowing the logged outcome.
 *
 * 3PC runs add participants that follow the 3PC participant rules (docs/PROTOCOL.md): pre-commit
 * moves a yes voter to precommitted (acknowledged); a precommitted participant whose timeout
 * fires (at random times) commits on its own and acknowledges commit; a prepared one never aborts
 * on its own, it asks. Checked in addition: pre-commit leaves only when the durable log holds the
 * commit decision in `precommitted`; commit leaves only once the transaction reached `committing`,
 * which needs every pre-commit acknowledged or the deadline passed; each participant is sent prepare, pre-commit and
 * commit in that order (delivery may reorder them); no participant is told abort after pre-commit;
 * and no participant ever records commit while another records abort.
 *
 * Reproduce a failure with the seed/path fast-check prints: FC_SEED=<seed> FC_PATH=<path>.
 * FC_RUNS=<n> runs more worlds (a soak), FC_STATS=1 prints what the runs covered.
 */
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import type { CommitProtocol, CoordinatorToParticipant, ParticipantToCoordinator } from '../protocol';
import { begin, step, Effect, EngineConfig, Outcome, StepResult, TxEvent, TxState, Vote } from './index';

// ---------------------------------------------------------------------------------------------
// Generated inputs

type Fault = null | { cut: 'before-persist'; sends: number } | { cut: 'after-persist'; sends: number };

interface TxSpec {
  /** Planned votes of the participants listed at begin (1-4). */
  initial: Vote[];
  /** Planned votes of participants the client may enlist later (0-2). */
  candidates: Vote[];
  timeoutMs: number;
}

interface WorldSpec {
  protocol: CommitProtocol;
  txs: TxSpec[];
  resendInitialMs: number;
  resendMaxMs: number;
  /** Whether this run's crash commands and crash faults take effect (some runs are crash-free). */
  crashes: boolean;
  /** Whether this run's network loses messages. */
  lossy: boolean;
}

type Command =
  | { k: 'client'; tx: number; op: 'commit' | 'abort' | 'enlist'; who: number; otherPayload: boolean; fault: Fault }
  | { k: 'deliver'; i: number; fault: Fault }
  | { k: 'duplicate'; i: number }
  | { k: 'lose'; i: number }
  | { k: 'status'; tx: number; who: number; fault: Fault }
  | { k: 'timer'; tx: number; timer: 'deadline' | 'resend'; late: number; fault: Fault }
  | { k: 'tick'; ms: number }
  | { k: 'crash' }
  /** A sweep that finds a transaction whose timers may be lost feeds it `recovered` without a crash. */
  | { k: 'sweep'; tx: number; fault: Fault }
  | { k: 'restart'; fault: Fault }
  /** A participant's own timer fires: precommitted (3PC) commits on its own, prepared asks. */
  | { k: 'ptimeout'; tx: number; who: number };

const voteArb: fc.Arbitrary<Vote> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Vote>('yes') },
  { weight: 1, arbitrary: fc.constant<Vote>('no') },
);

const txSpecArb: fc.Arbitrary<TxSpec> = fc.record({
  initial: fc.array(voteArb, { minLength: 1, maxLength: 4 }),
  candidates: fc.array(voteArb, { maxLength: 2 }),
  timeoutMs: fc.integer({ min: 300, max: 6000 }),
});

const worldArb = (protocol: CommitProtocol): fc.Arbitrary<WorldSpec> => fc.record({
  protocol: fc.constant(protocol),
  txs: fc.oneof(
    { weight: 3, arbitrary: fc.array(txSpecArb, { minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.array(txSpecArb, { minLength: 2, maxLength: 3 }) },
  ),
  resendInitialMs: fc.constantFrom(50, 100, 250, 500),
  resendMaxMs: fc.constantFrom(1000, 4000),
  crashes: fc.boolean(),
  lossy: fc.boolean(),
});

const faultArb: fc.Arbitrary<Fault> = fc.oneof(
  { weight: 24, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.nat({ max: 4 }).map((sends) => ({ cut: 'before-persist' as const, sends })) },
  { weight: 2, arbitrary: fc.nat({ max: 4 }).map((sends) => ({ cut: 'after-persist' as const, sends })) },
);

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('client' as const), tx: fc.nat(), op: fc.constantFrom('commit' as const, 'commit' as const, 'commit' as const, 'abort' as const, 'enlist' as const, 'enlist' as const), who: fc.nat(), otherPayload: fc.boolean(), fault: faultArb }) },
  { weight: 14, arbitrary: fc.record({ k: fc.constant('deliver' as const), i: fc.nat(), fault: faultArb }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('duplicate' as const), i: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('lose' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('status' as const), tx: fc.nat(), who: fc.nat(), fault: faultArb }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('timer' as const), tx: fc.nat(), timer: fc.constantFrom('deadline' as const, 'resend' as const), late: fc.nat({ max: 300 }), fault: faultArb }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('tick' as const), ms: fc.oneof({ weight: 6, arbitrary: fc.nat({ max: 250 }) }, { weight: 1, arbitrary: fc.integer({ min: 1000, max: 5000 }) }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'crash' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('sweep' as const), tx: fc.nat(), fault: faultArb }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('restart' as const), fault: faultArb }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('ptimeout' as const), tx: fc.nat(), who: fc.nat() }) },
);

// ---------------------------------------------------------------------------------------------
// The simulated world

interface Participant {
  name: string;
  payload: Record<string, unknown>;
  plannedVote: Vote;
  /** The vote this participant gave (durable on its side); null before its first prepare. */
  vote: Vote | null;
  /** The outcome it recorded; a no voter aborts on its own. */
  decision: Outcome | null;
  /** 3PC: it recorded pre-commit. */
  preCommitted: boolean;
}

interface Tx {
  id: string;
  mem: TxState;
  durable: TxState;
  /** The first outcome that ever became durable; it must never change. */
  durableOutcome: Outcome | null;
  timers: { deadline?: number; resend?: { at: number; attempt: number } };
  participants: Map<string, Participant>;
  /** Names the client can (try to) enlist: the candidates and, to exercise the no-op, the initial ones. */
  enlistable: string[];
  sentCommit: Set<string>;
  sentAbort: Set<string>;
  /** Per participant, the message types sent to it so far (for the order prepare → pre-commit → commit). */
  sent: Map<string, Set<string>>;
}

interface Msg {
  to: 'participant' | 'coordinator';
  body: CoordinatorToParticipant | ParticipantToCoordinator;
}

const FINAL = new Set(['committed', 'aborted']);
const T0 = Date.UTC(2026, 0, 1);

const stats = { selfCommits: 0, preCommitsSent: 0, commitsAtDeadline: 0, runs: 0, txs: 0, commits: 0, aborts: 0, crashes: 0, cutSteps: 0, steps: 0, multiTxRuns: 0, enlisted: 0, commitsInCrashyRuns: 0, reasons: {} as Record<string, number> };

class PropertyFailure extends Error {}

class World {
  clock = T0;
  down = false;
  crashCount = 0;
  network: Msg[] = [];
  txs: Tx[] = [];
  trace: string[] = [];
  readonly config: EngineConfig;
  readonly crashes: boolean;
  readonly lossy: boolean;
  readonly protocol: CommitProtocol;

  constructor(spec: WorldSpec) {
    this.protocol = spec.protocol;
    this.crashes = spec.crashes;
    this.lossy = spec.lossy;
    this.config = { resendInitialMs: spec.resendInitialMs, resendMaxMs: spec.resendMaxMs };
    spec.txs.forEach((t, ti) => {
      const id = `00000000-0000-4000-8000-${String(ti).padStart(12, '0')}`;
      const participants = new Map<string, Participant>();
      const mk = (name: string, plannedVote: Vote) =>
        participants.set(name, { name, payload: { n: name }, plannedVote, vote: null, decision: null, preCommitted: false });
      t.initial.forEach((v, i) => mk(`p${i}`, v));
      t.candidates.forEach((v, i) => mk(`e${i}`, v));
      const r = begin({
        id, protocol: spec.protocol, timeoutMs: t.timeoutMs, now: this.clock,
        participants: t.initial.map((_, i) => ({ name: `p${i}`, payload: { n: `p${i}` } })),
      });
      if (r.error) this.fail(`begin refused: ${r.error.message}`);
      const tx: Tx = {
        id, mem: r.state, durable: r.state, durableOutcome: null, timers: {}, participants,
        enlistable: [...t.candidates.map((_, i) => `e${i}`), ...t.initial.map((_, i) => `p${i}`)],
        sentCommit: new Set(), sentAbort: new Set(), sent: new Map(),
      };
      this.txs.push(tx);
      this.log(`begin ${ti} participants=${t.initial.length} candidates=${t.candidates.length} timeout=${t.timeoutMs}`);
      this.carryOut(tx, { type: 'recovered', now: this.clock }, r, null); // the event is only used for resend attempts
    });
  }

  // --- reporting ---

  log(line: string): void {
    this.trace.push(`[t+${this.clock - T0}] ${line}`);
  }

  fail(what: string): never {
    throw new PropertyFailure(`${what}\n--- last events ---\n${this.trace.slice(-60).join('\n')}`);
  }

  txName(tx: Tx): string {
    return `tx${this.txs.indexOf(tx)}`;
  }

  // --- the coordinator process: engine + driver ---

  /** Feeds one event to the engine and carries out its effects, possibly crashing partway. */
  feed(tx: Tx, event: TxEvent, fault: Fault): StepResult | null {
    if (this.down) return null;
    if (!this.crashes) fault = null;
    let r: StepResult;
    try {
      r = step(tx.mem, event, this.config);
    } catch (e) {
      this.fail(`engine threw on ${this.txName(tx)} ${JSON.stringify(event)} in phase ${tx.mem.phase}: ${(e as Error).stack}`);
    }
    stats.steps++;
    if (event.type === 'deadline' && tx.mem.phase === 'precommitted' && r.state.phase === 'committing') stats.commitsAtDeadline++;
    const desc = `${this.txName(tx)} ${event.type}${'participant' in event ? ` ${event.participant}` : ''}${'vote' in event ? ` ${event.vote}` : ''}${'of' in event ? ` of=${event.of}` : ''}${'attempt' in event ? ` #${event.attempt}` : ''}`;
    if (r.error) {
      this.log(`${desc} -> refused ${r.error.code}`);
      if (r.effects.length > 0 || r.state !== tx.mem) this.fail(`refused ${event.type} left a trace: ${JSON.stringify(r.effects)}`);
      return r;
    }
    this.log(`${desc} [${tx.mem.phase}] -> [${r.state.phase}] ${r.effects.map(effectName).join(' ')}${fault ? ` CRASH ${JSON.stringify(fault)}` : ''}`);
    this.carryOut(tx, event, r, fault);
    return r;
  }

  carryOut(tx: Tx, event: TxEvent, r: StepResult, fault: Fault): void {
    // The documented order: only a prepare is placed before a persist (it may leave while the
    // persist is made durable); every other send comes after the step's persists.
    const firstPersist = r.effects.findIndex((e) => e.type === 'persist');
    const lastPersist = r.effects.map((e) => e.type).lastIndexOf('persist');
    r.effects.forEach((e, i) => {
      if (e.type === 'send' && i < lastPersist && (e.message.type !== 'prepare' || i > firstPersist)) {
        this.fail(`${e.message.type} placed before a persist in one step: ${r.effects.map(effectName)}`);
      }
    });
    const ahead = firstPersist < 0 ? [] : r.effects.slice(0, firstPersist).filter((e): e is Extract<Effect, { type: 'send' }> => e.type === 'send');
    if (fault?.cut === 'before-persist') {
      // Some of the prepares sent ahead got out; the persist never became durable.
      ahead.slice(0, fault.sends).forEach((e) => this.send(tx, e.message));
      stats.cutSteps++;
      this.crash('before the persist');
      return;
    }
    ahead.forEach((e) => this.send(tx, e.message));
    const persists = r.effects.filter((e): e is Extract<Effect, { type: 'persist' }> => e.type === 'persist');
    if (persists.length > 0) this.makeDurable(tx, persists[persists.length - 1].state);

    let sendsLeft = fault?.cut === 'after-persist' ? fault.sends : Infinity;
    for (const [i, e] of r.effects.entries()) {
      if (i < firstPersist) continue; // sent ahead
      switch (e.type) {
        case 'persist':
        case 'remember':
          break;
        case 'send':
          if (sendsLeft === 0) {
            stats.cutSteps++;
            this.crash('between the sends of a step');
            return;
          }
          sendsLeft--;
          this.send(tx, e.message);
          break;
        case 'set-timer':
          if (e.timer === 'deadline') tx.timers.deadline = e.at;
          else tx.timers.resend = { at: e.at, attempt: event.type === 'resend' ? event.attempt + 1 : 0 };
          break;
        case 'clear-timers':
          tx.timers = {};
          break;
      }
    }
    tx.mem = r.state;
    // Every change of state is in the step's persist or remember; a step that persists leaves
    // nothing only in memory, and what is only in memory is never a phase or an outcome.
    const kept = r.effects.filter((e): e is Extract<Effect, { type: 'persist' | 'remember' }> => e.type === 'persist' || e.type === 'remember').pop();
    if (kept && !isDeepStrictEqual(tx.mem, kept.state)) {
      this.fail(`in-memory state differs from the one the step kept after ${event.type}`);
    }
    if (persists.length > 0 && !isDeepStrictEqual(tx.mem, tx.durable)) {
      this.fail(`in-memory state differs from the persisted one after ${event.type}:\n mem=${JSON.stringify(tx.mem)}\n log=${JSON.stringify(tx.durable)}`);
    }
    if (tx.mem.phase !== tx.durable.phase || tx.mem.outcome !== tx.durable.outcome) {
      this.fail(`phase or outcome only in memory after ${event.type}: mem ${tx.mem.phase}/${tx.mem.outcome}, log ${tx.durable.phase}/${tx.durable.outcome}`);
    }
    if (fault?.cut === 'after-persist') {
      stats.cutSteps++;
      this.crash('after every send of the step');
    }
  }

  makeDurable(tx: Tx, s: TxState): void {
    if (s.id !== tx.id) this.fail(`persisted state of another transaction ${s.id}`);
    if (tx.durableOutcome !== null && s.outcome !== tx.durableOutcome) {
      this.fail(`durable outcome of ${this.txName(tx)} changed from ${tx.durableOutcome} to ${s.outcome}`);
    }
    if (tx.durable.outcome === null && s.outcome !== null) this.log(`${this.txName(tx)} DECISION ${s.outcome} durable (${s.reason ?? ''})`);
    tx.durable = s;
    tx.durableOutcome = s.outcome;
  }

  send(tx: Tx, m: CoordinatorToParticipant): void {
    if (m.txId !== tx.id) this.fail(`message for ${m.txId} sent in a step of ${tx.id}`);
    if (!tx.durable.participants.some((p) => p.name === m.participant)) this.fail(`${m.type} sent to ${m.participant}, who is not enlisted in the log`);
    if (m.type === 'commit') {
      if (tx.durable.outcome !== 'commit') this.fail(`commit sent to ${m.participant} while the durable log holds outcome ${tx.durable.outcome}`);
      if (tx.sentAbort.size > 0) this.fail(`commit sent to ${m.participant} after abort was sent to ${[...tx.sentAbort]}`);
      tx.sentCommit.add(m.participant);
    }
    if (m.type === 'abort') {
      if (tx.sentCommit.size > 0) this.fail(`abort sent to ${m.participant} after commit was sent to ${[...tx.sentCommit]}`);
      tx.sentAbort.add(m.participant);
    }
    const sentTo = tx.sent.get(m.participant) ?? new Set<string>();
    if (m.protocol !== this.protocol) this.fail(`${m.type} sent with protocol ${m.protocol} in a ${this.protocol} transaction`);
    if (m.type === 'pre-commit') {
      if (this.protocol !== '3pc') this.fail('pre-commit sent in a 2PC transaction');
      if (tx.durable.phase !== 'precommitted' || tx.durable.outcome !== 'commit') this.fail(`pre-commit sent to ${m.participant} while the log holds ${tx.durable.phase}/${tx.durable.outcome}`);
      if (!sentTo.has('prepare')) this.fail(`pre-commit sent to ${m.participant} before any prepare`);
      stats.preCommitsSent++;
    }
    if (m.type === 'commit' && this.protocol === '3pc') {
      if (tx.durable.phase !== 'committing' && tx.durable.phase !== 'committed') this.fail(`commit sent to ${m.participant} while the log holds ${tx.durable.phase}, before committing`);
      // Committing is reached only with every pre-commit acknowledged (or a commit ack), or at the deadline.
      const missing = tx.durable.participants.filter((x) => !x.preCommitted).map((x) => x.name);
      if (missing.length > 0 && this.clock < tx.durable.deadline) this.fail(`commit sent to ${m.participant} before the deadline without the pre-commit acks of ${missing}`);
      if (!sentTo.has('pre-commit')) this.fail(`commit sent to ${m.participant} before any pre-commit was sent to it`);
    }
    if (m.type === 'prepare' && (sentTo.has('pre-commit') || sentTo.has('commit') || sentTo.has('abort'))) this.fail(`prepare sent to ${m.participant} after ${[...sentTo]}`);
    sentTo.add(m.type);
    tx.sent.set(m.participant, sentTo);
    this.network.push({ to: 'participant', body: m });
  }

  crash(where: string): void {
    stats.crashes++;
    this.crashCount++;
    this.log(`COORDINATOR CRASH ${where}`);
    this.down = true;
    for (const tx of this.txs) {
      tx.mem = tx.durable;
      tx.timers = {};
    }
  }

  restart(fault: Fault): void {
    if (!this.down) return;
    this.down = false;
    this.log('coordinator restarts and recovers from its log');
    let first = true;
    for (const tx of this.txs) {
      if (this.down) return; // crashed again during recovery
      if (FINAL.has(tx.mem.phase)) continue;
      this.feed(tx, { type: 'recovered', now: this.clock }, first ? fault : null);
      first = false;
    }
  }

  // --- the participants ---

  toParticipant(m: CoordinatorToParticipant): void {
    const tx = this.txs.find((t) => t.id === m.txId);
    if (!tx) this.fail(`message for unknown transaction ${m.txId}`);
    const p = tx.participants.get(m.participant);
    if (!p) this.fail(`message for unknown participant ${m.participant}`);
    const where = `${this.txName(tx)} ${p.name}`;
    switch (m.type) {
      case 'prepare':
        if (p.vote === null) {
          // Knowing the outcome is abort already (its abort overtook the prepare), it votes no.
          p.vote = p.decision === 'abort' ? 'no' : p.plannedVote;
          if (p.vote === 'no') p.decision = 'abort';
          this.log(`${where} prepares, votes ${p.vote}`);
        }
        this.reply(tx, p, { type: 'vote', vote: p.vote });
        break;
      case 'commit':
        this.log(`${where} told commit`);
        if (p.vote !== 'yes') this.fail(`${where} told commit but voted ${p.vote}`);
        if (p.decision === 'abort') this.fail(`${where} told commit after recording abort`);
        p.decision = 'commit';
        this.reply(tx, p, { type: 'ack', of: 'commit' });
        break;
      case 'abort':
        this.log(`${where} told abort`);
        if (p.decision === 'commit') this.fail(`${where} told abort after recording commit`);
        // 3PC: pre-commit carries the commit decision; the library refuses an abort after it.
        if (p.preCommitted) this.fail(`${where} told abort after pre-commit`);
        p.decision = 'abort';
        this.reply(tx, p, { type: 'ack', of: 'abort' });
        break;
      case 'pre-commit':
        this.log(`${where} told pre-commit`);
        if (this.protocol !== '3pc') this.fail(`pre-commit sent in a 2PC transaction`);
        if (p.vote !== 'yes') this.fail(`${where} told pre-commit but voted ${p.vote}`);
        if (p.decision === 'abort') this.fail(`${where} told pre-commit after recording abort`);
        if (p.decision === null) p.preCommitted = true;
        this.reply(tx, p, { type: 'ack', of: 'pre-commit' });
        break;
    }
  }

  reply(tx: Tx, p: Participant, m: { type: 'vote'; vote: Vote } | { type: 'ack'; of: 'commit' | 'abort' | 'pre-commit' } | { type: 'status-request' }): void {
    const base = { v: 1 as const, txId: tx.id, participant: p.name, protocol: this.protocol, sentAt: new Date(this.clock).toISOString() };
    this.network.push({ to: 'coordinator', body: { ...base, ...m } as ParticipantToCoordinator });
  }

  toCoordinator(m: ParticipantToCoordinator, fault: Fault): void {
    const tx = this.txs.find((t) => t.id === m.txId)!;
    const now = this.clock;
    switch (m.type) {
      case 'vote':
        return void this.feed(tx, { type: 'vote', participant: m.participant, vote: m.vote, now }, fault);
      case 'ack':
        return void this.feed(tx, { type: 'ack', participant: m.participant, of: m.of, now }, fault);
      case 'status-request':
        return void this.feed(tx, { type: 'status-request', participant: m.participant, now }, fault);
    }
  }

  inDoubt(tx: Tx): Participant[] {
    return [...tx.participants.values()].filter((p) => p.vote === 'yes' && p.decision === null);
  }

  /**
   * A participant's own timer: in 3PC a precommitted participant commits on its own (the commit
   * decision was durable before any pre-commit left) and acknowledges commit; a prepared one, in
   * either protocol, only asks.
   */
  participantTimeout(tx: Tx, p: Participant): void {
    if (p.vote !== 'yes' || p.decision !== null) return;
    if (p.preCommitted) {
      this.log(`${this.txName(tx)} ${p.name} times out pre-committed: commits on its own`);
      p.decision = 'commit';
      stats.selfCommits++;
      this.reply(tx, p, { type: 'ack', of: 'commit' });
      return;
    }
    this.reply(tx, p, { type: 'status-request' });
  }

  /** Atomicity at the participants: never one that recorded commit beside one that recorded abort. */
  checkParticipants(): void {
    for (const tx of this.txs) {
      const decisions = new Set([...tx.participants.values()].map((p) => p.decision).filter((d) => d !== null));
      if (decisions.size > 1) this.fail(`atomicity: in ${this.txName(tx)} one participant committed and another aborted`);
      if (decisions.has('commit') && tx.durableOutcome !== 'commit') this.fail(`${this.txName(tx)}: a participant committed without a durable commit decision`);
    }
  }

  // --- the network and the timers ---

  deliver(index: number, fault: Fault): void {
    const m = this.network[index];
    if (m.to === 'coordinator' && this.down) return; // stays queued until the coordinator is back
    this.network.splice(index, 1);
    if (m.to === 'participant') this.toParticipant(m.body as CoordinatorToParticipant);
    else this.toCoordinator(m.body as ParticipantToCoordinator, fault);
  }

  /** A timer fires only when due: at or after its time, never before. */
  fire(tx: Tx, timer: 'deadline' | 'resend', fault: Fault): void {
    if (this.down) return;
    if (timer === 'deadline') {
      const at = tx.timers.deadline;
      if (at === undefined || at > this.clock) return;
      delete tx.timers.deadline;
      this.feed(tx, { type: 'deadline', now: this.clock }, fault);
    } else {
      const t = tx.timers.resend;
      if (t === undefined || t.at > this.clock) return;
      delete tx.timers.resend;
      this.feed(tx, { type: 'resend', attempt: t.attempt, now: this.clock }, fault);
    }
  }

  // --- one random command ---

  run(c: Command): void {
    switch (c.k) {
      case 'client': {
        if (this.down) return;
        const tx = this.txs[c.tx % this.txs.length];
        const now = this.clock;
        if (c.op === 'commit') {
          const r = this.feed(tx, { type: 'commit-requested', now }, c.fault);
          if (r?.error) this.fail(`commit-requested refused: ${r.error.message}`);
          return;
        }
        if (c.op === 'abort') {
          const committed = tx.mem.outcome === 'commit';
          const r = this.feed(tx, { type: 'abort-requested', now }, c.fault);
          if (r && committed !== (r.error?.code === 'conflict')) this.fail(`abort-requested with outcome ${tx.mem.outcome}: ${r.error ? 'refused' : 'accepted'}`);
          return;
        }
        const name = tx.enlistable[c.who % tx.enlistable.length];
        const p = tx.participants.get(name)!;
        // Another payload for a name already enlisted must be refused; for a new name it is simply its payload.
        const payload = c.otherPayload ? { ...p.payload, other: true } : p.payload;
        const existing = tx.mem.participants.find((x) => x.name === name);
        const phase = tx.mem.phase;
        const r = this.feed(tx, { type: 'enlist', name, payload, now }, c.fault);
        const sameAsEnlisted = existing !== undefined && isDeepStrictEqual(existing.payload, payload);
        const shouldRefuse = !sameAsEnlisted && (existing !== undefined || phase !== 'active');
        if (r && shouldRefuse !== (r.error?.code === 'conflict')) {
          this.fail(`enlist ${name} ${JSON.stringify(payload)} in ${phase} (enlisted: ${JSON.stringify(existing?.payload)}): ${r.error ? 'refused' : 'accepted'}`);
        }
        return;
      }
      case 'deliver':
        if (this.network.length > 0) this.deliver(c.i % this.network.length, c.fault);
        return;
      case 'duplicate':
        if (this.network.length > 0) {
          const m = this.network[c.i % this.network.length];
          this.log(`network duplicates ${m.body.type} ${m.body.participant}`);
          this.network.push(m);
        }
        return;
      case 'lose':
        if (this.lossy && this.network.length > 0) {
          const [m] = this.network.splice(c.i % this.network.length, 1);
          this.log(`network loses ${m.body.type} ${m.body.participant}`);
        }
        return;
      case 'status': {
        const tx = this.txs[c.tx % this.txs.length];
        const doubt = this.inDoubt(tx);
        if (doubt.length > 0) this.reply(tx, doubt[c.who % doubt.length], { type: 'status-request' });
        return;
      }
      case 'timer':
        this.clock += c.late;
        return this.fire(this.txs[c.tx % this.txs.length], c.timer, c.fault);
      case 'tick':
        this.clock += c.ms;
        return;
      case 'crash':
        if (this.crashes && !this.down) this.crash('between steps');
        return;
      case 'restart':
        return this.restart(c.fault);
      case 'sweep':
        return void this.feed(this.txs[c.tx % this.txs.length], { type: 'recovered', now: this.clock }, c.fault);
      case 'ptimeout': {
        const tx = this.txs[c.tx % this.txs.length];
        const doubt = this.inDoubt(tx);
        if (doubt.length > 0) this.participantTimeout(tx, doubt[c.who % doubt.length]);
        return;
      }
    }
  }

  // --- the end of a run: a world without faults must finish every transaction ---

  settle(): void {
    this.log('--- settle: no more loss or crashes; the client asks to commit whatever is still active ---');
    this.restart(null);
    for (const tx of this.txs) if (tx.mem.phase === 'active') this.feed(tx, { type: 'commit-requested', now: this.clock }, null);
    let asked = 0;
    for (let i = 0; i < 20_000; i++) {
      if (this.network.length > 0) {
        this.deliver(0, null);
        continue;
      }
      let next: { tx: Tx; timer: 'deadline' | 'resend'; at: number } | null = null;
      for (const tx of this.txs) {
        if (tx.timers.deadline !== undefined && (!next || tx.timers.deadline < next.at)) next = { tx, timer: 'deadline', at: tx.timers.deadline };
        if (tx.timers.resend && (!next || tx.timers.resend.at < next.at)) next = { tx, timer: 'resend', at: tx.timers.resend.at };
      }
      if (next) {
        this.clock = Math.max(this.clock, next.at);
        this.fire(next.tx, next.timer, null);
        continue;
      }
      // Nothing in flight and no timer: whoever is still in doubt asks (a few rounds at most).
      const doubt = this.txs.flatMap((tx) => this.inDoubt(tx).map((p) => [tx, p] as const));
      if (doubt.length === 0 || asked++ >= 3) return;
      // Their timers fire: prepared ones ask; in 3PC precommitted ones commit on their own.
      for (const [tx, p] of doubt) this.participantTimeout(tx, p);
    }
    this.fail('the world did not settle in 20000 deliveries and timer firings (livelock)');
  }

  checkLiveness(): void {
    for (const tx of this.txs) {
      const name = this.txName(tx);
      const s = tx.durable;
      if (!FINAL.has(s.phase)) this.fail(`liveness: ${name} stuck in ${s.phase} (outcome ${s.outcome}) after settling; timers ${JSON.stringify(tx.timers)}`);
      if (!isDeepStrictEqual(tx.mem, s)) this.fail(`${name}: in-memory state differs from the log at the end`);
      if (s.phase !== (s.outcome === 'commit' ? 'committed' : 'aborted')) this.fail(`${name}: phase ${s.phase} with outcome ${s.outcome}`);
      const enlisted = new Set(s.participants.map((p) => p.name));
      for (const p of tx.participants.values()) {
        if (enlisted.has(p.name)) {
          if (p.decision !== s.outcome) this.fail(`liveness: ${name} ${p.name} recorded ${p.decision}, the log says ${s.outcome}`);
          if (s.outcome === 'commit' && p.vote !== 'yes') this.fail(`${name} committed although ${p.name} voted ${p.vote}`);
        } else if (p.vote !== null || p.decision !== null) {
          this.fail(`${name} ${p.name} was never enlisted in the log but took part (vote ${p.vote}, decision ${p.decision})`);
        }
      }
      if (s.outcome === 'commit') stats.commits++;
      else stats.aborts++;
      const why = `${s.outcome}:${(s.reason ?? '').replace(/:[pe]\d$/, '')}`;
      stats.reasons[why] = (stats.reasons[why] ?? 0) + 1;
      if (s.outcome === 'commit' && this.crashCount > 0) stats.commitsInCrashyRuns++;
      stats.enlisted += s.participants.filter((p) => p.name.startsWith('e')).length;
    }
  }
}

function effectName(e: Effect): string {
  switch (e.type) {
    case 'persist':
      return `persist(${e.state.phase}${e.state.outcome ? `/${e.state.outcome}` : ''})`;
    case 'remember':
      return 'remember';
    case 'send':
      return `send(${e.message.type}->${e.message.participant})`;
    case 'set-timer':
      return `timer(${e.timer}@+${e.at - T0})`;
    case 'clear-timers':
      return 'clear-timers';
  }
}

// ---------------------------------------------------------------------------------------------

function runWorld(spec: WorldSpec, commands: Command[]): void {
  const world = new World(spec);
  stats.runs++;
  stats.txs += spec.txs.length;
  if (spec.txs.length > 1) stats.multiTxRuns++;
  for (const c of commands) {
    world.run(c);
    world.checkParticipants();
  }
  world.settle();
  world.checkParticipants();
  world.checkLiveness();
}

function resetStats(): void {
  for (const k of Object.keys(stats) as (keyof typeof stats)[]) {
    if (k === 'reasons') stats.reasons = {};
    else stats[k] = 0;
  }
}

function checkWorlds(protocol: CommitProtocol, numRuns: number): void {
  resetStats();
  fc.assert(
    fc.property(worldArb(protocol), fc.array(commandArb, { maxLength: 150, size: 'max' }), (spec, commands) => {
      runWorld(spec, commands);
    }),
    {
      numRuns: Number(process.env.FC_RUNS ?? numRuns),
      seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined,
      path: process.env.FC_PATH,
      endOnFailure: false,
    },
  );
}

describe('2PC coordinator engine in a simulated world (property)', () => {
  it('keeps atomicity, durable outcomes and write-ahead under loss, duplication, reordering and crashes, and always finishes', () => {
    const started = Date.now();
    checkWorlds('2pc', 500);
    const ms = Date.now() - started;
    // Guard against a degenerate generator: the interesting paths must actually be taken.
    expect(stats.commits).toBeGreaterThan(0);
    expect(stats.aborts).toBeGreaterThan(0);
    expect(stats.crashes).toBeGreaterThan(0);
    expect(stats.cutSteps).toBeGreaterThan(0);
    expect(stats.multiTxRuns).toBeGreaterThan(0);
    if (process.env.FC_STATS) console.log(JSON.stringify({ protocol: '2pc', ...stats, ms }));
  });
});

describe('3PC coordinator engine with 3PC participants in a simulated world (property)', () => {
  it('keeps the same invariants plus the 3PC ordering and participant timeout rules, and always finishes', () => {
    const started = Date.now();
    checkWorlds('3pc', 500);
    const ms = Date.now() - started;
    expect(stats.commits).toBeGreaterThan(0);
    expect(stats.aborts).toBeGreaterThan(0);
    expect(stats.crashes).toBeGreaterThan(0);
    expect(stats.cutSteps).toBeGreaterThan(0);
    expect(stats.preCommitsSent).toBeGreaterThan(0);
    // Participants committed on their own, and the coordinator went on to commit at the deadline.
    expect(stats.selfCommits).toBeGreaterThan(0);
    expect(stats.commitsAtDeadline).toBeGreaterThan(0);
    if (process.env.FC_STATS) console.log(JSON.stringify({ protocol: '3pc', ...stats, ms }));
  });
});
