import { CommitProtocol, CoordinatorToParticipant } from '../protocol';

/** Transaction states of CONTRACT section 2; the last two are final. */
export type TxPhase = 'active' | 'preparing' | 'precommitted' | 'committing' | 'aborting' | 'committed' | 'aborted';
export type Outcome = 'commit' | 'abort';
export type Vote = 'yes' | 'no';

export interface ParticipantState {
  name: string;
  payload: Record<string, unknown>;
  /** Where the HTTP transport reaches this participant; null on Kafka. */
  url: string | null;
  vote: Vote | null;
  /** The participant's own words with a no vote. */
  voteReason: string | null;
  /** 3PC: the participant acknowledged pre-commit (or already acknowledged commit). */
  preCommitted: boolean;
  /** The participant acknowledged the outcome. */
  acked: boolean;
}

/** One transaction as the coordinator knows it. Times are epoch milliseconds supplied by events. */
export interface TxState {
  id: string;
  protocol: CommitProtocol;
  phase: TxPhase;
  outcome: Outcome | null;
  reason: string | null;
  timeoutMs: number;
  metadata: Record<string, unknown>;
  createdAt: number;
  deadline: number;
  decidedAt: number | null;
  completedAt: number | null;
  participants: ParticipantState[];
}

export interface BeginInput {
  id: string;
  protocol: CommitProtocol;
  timeoutMs: number;
  participants: { name: string; payload?: Record<string, unknown>; url?: string | null }[];
  metadata?: Record<string, unknown>;
  now: number;
}

/** Everything that can happen to a transaction. `now` is the driver's clock; the engine reads none. */
export type TxEvent =
  | { type: 'enlist'; name: string; payload?: Record<string, unknown>; url?: string | null; now: number }
  | { type: 'commit-requested'; now: number }
  | { type: 'abort-requested'; now: number }
  | { type: 'vote'; participant: string; vote: Vote; reason?: string; now: number }
  | { type: 'ack'; participant: string; of: 'pre-commit' | 'commit' | 'abort'; now: number }
  | { type: 'deadline'; now: number }
  /** The resend timer fired; `attempt` counts resends since the last progress (for backoff). */
  | { type: 'resend'; attempt: number; now: number }
  | { type: 'status-request'; participant: string; now: number }
  /** The coordinator restarted and loaded this unfinished transaction from its log. */
  | { type: 'recovered'; now: number };

/**
 * What the driver must do, in this order: every `persist` is made durable (one database
 * transaction for the step) before any `send` placed after it leaves the process — the
 * write-ahead rule. A `send` placed before the persist may leave while it is being made durable:
 * only a `prepare` is ever placed there (presumed abort needs nothing durable before a prepare, as
 * a transaction without a durable commit decision aborts whatever its participants voted).
 * A `remember` is a change the driver may keep in memory only (a yes vote or an acknowledgement
 * that decides nothing): were it lost in a crash, recovery asks for it again, because what is
 * durable still names that participant as silent. Every change of phase or outcome is a `persist`.
 */
export type Effect =
  | { type: 'persist'; state: TxState }
  | { type: 'remember'; state: TxState }
  | { type: 'send'; message: CoordinatorToParticipant }
  | { type: 'set-timer'; timer: 'deadline' | 'resend'; at: number }
  | { type: 'clear-timers' };

export type StepError = { code: 'conflict' | 'invalid'; message: string };

export interface StepResult {
  state: TxState;
  effects: Effect[];
  /** Set when the event is refused (for example enlisting after commit was requested). */
  error?: StepError;
}

export interface EngineConfig {
  /** First resend delay after a send that needs an answer; doubles per attempt up to the max. */
  resendInitialMs: number;
  resendMaxMs: number;
}

export const DEFAULT_ENGINE_CONFIG: EngineConfig = { resendInitialMs: 500, resendMaxMs: 15_000 };
