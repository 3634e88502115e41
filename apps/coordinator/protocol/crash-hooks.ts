import { keptAs, StepResult, TxEvent, TxState } from '../../../libs/engine';
import { CrashPoints, parseCrashSpec } from '../../../libs/testing/crash-points';

/**
 * TEST-ONLY: the exact places where `TX_TEST_CRASH_AT` can kill the coordinator (see
 * libs/testing/crash-points.ts). Off unless the variable is set; the crash tests in test/crash use
 * them to check recovery from every step of both protocols. Only transactions begun by the running
 * process count, so a coordinator restarted with the next crash point first recovers the
 * transactions of its predecessor undisturbed.
 */
export const COORDINATOR_CRASH_POINTS = [
  /** The commit request's prepares went out (ahead of the save of `preparing`); the process dies before that save. */
  'before-preparing-persist',
  /** A vote that did not decide was recorded (in memory: only decisions are durable). */
  'after-vote-recorded',
  /** The step that decides (commit or abort) ran; the process dies inside its database transaction. */
  'before-decision-persist',
  /** The decision is durable; nothing of it has been sent. */
  'after-decision-persist',
  /** The decision step sent its first message (pre-commit in 3PC, else commit/abort) only. */
  'after-first-send',
  /** 3PC: a pre-commit acknowledgement was recorded (not the last one; in memory). */
  'after-precommit-ack-recorded',
  /** 3PC: the move from precommitted to committing is durable; no commit sent. */
  'after-committing-persist',
  /** 3PC: the committing step sent its first commit only. */
  'after-first-commit-send',
  /** An acknowledgement of the outcome (commit or abort) was recorded (not the last one; in memory). */
  'after-ack-recorded',
] as const;

export type CoordinatorCrashPoint = (typeof COORDINATOR_CRASH_POINTS)[number];

/** Validates TX_TEST_CRASH_AT for the coordinator (throws a one-line message). */
export function coordinatorCrashSpec(raw: string | undefined) {
  return parseCrashSpec(raw, COORDINATOR_CRASH_POINTS);
}

const decides = (before: TxState, r: StepResult) => before.outcome === null && r.state.outcome !== null;
const toCommitting = (before: TxState, r: StepResult) => before.phase === 'precommitted' && r.state.phase === 'committing';

export class CoordinatorCrashHooks {
  private readonly points: CrashPoints<CoordinatorCrashPoint>;
  private readonly enabled: boolean;
  private readonly startedAt = Date.now();

  constructor(raw: string | null) {
    const spec = coordinatorCrashSpec(raw ?? undefined);
    this.enabled = spec !== null;
    this.points = new CrashPoints(spec, 'coordinator');
  }

  private applies(before: TxState, r: StepResult): boolean {
    return this.enabled && !r.error && before.createdAt >= this.startedAt;
  }

  /** Inside the step's database transaction, before it commits. */
  beforePersist(before: TxState, r: StepResult): void {
    if (!this.applies(before, r) || keptAs(r) !== 'persist') return;
    if (decides(before, r)) this.points.hit('before-decision-persist');
  }

  /**
   * Whether this step's save is to be skipped because the process dies right after its prepares
   * (sent ahead of the save) got out: the caller saves nothing, waits for them, then hit()s.
   */
  cutBeforeSave(before: TxState, r: StepResult): boolean {
    if (!this.applies(before, r) || keptAs(r) !== 'persist' || before.phase !== 'active' || r.state.phase !== 'preparing') return false;
    return this.points.cutsHere('before-preparing-persist');
  }

  /** After the step's change was saved (its database transaction committed) or held, before anything is sent. */
  afterRecord(before: TxState, event: Pick<TxEvent, 'type'> & { of?: string }, r: StepResult): void {
    const kept = keptAs(r);
    if (!this.applies(before, r) || !kept) return;
    if (decides(before, r)) return this.points.hit('after-decision-persist');
    if (toCommitting(before, r)) return this.points.hit('after-committing-persist');
    if (kept === 'persist') return;
    if (event.type === 'vote') return this.points.hit('after-vote-recorded');
    if (event.type === 'ack' && event.of === 'pre-commit') return this.points.hit('after-precommit-ack-recorded');
    if (event.type === 'ack') return this.points.hit('after-ack-recorded');
  }

  /**
   * The point to hit after the first message of this step, when the step's sends are to be cut
   * there (the step is the decision, or 3PC's move to committing); null otherwise.
   */
  cutAfterFirstSend(before: TxState, r: StepResult): CoordinatorCrashPoint | null {
    if (!this.applies(before, r)) return null;
    const point = decides(before, r) ? 'after-first-send' : toCommitting(before, r) ? 'after-first-commit-send' : null;
    // The caller sends one message, then hit(point).
    return point && this.points.cutsHere(point) ? point : null;
  }

  hit(point: CoordinatorCrashPoint): void {
    this.points.hit(point);
  }
}
