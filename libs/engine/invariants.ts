import { Effect, TxState } from './types';

/** A broken protocol invariant: a bug in the engine, never a consequence of bad input. */
export class InvariantViolation extends Error {
  constructor(txId: string, what: string) {
    super(`invariant violated in transaction ${txId}: ${what}`);
    this.name = 'InvariantViolation';
  }
}

const FINAL = new Set(['committed', 'aborted']);

/**
 * Checked after every step: the outcome never changes once set, commit only with every vote yes,
 * decision messages agree with the outcome, a step that decides persists before it sends, only a
 * prepare goes ahead of a persist, and a change of phase or outcome is persisted (never only
 * remembered).
 */
export function assertStep(before: TxState | null, after: TxState, effects: Effect[]): void {
  const fail = (what: string) => {
    throw new InvariantViolation(after.id, what);
  };
  if (before?.outcome && after.outcome !== before.outcome) fail(`outcome changed from ${before.outcome} to ${after.outcome}`);
  if (before && FINAL.has(before.phase) && after.phase !== before.phase) fail(`final state ${before.phase} left`);
  if (after.outcome === 'commit' && after.participants.some((p) => p.vote !== 'yes')) fail('commit without every vote yes');
  if (after.outcome === null && after.decidedAt !== null) fail('decidedAt without an outcome');
  if (FINAL.has(after.phase) && after.participants.some((p) => !p.acked)) fail(`${after.phase} before every ack`);
  if (after.phase === 'precommitted' && (after.protocol !== '3pc' || after.outcome !== 'commit')) fail('precommitted without a 3PC commit outcome');

  const types = effects.map((e) => e.type);
  const firstSend = types.indexOf('send');
  const lastPersist = types.lastIndexOf('persist');
  for (const e of effects) {
    if (e.type !== 'send') continue;
    const t = e.message.type;
    if (t === 'commit' && after.outcome !== 'commit') fail('commit sent without a commit outcome');
    if (t === 'abort' && after.outcome !== 'abort') fail('abort sent without an abort outcome');
    if (t === 'prepare' && after.outcome !== null) fail('prepare sent after the decision');
    if (t === 'pre-commit' && (after.protocol !== '3pc' || after.outcome !== 'commit')) fail('pre-commit sent without a 3PC commit outcome');
  }
  // Only a prepare may leave before the step's persist is durable (see Effect).
  effects.forEach((e, i) => {
    if (e.type === 'send' && i < lastPersist && e.message.type !== 'prepare') fail(`${e.message.type} placed before the step's persist`);
  });
  const decidedNow = after.outcome !== null && before?.outcome !== after.outcome;
  if (decidedNow && firstSend >= 0 && (lastPersist < 0 || lastPersist > firstSend)) {
    fail('decision sent before it was persisted');
  }
  if (before && (before.phase !== after.phase || before.outcome !== after.outcome) && !types.includes('persist')) {
    fail(`move from ${before.phase} to ${after.phase} not persisted`);
  }
}
