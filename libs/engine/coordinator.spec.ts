import { begin, step, sendsOf, assertStep, TxState, Effect, StepResult, InvariantViolation, resendDelay, DEFAULT_ENGINE_CONFIG } from './index';

const ID = '9b2f0c1e-1111-4222-8333-444455556666';
const T0 = Date.UTC(2026, 0, 1);

function started(names = ['inventory', 'payments'], timeoutMs = 1000): TxState {
  return begin({
    id: ID, protocol: '2pc', timeoutMs, now: T0,
    participants: names.map((name) => ({ name, payload: { n: name } })),
  }).state;
}

const sends = (r: StepResult) => r.effects.filter((e): e is Extract<Effect, { type: 'send' }> => e.type === 'send').map((e) => `${e.message.type}:${e.message.participant}`);
const types = (r: StepResult) => r.effects.map((e) => e.type);

function preparing(names?: string[]) {
  return step(started(names), { type: 'commit-requested', now: T0 + 1 }).state;
}

describe('2PC coordinator engine', () => {
  it('begins active with a persisted record and a deadline timer', () => {
    const r = begin({ id: ID, protocol: '2pc', timeoutMs: 500, now: T0, participants: [{ name: 'a' }] });
    expect(r.state).toMatchObject({ phase: 'active', outcome: null, deadline: T0 + 500 });
    expect(r.effects).toEqual([{ type: 'persist', state: r.state }, { type: 'set-timer', timer: 'deadline', at: T0 + 500 }]);
  });

  it('refuses a participant listed twice', () => {
    const r = begin({ id: ID, protocol: '2pc', timeoutMs: 500, now: T0, participants: [{ name: 'a' }, { name: 'a' }] });
    expect(r.error?.code).toBe('invalid');
  });

  it('commit-requested sends prepare to everyone ahead of persisting preparing (presumed abort needs nothing durable first)', () => {
    const r = step(started(), { type: 'commit-requested', now: T0 + 1 });
    expect(r.state.phase).toBe('preparing');
    expect(types(r)).toEqual(['send', 'send', 'persist', 'set-timer']);
    expect(sends(r)).toEqual(['prepare:inventory', 'prepare:payments']);
    const prepare = r.effects[0] as Extract<Effect, { type: 'send' }>;
    expect(prepare.message).toMatchObject({ payload: { n: 'inventory' }, deadline: new Date(T0 + 1000).toISOString() });
    const { ahead, afterPersist } = sendsOf(r);
    expect(ahead.map((m) => `${m.type}:${m.participant}`)).toEqual(['prepare:inventory', 'prepare:payments']);
    expect(afterPersist).toEqual([]);
  });

  it('sends a decision only after its persist (sendsOf), and a step without a persist has nothing to wait for', () => {
    let s = preparing(['a', 'b']);
    s = step(s, { type: 'vote', participant: 'a', vote: 'yes', now: T0 }).state;
    const decided = step(s, { type: 'vote', participant: 'b', vote: 'yes', now: T0 });
    expect(sendsOf(decided).ahead).toEqual([]);
    expect(sendsOf(decided).afterPersist.map((m) => m.type)).toEqual(['commit', 'commit']);
    const resent = step(preparing(['a']), { type: 'resend', attempt: 0, now: T0 });
    expect(sendsOf(resent)).toEqual({ ahead: [], afterPersist: [expect.objectContaining({ type: 'prepare' })] });
  });

  it('commits when every vote is yes: decision persisted, then commit sent to all', () => {
    let s = preparing();
    const first = step(s, { type: 'vote', participant: 'inventory', vote: 'yes', now: T0 + 2 });
    // A yes vote that decides nothing need not be durable: recovery would ask for it again.
    expect(types(first)).toEqual(['remember']);
    s = first.state;
    expect(s.outcome).toBeNull();
    const r = step(s, { type: 'vote', participant: 'payments', vote: 'yes', now: T0 + 3 });
    expect(r.state).toMatchObject({ phase: 'committing', outcome: 'commit', decidedAt: T0 + 3 });
    expect(types(r)).toEqual(['persist', 'send', 'send', 'set-timer']);
    expect(sends(r)).toEqual(['commit:inventory', 'commit:payments']);
  });

  it('aborts on the first no vote, with the participant named in the reason', () => {
    const r = step(preparing(), { type: 'vote', participant: 'payments', vote: 'no', reason: 'insufficient-funds', now: T0 + 2 });
    expect(r.state).toMatchObject({ phase: 'aborting', outcome: 'abort', reason: 'vote-no:payments' });
    expect(r.state.participants[1]).toMatchObject({ vote: 'no', voteReason: 'insufficient-funds' });
    expect(sends(r)).toEqual(['abort:inventory', 'abort:payments']);
  });

  it('completes only when every participant has acknowledged the outcome', () => {
    let s = preparing();
    s = step(s, { type: 'vote', participant: 'inventory', vote: 'yes', now: T0 }).state;
    s = step(s, { type: 'vote', participant: 'payments', vote: 'yes', now: T0 }).state;
    expect(step(s, { type: 'ack', participant: 'inventory', of: 'abort', now: T0 }).effects).toEqual([]);
    const one = step(s, { type: 'ack', participant: 'inventory', of: 'commit', now: T0 });
    expect(types(one)).toEqual(['remember']);
    s = one.state;
    expect(s.phase).toBe('committing');
    const dup = step(s, { type: 'ack', participant: 'inventory', of: 'commit', now: T0 });
    expect(dup.effects).toEqual([]);
    const r = step(s, { type: 'ack', participant: 'payments', of: 'commit', now: T0 + 9 });
    expect(r.state).toMatchObject({ phase: 'committed', completedAt: T0 + 9 });
    expect(types(r)).toEqual(['persist', 'clear-timers']);
  });

  it('aborts at the deadline when votes are missing, not before', () => {
    let s = preparing();
    s = step(s, { type: 'vote', participant: 'inventory', vote: 'yes', now: T0 }).state;
    const early = step(s, { type: 'deadline', now: T0 + 10 });
    expect(early.effects).toEqual([{ type: 'set-timer', timer: 'deadline', at: T0 + 1000 }]);
    const r = step(s, { type: 'deadline', now: T0 + 1000 });
    expect(r.state).toMatchObject({ outcome: 'abort', reason: 'timeout:prepare' });
    expect(step(started(), { type: 'deadline', now: T0 + 1000 }).state.reason).toBe('timeout:active');
  });

  it('aborts on a vote handled at or after the deadline, even the last yes (votes were missing at the deadline)', () => {
    let s = preparing();
    s = step(s, { type: 'vote', participant: 'inventory', vote: 'yes', now: T0 + 999 }).state;
    expect(s.outcome).toBeNull();
    const late = step(s, { type: 'vote', participant: 'payments', vote: 'yes', now: T0 + 1000 });
    expect(late.state).toMatchObject({ phase: 'aborting', outcome: 'abort', reason: 'timeout:prepare' });
    expect(late.state.participants.map((p) => p.vote)).toEqual(['yes', 'yes']);
    expect(sends(late)).toEqual(['abort:inventory', 'abort:payments']);
    const no = step(s, { type: 'vote', participant: 'payments', vote: 'no', now: T0 + 2000 });
    expect(no.state.reason).toBe('vote-no:payments');
  });

  it('ignores duplicate and conflicting votes, and votes never asked for', () => {
    const active = started();
    expect(step(active, { type: 'vote', participant: 'inventory', vote: 'yes', now: T0 }).effects).toEqual([]);
    let s = step(preparing(), { type: 'vote', participant: 'inventory', vote: 'yes', now: T0 }).state;
    expect(step(s, { type: 'vote', participant: 'inventory', vote: 'no', now: T0 }).state).toBe(s);
    expect(step(s, { type: 'vote', participant: 'stranger', vote: 'no', now: T0 }).state).toBe(s);
    s = step(s, { type: 'vote', participant: 'payments', vote: 'no', now: T0 }).state;
    // a vote after the decision is answered with the decision
    expect(sends(step(s, { type: 'vote', participant: 'inventory', vote: 'yes', now: T0 }))).toEqual(['abort:inventory']);
  });

  it('answers a status request with the decision once there is one, and not before', () => {
    const s = preparing();
    expect(step(s, { type: 'status-request', participant: 'inventory', now: T0 }).effects).toEqual([]);
    const decided = step(s, { type: 'abort-requested', now: T0 }).state;
    expect(sends(step(decided, { type: 'status-request', participant: 'payments', now: T0 }))).toEqual(['abort:payments']);
  });

  it('client abort: decided abort; refused after a commit outcome; repeated abort is a no-op', () => {
    const r = step(preparing(), { type: 'abort-requested', now: T0 });
    expect(r.state).toMatchObject({ outcome: 'abort', reason: 'client-abort' });
    expect(step(r.state, { type: 'abort-requested', now: T0 }).effects).toEqual([]);
    let s = preparing(['a']);
    s = step(s, { type: 'vote', participant: 'a', vote: 'yes', now: T0 }).state;
    expect(step(s, { type: 'abort-requested', now: T0 }).error).toEqual({ code: 'conflict', message: 'the transaction has already committed' });
  });

  it('commits at once when nobody is enlisted', () => {
    const r = step(started([]), { type: 'commit-requested', now: T0 + 5 });
    expect(r.state).toMatchObject({ phase: 'committed', outcome: 'commit', decidedAt: T0 + 5, completedAt: T0 + 5 });
    expect(types(r)).toEqual(['persist', 'clear-timers']);
  });

  it('enlists while active: same payload is a no-op, other payload or later phases conflict', () => {
    let s = started(['a']);
    const r = step(s, { type: 'enlist', name: 'b', payload: { x: 1 }, now: T0 });
    expect(r.state.participants.map((p) => p.name)).toEqual(['a', 'b']);
    s = r.state;
    expect(step(s, { type: 'enlist', name: 'b', payload: { x: 1 }, now: T0 }).effects).toEqual([]);
    expect(step(s, { type: 'enlist', name: 'b', payload: { x: 2 }, now: T0 }).error?.code).toBe('conflict');
    s = step(s, { type: 'commit-requested', now: T0 }).state;
    expect(step(s, { type: 'enlist', name: 'c', now: T0 }).error?.code).toBe('conflict');
  });

  it('resends prepare to the silent and the decision to the unacknowledged, with backoff', () => {
    let s = preparing();
    s = step(s, { type: 'vote', participant: 'inventory', vote: 'yes', now: T0 }).state;
    const r1 = step(s, { type: 'resend', attempt: 2, now: T0 + 100 });
    expect(sends(r1)).toEqual(['prepare:payments']);
    expect(r1.effects.at(-1)).toEqual({ type: 'set-timer', timer: 'resend', at: T0 + 100 + resendDelay(3, DEFAULT_ENGINE_CONFIG) });
    s = step(s, { type: 'vote', participant: 'payments', vote: 'yes', now: T0 }).state;
    s = step(s, { type: 'ack', participant: 'payments', of: 'commit', now: T0 }).state;
    expect(sends(step(s, { type: 'resend', attempt: 0, now: T0 }))).toEqual(['commit:inventory']);
    expect(resendDelay(50, DEFAULT_ENGINE_CONFIG)).toBe(DEFAULT_ENGINE_CONFIG.resendMaxMs);
  });

  it('recovery: undecided past the deadline aborts, in time asks again, decided resends', () => {
    const late = step(preparing(), { type: 'recovered', now: T0 + 1000 });
    expect(late.state).toMatchObject({ outcome: 'abort', reason: 'timeout:prepare' });
    expect(types(late)[0]).toBe('persist');
    let s = step(preparing(), { type: 'vote', participant: 'inventory', vote: 'yes', now: T0 }).state;
    const inTime = step(s, { type: 'recovered', now: T0 + 5 });
    expect(inTime.state).toBe(s);
    expect(sends(inTime)).toEqual(['prepare:payments']);
    s = preparing(['a']);
    s = step(s, { type: 'vote', participant: 'a', vote: 'yes', now: T0 }).state;
    expect(sends(step(s, { type: 'recovered', now: T0 }))).toEqual(['commit:a']);
    expect(step(started(), { type: 'recovered', now: T0 }).effects).toEqual([{ type: 'set-timer', timer: 'deadline', at: T0 + 1000 }]);
    expect(step(started(), { type: 'recovered', now: T0 + 1000 }).state.reason).toBe('timeout:active');
  });

  it('asserts its invariants: changed outcomes, commits without votes, unpersisted decisions', () => {
    let s = preparing(['a']);
    s = step(s, { type: 'vote', participant: 'a', vote: 'yes', now: T0 }).state;
    const aborted: TxState = { ...s, outcome: 'abort', phase: 'aborting' };
    expect(() => assertStep(s, aborted, [])).toThrow(InvariantViolation);
    const noVote: TxState = { ...s, participants: [{ ...s.participants[0], vote: null }] };
    expect(() => assertStep(null, noVote, [])).toThrow(/commit without every vote yes/);
    const commitMsg = step(s, { type: 'status-request', participant: 'a', now: T0 }).effects;
    const undecided = preparing(['a']);
    expect(() => assertStep(undecided, s, commitMsg)).toThrow(/sent before it was persisted/);
    expect(() => assertStep(undecided, undecided, commitMsg)).toThrow(/commit sent without a commit outcome/);
    expect(() => assertStep(undecided, s, [{ type: 'remember', state: s }])).toThrow(/move from preparing to committing not persisted/);
    // Only a prepare may go ahead of a persist, even of a decision made earlier.
    expect(() => assertStep(s, s, [...commitMsg, { type: 'persist', state: s }])).toThrow(/commit placed before the step's persist/);
  });
});
