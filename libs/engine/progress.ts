import { TxState } from './types';

const FINAL = new Set(['committed', 'aborted']);

/**
 * Who the transaction is waiting for: the participants that have not yet given the answer its
 * current state needs (a vote while preparing; the pre-commit acknowledgement in 3PC's
 * precommitted; the acknowledgement of the outcome while committing or aborting). Empty when it
 * waits for nobody (final) or for its client (active).
 */
export function waitingFor(s: TxState): string[] {
  switch (s.phase) {
    case 'preparing':
      return s.participants.filter((p) => p.vote === null).map((p) => p.name);
    case 'precommitted':
      return s.participants.filter((p) => !p.preCommitted && !p.acked).map((p) => p.name);
    case 'committing':
    case 'aborting':
      return s.participants.filter((p) => !p.acked).map((p) => p.name);
    default:
      return [];
  }
}

/**
 * Unfinished for longer than `stuckAfterMs` since it began. An active transaction still before its
 * deadline is waiting for its client, not stuck; any other unfinished one is retrying something.
 */
export function isStuck(s: TxState, now: number, stuckAfterMs: number): boolean {
  if (FINAL.has(s.phase) || now - s.createdAt < stuckAfterMs) return false;
  return !(s.phase === 'active' && now < s.deadline);
}
