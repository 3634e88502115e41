import { begin, step, TxState, Effect, StepResult } from './index';

const ID = '3b2f0c1e-1111-4222-8333-444455556666';
const T0 = Date.UTC(2026, 0, 1);

const sends = (r: StepResult) => r.effects.filter((e): e is Extract<Effect, { type: 'send' }> => e.type === 'send').map((e) => `${e.message.type}:${e.message.participant}`);
const types = (r: StepResult) => r.effects.map((e) => e.type);

function allYes(names = ['a', 'b']): StepResult {
  let s: TxState = begin({ id: ID, protocol: '3pc', timeoutMs: 1000, now: T0, participants: names.map((name) => ({ name })) }).state;
  s = step(s, { type: 'commit-requested', now: T0 }).state;
  let r!: StepResult;
  for (const name of names) {
    r = step(s, { type: 'vote', participant: name, vote: 'yes', now: T0 + 1 });
    s = r.state;
  }
  return r;
}

describe('3PC coordinator engine', () => {
  it('makes the commit decision durable, then sends pre-commit (not commit) to everyone', () => {
    const r = allYes();
    expect(r.state).toMatchObject({ phase: 'precommitted', outcome: 'commit', decidedAt: T0 + 1 });
    expect(types(r)).toEqual(['persist', 'send', 'send', 'set-timer']);
    expect(sends(r)).toEqual(['pre-commit:a', 'pre-commit:b']);
  });

  it('sends commit only after every pre-commit acknowledgement', () => {
    let s = allYes().state;
    const one = step(s, { type: 'ack', participant: 'a', of: 'pre-commit', now: T0 + 2 });
    expect(one.state.phase).toBe('precommitted');
    expect(types(one)).toEqual(['remember']);
    expect(step(one.state, { type: 'ack', participant: 'a', of: 'pre-commit', now: T0 + 2 }).effects).toEqual([]);
    const both = step(one.state, { type: 'ack', participant: 'b', of: 'pre-commit', now: T0 + 3 });
    expect(both.state.phase).toBe('committing');
    expect(types(both)[0]).toBe('persist');
    expect(sends(both)).toEqual(['commit:a', 'commit:b']);
    s = step(both.state, { type: 'ack', participant: 'a', of: 'commit', now: T0 + 4 }).state;
    s = step(s, { type: 'ack', participant: 'b', of: 'commit', now: T0 + 5 }).state;
    expect(s).toMatchObject({ phase: 'committed', completedAt: T0 + 5 });
  });

  it('resends pre-commit to the silent; answers their status requests with pre-commit', () => {
    const s = step(allYes().state, { type: 'ack', participant: 'a', of: 'pre-commit', now: T0 + 2 }).state;
    expect(sends(step(s, { type: 'resend', attempt: 0, now: T0 + 3 }))).toEqual(['pre-commit:b']);
    expect(sends(step(s, { type: 'status-request', participant: 'b', now: T0 + 3 }))).toEqual(['pre-commit:b']);
    expect(sends(step(s, { type: 'status-request', participant: 'a', now: T0 + 3 }))).toEqual([]);
  });

  it('goes on to commit at the deadline when pre-commit acknowledgements are missing (Skeen)', () => {
    const s = step(allYes().state, { type: 'ack', participant: 'a', of: 'pre-commit', now: T0 + 2 }).state;
    expect(step(s, { type: 'deadline', now: T0 + 10 }).effects).toEqual([{ type: 'set-timer', timer: 'deadline', at: T0 + 1000 }]);
    const r = step(s, { type: 'deadline', now: T0 + 1000 });
    expect(r.state).toMatchObject({ phase: 'committing', outcome: 'commit' });
    expect(sends(r)).toEqual(['commit:a', 'commit:b']);
  });

  it('counts a commit ack from a participant that committed on its own as its pre-commit ack', () => {
    let s = step(allYes().state, { type: 'ack', participant: 'a', of: 'commit', now: T0 + 2 }).state;
    expect(s.phase).toBe('precommitted');
    expect(s.participants[0]).toMatchObject({ preCommitted: true, acked: true });
    const r = step(s, { type: 'ack', participant: 'b', of: 'pre-commit', now: T0 + 3 });
    expect(r.state.phase).toBe('committing');
    expect(sends(r)).toEqual(['commit:b']);
    s = step(r.state, { type: 'ack', participant: 'b', of: 'commit', now: T0 + 4 }).state;
    expect(s.phase).toBe('committed');
  });

  it('aborts like 2PC on a no vote or a timeout before the decision', () => {
    let s: TxState = begin({ id: ID, protocol: '3pc', timeoutMs: 1000, now: T0, participants: [{ name: 'a' }, { name: 'b' }] }).state;
    s = step(s, { type: 'commit-requested', now: T0 }).state;
    const no = step(s, { type: 'vote', participant: 'b', vote: 'no', now: T0 });
    expect(no.state).toMatchObject({ phase: 'aborting', outcome: 'abort' });
    expect(sends(no)).toEqual(['abort:a', 'abort:b']);
    expect(step(s, { type: 'deadline', now: T0 + 1000 }).state.reason).toBe('timeout:prepare');
  });

  it('recovers a precommitted transaction by resending pre-commit and re-arming its deadline', () => {
    const s = allYes().state;
    const r = step(s, { type: 'recovered', now: T0 + 5 });
    expect(sends(r)).toEqual(['pre-commit:a', 'pre-commit:b']);
    expect(r.effects).toContainEqual({ type: 'set-timer', timer: 'deadline', at: T0 + 1000 });
  });
});
