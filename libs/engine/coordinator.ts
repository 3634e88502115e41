import { CoordinatorToParticipant } from '../protocol';
import { assertStep, InvariantViolation } from './invariants';
import {
  BeginInput, DEFAULT_ENGINE_CONFIG, Effect, EngineConfig, Outcome, ParticipantState, StepResult, TxEvent, TxState,
} from './types';

/**
 * The two-phase commit coordinator as a pure state machine, in the manner of etcd's raft:
 * `begin` and `step` take the current state and one event and return the next state and the
 * effects to carry out. No I/O, no clock, no randomness: the driver owns all three.
 *
 * Presumed abort: a transaction without a durable commit decision aborts, and a decision is
 * always in a `persist` effect placed before the first `send` of it. Votes and acknowledgements
 * that decide nothing are only `remember`ed: what is durable then still counts their senders as
 * silent, so after a crash recovery asks them again.
 */
export function begin(input: BeginInput): StepResult {
  const names = new Set<string>();
  for (const p of input.participants) {
    if (names.has(p.name)) return refuse(null, 'invalid', `participant ${p.name} listed twice`);
    names.add(p.name);
  }
  const state: TxState = {
    id: input.id,
    protocol: input.protocol,
    phase: 'active',
    outcome: null,
    reason: null,
    timeoutMs: input.timeoutMs,
    metadata: input.metadata ?? {},
    createdAt: input.now,
    deadline: input.now + input.timeoutMs,
    decidedAt: null,
    completedAt: null,
    participants: input.participants.map((p) => newParticipant(p.name, p.payload, p.url)),
  };
  return checked(null, state, [persist(state), { type: 'set-timer', timer: 'deadline', at: state.deadline }]);
}

export function step(state: TxState, event: TxEvent, config: EngineConfig = DEFAULT_ENGINE_CONFIG): StepResult {
  const result = dispatch(state, event, config);
  return result.error ? result : checked(state, result.state, result.effects);
}

function dispatch(s: TxState, e: TxEvent, config: EngineConfig): StepResult {
  switch (e.type) {
    case 'enlist':
      return enlist(s, e.name, e.payload ?? {}, e.url ?? null);
    case 'commit-requested':
      return commitRequested(s, e.now, config);
    case 'abort-requested':
      if (s.outcome === 'commit') return refuse(s, 'conflict', 'the transaction has already committed');
      if (s.outcome === 'abort') return unchanged(s);
      return decide(s, 'abort', 'client-abort', e.now, config);
    case 'vote':
      return vote(s, e.participant, e.vote, e.reason, e.now, config);
    case 'ack':
      return ack(s, e.participant, e.of, e.now);
    case 'deadline':
      // 3PC: pre-commit acknowledgements are awaited until the deadline, then commit goes out
      // regardless (Skeen): a participant that missed pre-commit learns the outcome by asking.
      if (s.phase === 'precommitted') {
        return e.now >= s.deadline ? toCommitting(s, e.now) : { state: s, effects: [{ type: 'set-timer', timer: 'deadline', at: s.deadline }] };
      }
      if (s.outcome !== null) return unchanged(s);
      if (e.now < s.deadline) return { state: s, effects: [{ type: 'set-timer', timer: 'deadline', at: s.deadline }] };
      return decide(s, 'abort', s.phase === 'active' ? 'timeout:active' : 'timeout:prepare', e.now, config);
    case 'resend':
      return resend(s, e.attempt, e.now, config);
    case 'status-request': {
      // Undecided: say nothing; the votes or the deadline will decide and the answer follows.
      const p = s.participants.find((x) => x.name === e.participant);
      if (!p || s.outcome === null) return unchanged(s);
      return { state: s, effects: answer(s, p, e.now) };
    }
    case 'recovered':
      return recovered(s, e.now, config);
  }
}

function enlist(s: TxState, name: string, payload: Record<string, unknown>, url: string | null): StepResult {
  const existing = s.participants.find((p) => p.name === name);
  if (existing && sameJson(existing.payload, payload)) return unchanged(s);
  if (s.phase !== 'active') return refuse(s, 'conflict', `the transaction is ${s.phase}, no longer active`);
  if (existing) return refuse(s, 'conflict', `participant ${name} is already enlisted with another payload`);
  const next = { ...s, participants: [...s.participants, newParticipant(name, payload, url)] };
  return { state: next, effects: [persist(next)] };
}

function commitRequested(s: TxState, now: number, config: EngineConfig): StepResult {
  if (s.phase !== 'active') return unchanged(s);
  if (s.participants.length === 0) return decide(s, 'commit', null, now, config);
  const next: TxState = { ...s, phase: 'preparing' };
  // The prepares come before the persist: they may leave while `preparing` is being saved, which
  // takes that save off the commit's latency. Presumed abort keeps this safe: until a commit
  // decision is durable, every way the transaction can end is abort (a crash before the save
  // leaves it active, and its deadline aborts it and tells every participant).
  return {
    state: next,
    effects: [
      ...next.participants.map((p): Effect => ({ type: 'send', message: prepareMessage(next, p, now) })),
      persist(next),
      resendTimer(now, 0, config),
    ],
  };
}

function vote(
  s: TxState, name: string, v: 'yes' | 'no', reason: string | undefined, now: number, config: EngineConfig,
): StepResult {
  const p = s.participants.find((x) => x.name === name);
  if (!p) return unchanged(s);
  // A late vote means the voter is waiting for the outcome: tell it again.
  if (s.outcome !== null) return { state: s, effects: answer(s, p, now) };
  // Only votes asked for count; the first vote of a participant is final.
  if (s.phase !== 'preparing' || p.vote !== null) return unchanged(s);
  const next = withParticipant(s, { ...p, vote: v, voteReason: reason ?? null });
  if (v === 'no') return decide(next, 'abort', `vote-no:${name}`, now, config);
  // The deadline rules, not the order in which a vote and the deadline's timer are processed: a
  // vote handled at or after the deadline (queued while the coordinator was down, or behind a late
  // timer) finds votes missing at the deadline, so the transaction aborts.
  if (now >= s.deadline) return decide(next, 'abort', 'timeout:prepare', now, config);
  if (next.participants.every((x) => x.vote === 'yes')) return decide(next, 'commit', null, now, config);
  return { state: next, effects: [remember(next)] };
}

function ack(s: TxState, name: string, of: string, now: number): StepResult {
  const p = s.participants.find((x) => x.name === name);
  if (!p || s.outcome === null) return unchanged(s);
  if (of === 'pre-commit') {
    if (s.phase !== 'precommitted' || p.preCommitted) return unchanged(s);
    return afterPreCommitAck(withParticipant(s, { ...p, preCommitted: true }), now);
  }
  if (p.acked || of !== s.outcome) return unchanged(s);
  // In 3PC a participant may commit on its own once pre-committed; its commit ack implies the pre-commit one.
  let next = withParticipant(s, { ...p, acked: true, preCommitted: p.preCommitted || s.protocol === '3pc' });
  if (next.participants.every((x) => x.acked)) {
    next = { ...next, phase: s.outcome === 'commit' ? 'committed' : 'aborted', completedAt: now };
    return { state: next, effects: [persist(next), { type: 'clear-timers' }] };
  }
  if (next.phase === 'precommitted') return afterPreCommitAck(next, now);
  return { state: next, effects: [remember(next)] };
}

/** 3PC: once every participant is pre-committed, the commit itself goes out. */
function afterPreCommitAck(s: TxState, now: number): StepResult {
  if (!s.participants.every((x) => x.preCommitted)) return { state: s, effects: [remember(s)] };
  return toCommitting(s, now);
}

function toCommitting(s: TxState, now: number): StepResult {
  const next: TxState = { ...s, phase: 'committing' };
  return { state: next, effects: [persist(next), ...sendDecision(next, now)] };
}

function resend(s: TxState, attempt: number, now: number, config: EngineConfig): StepResult {
  if (s.phase === 'preparing') {
    const silent = s.participants.filter((p) => p.vote === null);
    return {
      state: s,
      effects: [
        ...silent.map((p): Effect => ({ type: 'send', message: prepareMessage(s, p, now) })),
        resendTimer(now, attempt + 1, config),
      ],
    };
  }
  if (s.phase === 'precommitted' || s.phase === 'committing' || s.phase === 'aborting') {
    return {
      state: s,
      effects: [...sendDecision(s, now), resendTimer(now, attempt + 1, config)],
    };
  }
  return unchanged(s);
}

/**
 * After a restart (or when a sweep finds a transaction whose timers were lost). Presumed abort:
 * nothing undecided is ever committed by recovery. An undecided transaction past its deadline
 * aborts at once; one still in time asks the silent participants again and keeps its deadline.
 * A decided one resends its decision to whoever has not acknowledged it.
 */
function recovered(s: TxState, now: number, config: EngineConfig): StepResult {
  if (s.outcome === null && now >= s.deadline) {
    return decide(s, 'abort', s.phase === 'active' ? 'timeout:active' : 'timeout:prepare', now, config);
  }
  const deadline: Effect = { type: 'set-timer', timer: 'deadline', at: s.deadline };
  switch (s.phase) {
    case 'active':
      return { state: s, effects: [deadline] };
    case 'preparing': {
      const silent = s.participants.filter((p) => p.vote === null);
      const prepares = silent.map((p): Effect => ({ type: 'send', message: prepareMessage(s, p, now) }));
      return { state: s, effects: [...prepares, deadline, resendTimer(now, 0, config)] };
    }
    case 'precommitted':
      return { state: s, effects: [...sendDecision(s, now), deadline, resendTimer(now, 0, config)] };
    case 'committing':
    case 'aborting':
      return { state: s, effects: [...sendDecision(s, now), resendTimer(now, 0, config)] };
    default:
      return unchanged(s);
  }
}

/**
 * The decision: recorded with the outcome in one persist, then sent to every participant. In 3PC a
 * commit decision is made durable first too, and then goes out as pre-commit (state precommitted).
 */
function decide(s: TxState, outcome: Outcome, reason: string | null, now: number, config: EngineConfig): StepResult {
  if (s.outcome !== null) throw new InvariantViolation(s.id, `second decision ${outcome} after ${s.outcome}`);
  const done = s.participants.length === 0;
  const phase = done ? (outcome === 'commit' ? 'committed' : 'aborted')
    : outcome === 'abort' ? 'aborting' : s.protocol === '3pc' ? 'precommitted' : 'committing';
  const next: TxState = { ...s, phase, outcome, reason, decidedAt: now, completedAt: done ? now : null };
  if (done) return { state: next, effects: [persist(next), { type: 'clear-timers' }] };
  return { state: next, effects: [persist(next), ...sendDecision(next, now), resendTimer(now, 0, config)] };
}

/** What each participant still needs to hear: pre-commit first in 3PC, then the outcome. */
function sendDecision(s: TxState, now: number): Effect[] {
  return s.participants.flatMap((p): Effect[] => {
    if (p.acked) return [];
    if (s.phase === 'precommitted') return p.preCommitted ? [] : [{ type: 'send', message: preCommitMessage(s, p, now) }];
    return [{ type: 'send', message: decisionMessage(s, p, now) }];
  });
}

/** The decision for one participant that asks (status request or late vote), even if it acked before. */
function answer(s: TxState, p: ParticipantState, now: number): Effect[] {
  if (s.phase === 'precommitted' && !p.preCommitted) return [{ type: 'send', message: preCommitMessage(s, p, now) }];
  if (s.phase === 'precommitted') return [];
  return [{ type: 'send', message: decisionMessage(s, p, now) }];
}

function preCommitMessage(s: TxState, p: ParticipantState, now: number): CoordinatorToParticipant {
  return { v: 1, type: 'pre-commit', txId: s.id, participant: p.name, protocol: s.protocol, sentAt: new Date(now).toISOString() };
}

function prepareMessage(s: TxState, p: ParticipantState, now: number): CoordinatorToParticipant {
  return {
    v: 1, type: 'prepare', txId: s.id, participant: p.name, protocol: s.protocol,
    sentAt: new Date(now).toISOString(), deadline: new Date(s.deadline).toISOString(), payload: p.payload,
  };
}

function decisionMessage(s: TxState, p: ParticipantState, now: number): CoordinatorToParticipant {
  const base = { v: 1 as const, txId: s.id, participant: p.name, protocol: s.protocol, sentAt: new Date(now).toISOString() };
  if (s.outcome === 'commit') return { ...base, type: 'commit' };
  return s.reason ? { ...base, type: 'abort', reason: s.reason } : { ...base, type: 'abort' };
}

/** Exponential backoff; the driver adds jitter so that many coordinators do not resend in step. */
export function resendDelay(attempt: number, config: EngineConfig): number {
  return Math.min(config.resendInitialMs * 2 ** Math.min(attempt, 30), config.resendMaxMs);
}

function resendTimer(now: number, attempt: number, config: EngineConfig): Effect {
  return { type: 'set-timer', timer: 'resend', at: now + resendDelay(attempt, config) };
}

function newParticipant(name: string, payload: Record<string, unknown> = {}, url: string | null = null): ParticipantState {
  return { name, payload, url, vote: null, voteReason: null, preCommitted: false, acked: false };
}

function withParticipant(s: TxState, p: ParticipantState): TxState {
  return { ...s, participants: s.participants.map((x) => (x.name === p.name ? p : x)) };
}

function persist(state: TxState): Effect {
  return { type: 'persist', state };
}

/** A vote or acknowledgement that decides nothing: only a decision must be durable before it leaves. */
function remember(state: TxState): Effect {
  return { type: 'remember', state };
}

/**
 * A step's messages: `ahead` may leave while its persist is being made durable (those placed
 * before it), `afterPersist` only once it is. A step without a persist has nothing to wait for:
 * all its messages are `afterPersist`.
 */
export function sendsOf(r: StepResult): { ahead: CoordinatorToParticipant[]; afterPersist: CoordinatorToParticipant[] } {
  const firstPersist = r.effects.findIndex((e) => e.type === 'persist');
  const ahead: CoordinatorToParticipant[] = [];
  const afterPersist: CoordinatorToParticipant[] = [];
  r.effects.forEach((e, i) => {
    if (e.type === 'send') (i < firstPersist ? ahead : afterPersist).push(e.message);
  });
  return { ahead, afterPersist };
}

/** How the driver must keep a step's new state: durably, in memory, or not at all (nothing changed). */
export function keptAs(r: StepResult): 'persist' | 'remember' | null {
  const kept = r.effects.find((e) => e.type === 'persist' || e.type === 'remember');
  return kept ? (kept.type as 'persist' | 'remember') : null;
}

function unchanged(state: TxState): StepResult {
  return { state, effects: [] };
}

function refuse(state: TxState | null, code: 'conflict' | 'invalid', message: string): StepResult {
  return { state: state as TxState, effects: [], error: { code, message } };
}

function checked(before: TxState | null, state: TxState, effects: Effect[]): StepResult {
  assertStep(before, state, effects);
  return { state, effects };
}

/** Structural equality of JSON values, insensitive to key order. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
