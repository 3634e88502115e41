import { isStuck, TxState, waitingFor } from '../../../libs/engine';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** TX_STUCK_AFTER_MS, set once at start (StuckReporter); the default until then. */
let stuckAfterMs = 60_000;
export function setStuckAfterMs(ms: number): void {
  stuckAfterMs = ms;
}

/** A transaction as every endpoint returns it (CONTRACT section 2). */
export function present(s: TxState) {
  return {
    id: s.id,
    protocol: s.protocol,
    state: s.phase,
    outcome: s.outcome,
    reason: s.reason,
    timeoutMs: s.timeoutMs,
    createdAt: iso(s.createdAt),
    decidedAt: iso(s.decidedAt),
    completedAt: iso(s.completedAt),
    deadline: iso(s.deadline),
    participants: s.participants.map((p) => ({
      name: p.name, vote: p.vote, acked: p.acked, payload: p.payload, url: p.url, voteReason: p.voteReason,
      ...(s.protocol === '3pc' ? { preCommitted: p.preCommitted } : {}),
    })),
    metadata: s.metadata,
    // Who has not answered yet, and whether it has been unfinished for longer than TX_STUCK_AFTER_MS.
    waitingFor: waitingFor(s),
    stuck: isStuck(s, Date.now(), stuckAfterMs),
  };
}

/** List cursors are opaque: the position (createdAt, id) of the last item returned. */
export function encodeCursor(s: TxState): string {
  return Buffer.from(JSON.stringify([s.createdAt, s.id])).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: number; id: string } | null {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (typeof createdAt !== 'number' || typeof id !== 'string' || !/^[0-9a-f-]{36}$/i.test(id)) return null;
    return { createdAt, id };
  } catch {
    return null;
  }
}
