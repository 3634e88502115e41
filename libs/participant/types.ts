import type { Logger } from 'pino';
import type { DataSource, EntityManager } from 'typeorm';
import type { CommitProtocol } from '../protocol';
import type { MessageTransport } from '../transport/transport';

/** A participant's answer to `prepare`. A bare string is the same as `{ vote }` without a reason. */
export type VoteResult = 'yes' | 'no' | { vote: 'yes' | 'no'; reason?: string };

/** What every handler call gets. */
interface BaseContext {
  txId: string;
  /** This participant's name (the one it enlists under). */
  participant: string;
  protocol: CommitProtocol;
  /**
   * The EntityManager of a local transaction on the participant's own Postgres. The library writes
   * its state record through the same transaction, so the handler's work and the record commit (or
   * roll back) together. Do all of the handler's database work through it.
   */
  manager: EntityManager;
  /** A logger bound to this transaction (`txId`, `participant`). */
  logger: Logger;
}

export interface PrepareContext extends BaseContext {
  /** The payload the participant was enlisted with. */
  payload: Record<string, unknown>;
  /** The coordinator's vote deadline; a vote arriving later counts as missing. */
  deadline: Date;
}

export interface DecisionContext extends BaseContext {
  /** The payload recorded at prepare. */
  payload: Record<string, unknown>;
  /** Why the transaction aborts (abort only), e.g. `vote-no:inventory`, `timeout:prepare`. */
  reason?: string;
}

/**
 * What a member service implements. `prepare` reserves (inside `ctx.manager`'s transaction) and
 * votes; `commit` makes the reservation final; `abort` releases it. Each handler is called at most
 * once per transaction with effect: a call whose local transaction rolled back (throw, crash) left
 * no trace and may be repeated.
 */
export interface TransactionParticipant {
  prepare(ctx: PrepareContext): Promise<VoteResult>;
  commit(ctx: DecisionContext): Promise<void>;
  abort(ctx: DecisionContext): Promise<void>;
  /** Three-phase commit only: the coordinator will commit unless it fails; optional. */
  preCommit?(ctx: DecisionContext): Promise<void>;
}

/** Options shared by `startParticipant` and `ParticipantModule`. */
export interface ParticipantCommonOptions {
  /** The name this service enlists under; its topic is `<prefix>participant.<name>`. */
  name: string;
  /**
   * An initialized TypeORM DataSource of the service's own Postgres. The library creates its table
   * there and runs each handler in a transaction of it. It does not destroy a DataSource it was given.
   */
  dataSource?: DataSource;
  /** Postgres URL used when no `dataSource` is given (default: env `DATABASE_URL`). */
  databaseUrl?: string;
  /**
   * How messages travel; the runtime starts it and stops it. Default: with env `KAFKA_BROKERS` set,
   * a Kafka transport from `KAFKA_BROKERS`, `TX_TOPIC_PREFIX` (default `tx.`), `TX_MESSAGE_SECRET`
   * and `KAFKA_MAX_WAIT_MS`, consumer group `txp.<name>`, topic `<prefix>participant.<name>`;
   * without it, HTTP (CONTRACT section 3b) from the options below and their variables.
   */
  transport?: MessageTransport;
  /** HTTP transport: port of this participant's `POST /tx/messages` endpoint (default: env `PORT`, else 4000). */
  httpPort?: number;
  /** HTTP transport: interface to listen on (default: env `HOST`, else 127.0.0.1). */
  httpHost?: string;
  /**
   * HTTP transport: where the coordinator reaches this participant; enlist with it (default: env
   * `PARTICIPANT_URL`, else `http://<httpHost>:<httpPort>`).
   */
  publicUrl?: string;
  /** HTTP transport: the coordinator (default: env `COORDINATOR_URL`, else http://localhost:3000). */
  coordinatorUrl?: string;
  /** HTTP transport: sent as `Authorization: Bearer` to the coordinator (default: env `COORDINATOR_API_KEY`). */
  apiKey?: string;
  /**
   * After voting yes, how long past the prepare deadline to wait for the decision before asking the
   * coordinator with `status-request` (default 2000 ms).
   */
  statusRequestAfterMs?: number;
  /** First delay between repeated status requests and handler retries (default 500 ms). */
  retryInitialMs?: number;
  /** Upper bound of that delay, reached by doubling (default 10000 ms). */
  retryMaxMs?: number;
  /** A pino logger; default: pino on stdout at env `LOG_LEVEL` (default `info`). */
  logger?: Logger;
}

export interface ParticipantOptions extends ParticipantCommonOptions {
  participant: TransactionParticipant;
}

/** A started participant. */
export interface ParticipantRuntime {
  /** The participant name. */
  readonly name: string;
  /** True from the end of start-up (table ready, consuming, in-doubt transactions resumed) until stop. */
  readonly ready: boolean;
  /** With the default HTTP transport, the URL to enlist with (`publicUrl`); otherwise null. */
  readonly url: string | null;
  /** Stops consuming, waits for in-flight handlers, cancels timers, closes what it opened. */
  stop(): Promise<void>;
}

/** The library's state of one transaction at this participant (table `tx_participant_log`). */
export type ParticipantTxState = 'prepared' | 'precommitted' | 'committed' | 'aborted';
