import { begin, step, TxState, waitingFor, isStuck } from './index';

const ID = '7b2f0c1e-1111-4222-8333-444455556666';
const T0 = Date.UTC(2026, 0, 1);

const begun = (protocol: '2pc' | '3pc' = '2pc'): TxState =>
  begin({ id: ID, protocol, timeoutMs: 1000, now: T0, participants: [{ name: 'a' }, { name: 'b' }] }).state;

describe('waitingFor and isStuck', () => {
  it('names who has not given the answer the state needs', () => {
    let s = begun();
    expect(waitingFor(s)).toEqual([]); // active: waiting for the client
    s = step(s, { type: 'commit-requested', now: T0 }).state;
    expect(waitingFor(s)).toEqual(['a', 'b']);
    s = step(s, { type: 'vote', participant: 'a', vote: 'yes', now: T0 }).state;
    expect(waitingFor(s)).toEqual(['b']);
    s = step(s, { type: 'vote', participant: 'b', vote: 'yes', now: T0 }).state;
    expect(s.phase).toBe('committing');
    expect(waitingFor(s)).toEqual(['a', 'b']);
    s = step(s, { type: 'ack', participant: 'b', of: 'commit', now: T0 }).state;
    expect(waitingFor(s)).toEqual(['a']);
    s = step(s, { type: 'ack', participant: 'a', of: 'commit', now: T0 }).state;
    expect(waitingFor(s)).toEqual([]);
  });

  it('3PC: in precommitted, those that have acknowledged neither pre-commit nor commit', () => {
    let s = step(begun('3pc'), { type: 'commit-requested', now: T0 }).state;
    s = step(s, { type: 'vote', participant: 'a', vote: 'yes', now: T0 }).state;
    s = step(s, { type: 'vote', participant: 'b', vote: 'yes', now: T0 }).state;
    expect(s.phase).toBe('precommitted');
    s = step(s, { type: 'ack', participant: 'a', of: 'pre-commit', now: T0 }).state;
    expect(waitingFor(s)).toEqual(['b']);
  });

  it('is stuck when unfinished past the threshold, except an active one before its deadline', () => {
    const active = begun();
    expect(isStuck(active, T0 + 500, 100)).toBe(false); // the client's turn, deadline ahead
    expect(isStuck(active, T0 + 5000, 100)).toBe(true); // past its deadline and still active: its timer is lost
    const preparing = step(active, { type: 'commit-requested', now: T0 }).state;
    expect(isStuck(preparing, T0 + 99, 100)).toBe(false);
    expect(isStuck(preparing, T0 + 100, 100)).toBe(true);
    const aborted = step(preparing, { type: 'abort-requested', now: T0 }).state;
    const done = ['a', 'b'].reduce((s, p) => step(s, { type: 'ack', participant: p, of: 'abort', now: T0 }).state, aborted);
    expect(done.phase).toBe('aborted');
    expect(isStuck(done, T0 + 1e9, 100)).toBe(false);
  });
});
