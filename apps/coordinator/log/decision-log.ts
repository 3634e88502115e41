import { Inject, Injectable, Optional } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { DataSource, SelectQueryBuilder } from 'typeorm';
import { Batcher } from '../../../libs/concurrency/batcher';
import { KeyedQueue } from '../../../libs/concurrency/keyed-queue';
import { ParticipantState, TxPhase, TxState } from '../../../libs/engine';
import { Breaker } from '../../../libs/resilience/breaker';
import { CONFIG, CoordinatorConfig } from '../config/config';
import { ParticipantRow, TransactionRow } from './entities';
import { CachedTx, TxCache } from './tx-cache';
import { isStoreUnavailable, LOG_STORE_BREAKER } from './store-errors';

export interface ListQuery {
  state?: TxPhase;
  participant?: string;
  limit: number;
  /** Position after which to continue, newest first. */
  after?: { createdAt: number; id: string };
}

export interface IdempotencyKey {
  key: string;
  /** Hash of the request body: the same key with another body is refused. */
  hash: string;
}

export type InsertResult = { created: true; state: TxState } | { created: false; state: TxState; sameRequest: boolean };

/** A saved transaction and the version its row has (see update). */
interface Versioned {
  state: TxState;
  version: number;
}

interface Save {
  /** The transaction as the log has it, to write only the participants that changed; null: write them all. */
  before: TxState | null;
  next: TxState;
  version: number;
}

interface Insert {
  state: TxState;
  idempotency?: IdempotencyKey;
}

/**
 * Transactions kept in memory at most (with their held changes), and how long one is stepped on
 * without reading the log again (see TxCache). Under load a transaction's steps are seconds apart
 * (its votes and acks wait in the inbox); at one second, each of them read the log again.
 */
const CACHED_AT_MOST = 20_000;
const CACHE_TRUSTED_MS = 5000;

/** A step that keeps losing races with other replicas gives up (and is retried by its caller). */
const MAX_STEP_ATTEMPTS = 20;

/**
 * Group commit: reads, saves and inserts of many transactions share one statement each. With
 * fewer than this many statements of a kind under way one goes out at once (no delay when idle);
 * the rest wait and go out together.
 */
const STATEMENTS_IN_FLIGHT = 2;
const TRANSACTIONS_PER_STATEMENT = 256;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The durable decision log in Postgres. Every change to a transaction happens in `update`: read
 * the transaction, step it, and save the new state in one statement that applies only if the row's
 * version is still the one read (optimistic concurrency). A step that lost a race with another
 * replica is read again and redone, so steps on one transaction are serialized across replicas,
 * and the change (the decision) is committed before the caller sends anything. Within this
 * process, steps of one transaction also wait for each other, so they do not race at all.
 *
 * Every statement is raw SQL, and the reads, saves and inserts of concurrent steps are grouped
 * (group commit): one statement reads many transactions with their participants as JSON, one saves
 * many steps (each still only if its version holds), one inserts many new transactions. Each
 * caller resolves when the statement holding its change has committed. TypeORM stays for
 * migrations and for building the listing queries.
 */
@Injectable()
export class DecisionLog {
  /**
   * Every operation goes through a circuit breaker: on repeated connection failures (or operations
   * slower than TX_DB_TIMEOUT_MS) it opens and operations fail at once with BreakerOpenError (the
   * API answers 503 with Retry-After) instead of each waiting for a connection timeout; after
   * TX_BREAKER_RESET_MS one operation probes. Without the configuration (tools, tests) there is none.
   */
  private readonly breaker: Breaker | null;
  /** Steps of one transaction in this process, one at a time. */
  private readonly steps = new KeyedQueue();
  /**
   * What this process last read or wrote of each unfinished transaction, with the changes steps
   * asked to keep in memory only until a step that must be durable writes them too.
   */
  private readonly cache = new TxCache(CACHED_AT_MOST, CACHE_TRUSTED_MS);
  private readonly reads = new Batcher((ids: string[]) => this.readMany(ids), GROUP);
  private readonly outcomes = new Batcher((ids: string[]) => this.decidedMany(ids), GROUP);
  private readonly saves = new Batcher((items: Save[]) => this.saveMany(items), GROUP);
  private readonly inserts = new Batcher((items: Insert[]) => this.insertMany(items), GROUP);

  constructor(
    private readonly db: DataSource,
    @Optional() @Inject(CONFIG) config?: CoordinatorConfig,
    @Optional() logger?: PinoLogger,
  ) {
    logger?.setContext('decision-log');
    this.breaker = config ? new Breaker(LOG_STORE_BREAKER, { ...config.breaker, timeoutMs: config.dbTimeoutMs }, isStoreUnavailable, logger) : null;
  }

  /** The breaker's state and counts, for /health/ready; null without a breaker. */
  breakerState(): ReturnType<Breaker['describe']> | null {
    return this.breaker?.describe() ?? null;
  }

  private guard<T>(operation: () => Promise<T>): Promise<T> {
    return this.breaker ? this.breaker.run(operation) : operation();
  }

  insert(state: TxState, idempotency?: IdempotencyKey): Promise<InsertResult> {
    return this.guard(() => this.insertNow(state, idempotency));
  }

  get(id: string): Promise<TxState | null> {
    return this.guard(async () => (await this.read(id))?.state ?? null);
  }

  /**
   * Whether the log holds the transaction with an outcome; null when it holds no such transaction.
   * For those who wait for another replica's decision: one small row, not the transaction with its
   * participants, and grouped like every read.
   */
  decided(id: string): Promise<boolean | null> {
    return this.guard(async () => (UUID.test(id) ? this.outcomes.run(id) : null));
  }

  /**
   * Reads the transaction, hands its state to `change`, and saves what it returns (if anything)
   * before resolving. Resolves with null when the transaction does not exist.
   *
   * The state comes from what this process last read or wrote when that was less than five
   * seconds ago (TxCache), else from the log. A change returned with `hold` is kept in this process
   * only, and `change` sees it in the following steps until one saves (with it) a change that must
   * be durable. With `writeBack` the step reads the log first, and a held change is saved even if
   * the step changes nothing (the resends of a slow transaction, so that what lingers is in the
   * log for operators and other replicas). With `readLogIf`, a cached state it says is stale is
   * read from the log again.
   */
  update<T>(
    id: string, change: (state: TxState) => { next: TxState | null; hold?: boolean; result: T },
    options: { writeBack?: boolean; readLogIf?: (cached: TxState) => boolean } = {},
  ): Promise<{ result: T } | null> {
    return this.guard(() => this.updateNow(id, change, options.writeBack ?? false, options.readLogIf));
  }

  list(q: ListQuery): Promise<TxState[]> {
    return this.guard(() => this.listNow(q));
  }

  /** Unfinished transactions not touched since `before`, in id order from `afterId`: recovery and sweep. */
  unfinished(before: Date, limit: number, afterId?: string): Promise<TxState[]> {
    return this.guard(() => {
      const qb = this.transactions().where('t.completedAt IS NULL').andWhere('t.updatedAt < :before', { before })
        .orderBy('t.id', 'ASC').limit(limit);
      if (afterId) qb.andWhere('t.id > :afterId', { afterId });
      return this.loadInOrder(qb);
    });
  }

  /**
   * Unfinished transactions begun before `createdBefore`, oldest first, at most `limit` (and how
   * many there are in all) — except active ones whose deadline is still ahead (`now`): stuck ones.
   */
  stuck(createdBefore: Date, now: Date, limit: number): Promise<{ items: TxState[]; total: number }> {
    return this.guard(async () => {
      const qb = this.transactions()
        .where('t.completedAt IS NULL').andWhere('t.createdAt < :createdBefore', { createdBefore })
        .andWhere("NOT (t.state = 'active' AND t.deadline > :now)", { now })
        .orderBy('t.createdAt', 'ASC');
      const total = await qb.clone().getCount();
      return { items: await this.loadInOrder(qb.limit(limit)), total };
    });
  }

  /**
   * Deletes up to `limit` transactions (with their participants) that finished before `before`,
   * oldest first; resolves with how many. Unfinished ones are never touched.
   */
  purgeFinished(before: Date, limit: number): Promise<number> {
    return this.guard(async () => {
      const rows: { id: string }[] = await this.db.query(
        `DELETE FROM tx_transaction WHERE id IN (
           SELECT id FROM tx_transaction WHERE completed_at IS NOT NULL AND completed_at < $1 ORDER BY completed_at LIMIT $2)
         RETURNING id`,
        [before, limit],
      );
      return rows.length;
    });
  }

  /** Unfinished transactions by state. */
  countUnfinished(): Promise<Record<string, number>> {
    return this.guard(async () => {
      const rows: { state: string; n: string }[] = await this.db.query(
        'SELECT state, count(*) AS n FROM tx_transaction WHERE completed_at IS NULL GROUP BY state');
      return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
    });
  }

  /**
   * For readiness: the store answers. Under load the steps' own statements say so, and a ping
   * would only queue behind them (a restarted coordinator's readiness took seconds): a statement
   * that succeeded within the last second, with the breaker closed, counts as the answer.
   */
  ping(): Promise<void> {
    if (this.breaker?.recentlySucceeded()) return Promise.resolve();
    return this.guard(async () => {
      await this.db.query('SELECT 1');
    });
  }

  private async insertNow(state: TxState, idempotency?: IdempotencyKey): Promise<InsertResult> {
    const checkedAt = Date.now();
    if (await this.inserts.run({ state, idempotency })) {
      this.cache.set(state.id, { state, held: false, version: 0, checkedAt });
      return { created: true, state };
    }
    // Not inserted: another request with the same Idempotency-Key came first.
    const rows: { id: string; request_hash: string }[] = idempotency
      ? await this.db.query('SELECT id, request_hash FROM tx_transaction WHERE idempotency_key = $1', [idempotency.key])
      : [];
    const existing = rows.length ? await this.read(rows[0].id) : null;
    if (!existing) throw new Error(`transaction ${state.id} was not inserted and no transaction holds its idempotency key`);
    return { created: false, state: existing.state, sameRequest: rows[0].request_hash === idempotency!.hash };
  }

  private async read(id: string): Promise<Versioned | null> {
    // Not a transaction id: not in the log (and it must not fail the statement it would share).
    if (!UUID.test(id)) return null;
    return (await this.reads.run(id)) ?? null;
  }

  private updateNow<T>(
    id: string, change: (state: TxState) => { next: TxState | null; hold?: boolean; result: T }, writeBack: boolean,
    readLogIf?: (cached: TxState) => boolean,
  ): Promise<{ result: T } | null> {
    return this.steps.run(id, async () => {
      for (let attempt = 1; ; attempt++) {
        const current = await this.current(id, writeBack, readLogIf);
        if (!current) return null;
        const { next, hold, result } = change(current.state);
        if (next && hold && !writeBack) {
          this.cache.set(id, { ...current, state: next, held: true });
          return { result };
        }
        const changed = next ?? (current.held ? current.state : null);
        if (!changed || (!next && !writeBack)) return { result };
        this.cache.delete(id);
        const checkedAt = Date.now();
        // With held changes the log's participants are older than the state stepped on: write them all.
        if (await this.saves.run({ before: current.held ? null : current.state, next: changed, version: current.version })) {
          this.cache.set(id, { state: changed, held: false, version: current.version + 1, checkedAt });
          return { result };
        }
        // Another replica changed it since the read: step again on what it wrote (what was held
        // here is dropped; the resends ask for those votes or acks again).
        if (attempt >= MAX_STEP_ATTEMPTS) throw new Error(`transaction ${id} changed concurrently ${attempt} times in a row; giving up this step`);
      }
    });
  }

  /**
   * The transaction as this process steps it: as cached (with its held change, if any) when the
   * log was seen at the cached version recently and neither `fromLog` nor `readLogIf` asks for the
   * log; else read from the log. A held change whose row has moved on (another replica stepped
   * it) is dropped.
   */
  private async current(id: string, fromLog: boolean, readLogIf?: (cached: TxState) => boolean): Promise<CachedTx | null> {
    const cached = this.cache.get(id);
    if (cached && !fromLog && this.cache.trusted(cached) && !readLogIf?.(cached.state)) return cached;
    const checkedAt = Date.now();
    const read = await this.read(id);
    if (!read) {
      this.cache.delete(id);
      return null;
    }
    const entry = cached?.version === read.version ? { ...cached, checkedAt } : { state: read.state, held: false, version: read.version, checkedAt };
    this.cache.set(id, entry);
    return entry;
  }

  private listNow(q: ListQuery): Promise<TxState[]> {
    // Newest first. Filtered by participant, the walk follows that participant's own index (its
    // rows carry their transaction's creation time), so its cost does not grow with the log.
    const [at, id] = q.participant ? ['p.txCreatedAt', 'p.txId'] : ['t.createdAt', 't.id'];
    const qb = this.transactions().orderBy(at, 'DESC').addOrderBy(id, 'DESC').limit(q.limit);
    if (q.participant) qb.innerJoin(ParticipantRow, 'p', 'p.txId = t.id AND p.name = :participant', { participant: q.participant });
    if (q.state) qb.andWhere('t.state = :state', { state: q.state });
    if (q.after) qb.andWhere(`(${at}, ${id}) < (:afterAt, :afterId)`, { afterAt: new Date(q.after.createdAt), afterId: q.after.id });
    return this.loadInOrder(qb);
  }

  private transactions(): SelectQueryBuilder<TransactionRow> {
    return this.db.getRepository(TransactionRow).createQueryBuilder('t').select('t.id', 'id');
  }

  /** The transactions a listing query selects (ids only), read whole in one statement, in its order. */
  private async loadInOrder(qb: SelectQueryBuilder<TransactionRow>): Promise<TxState[]> {
    const ids = (await qb.getRawMany<{ id: string }>()).map((r) => r.id);
    if (ids.length === 0) return [];
    return (await this.readMany(ids)).flatMap((v) => (v ? [v.state] : []));
  }

  /** Each id's transaction (undefined when there is none), in the order of `ids`. */
  private async readMany(ids: string[]): Promise<(Versioned | undefined)[]> {
    const rows: RawTx[] = await this.db.query(SELECT_TXS, [ids]);
    const byId = new Map(rows.map((r) => [r.id, fromRaw(r)]));
    return ids.map((id) => byId.get(id));
  }

  private async decidedMany(ids: string[]): Promise<(boolean | null)[]> {
    const rows: { id: string; decided: boolean }[] = await this.db.query(SELECT_DECIDED, [ids]);
    const byId = new Map(rows.map((r) => [r.id, r.decided]));
    return ids.map((id) => byId.get(id) ?? null);
  }

  /** Per save, whether it applied (false: the row had another version, someone else stepped it first). */
  private async saveMany(items: Save[]): Promise<boolean[]> {
    const now = new Date().toISOString();
    const records = JSON.stringify(items.map(({ before, next, version }) => {
      const old = new Map(before?.participants.map((p) => [p.name, p]));
      const changed = next.participants.map((p, i) => ({ p, i })).filter(({ p }) => !sameParticipant(old.get(p.name), p));
      return { ...txRecord(next, now), version, participants: changed.map(participantRecord) };
    }));
    const rows: { id: string }[] = await this.db.query(SAVE_TXS, [records, items.length]);
    const saved = new Set(rows.map((r) => r.id));
    return items.map((s) => saved.has(s.next.id));
  }

  /** Per insert, whether it was inserted (false: its idempotency key was taken). */
  private async insertMany(items: Insert[]): Promise<boolean[]> {
    const now = new Date().toISOString();
    const rows: { id: string }[] = await this.db.query(INSERT_TXS, [JSON.stringify(items.map(({ state, idempotency }) => ({
      ...txRecord(state, now),
      idempotency_key: idempotency?.key ?? null,
      request_hash: idempotency?.hash ?? null,
      participants: state.participants.map((p, i) => participantRecord({ p, i })),
    })))]);
    const inserted = new Set(rows.map((r) => r.id));
    return items.map((i) => inserted.has(i.state.id));
  }
}

const GROUP = { maxInFlight: STATEMENTS_IN_FLIGHT, maxItems: TRANSACTIONS_PER_STATEMENT };

const PARTICIPANT_JSON = `json_build_object('name', p.name, 'payload', p.payload, 'url', p.url, 'vote', p.vote,
  'voteReason', p.vote_reason, 'preCommitted', p.pre_committed, 'acked', p.acked)`;

/** Transactions ($1, ids) with their participants in enlistment order: one round trip. */
const SELECT_TXS = `
  SELECT t.id, t.protocol, t.state, t.outcome, t.reason, t.timeout_ms, t.metadata, t.created_at, t.deadline,
         t.decided_at, t.completed_at, t.version,
         COALESCE((SELECT json_agg(${PARTICIPANT_JSON} ORDER BY p.position) FROM tx_participant p WHERE p.tx_id = t.id), '[]'::json) AS participants
    FROM tx_transaction t WHERE t.id = ANY($1::uuid[])`;

const SELECT_DECIDED = 'SELECT id, outcome IS NOT NULL AS decided FROM tx_transaction WHERE id = ANY($1::uuid[])';

/** The columns of a transaction record in the statements' JSON ($1). */
const TX_RECORDS = `jsonb_to_recordset($1::jsonb) AS x(id uuid, version integer, protocol text, state text, outcome text,
  reason text, timeout_ms integer, metadata jsonb, created_at timestamptz, deadline timestamptz, decided_at timestamptz,
  completed_at timestamptz, updated_at timestamptz, idempotency_key text, request_hash text, participants jsonb)`;

const PARTICIPANT_RECORDS = `jsonb_to_recordset(x.participants) AS r(name text, position integer, payload jsonb, url text,
  vote text, vote_reason text, pre_committed boolean, acked boolean)`;

const PARTICIPANT_COLUMNS = 'tx_id, name, position, payload, url, vote, vote_reason, pre_committed, acked, tx_created_at';
const PARTICIPANT_VALUES = `x.id, r.name, r.position, COALESCE(r.payload, '{}'), r.url, r.vote, r.vote_reason, r.pre_committed, r.acked, x.created_at`;

/**
 * New transactions and their participants: one statement, so each whole or not at all. One whose
 * idempotency key is taken is skipped (and does not come back); the caller looks up the holder.
 */
const INSERT_TXS = `
  WITH x AS (SELECT * FROM ${TX_RECORDS}),
  t AS (
    INSERT INTO tx_transaction (id, protocol, state, outcome, reason, timeout_ms, metadata, created_at, deadline,
                                decided_at, completed_at, updated_at, idempotency_key, request_hash)
    SELECT id, protocol, state, outcome, reason, timeout_ms, metadata, created_at, deadline,
           decided_at, completed_at, updated_at, idempotency_key, request_hash FROM x
    ON CONFLICT DO NOTHING RETURNING id),
  p AS (
    INSERT INTO tx_participant (${PARTICIPANT_COLUMNS})
    SELECT ${PARTICIPANT_VALUES} FROM x JOIN t ON t.id = x.id, ${PARTICIPANT_RECORDS})
  SELECT id FROM t`;

/**
 * Steps' new states, each only if its row still has the version the step read: the transaction
 * rows and the changed (or newly enlisted) participants in one statement. The participants' writes
 * depend on their row's: a transaction with another version is not written and does not come back.
 * `LIMIT $2`, the number of records, is there for the planner: it cannot tell how many records the
 * JSON holds (it assumes 100), and for a log of up to some 40,000 rows it joined a few records to a
 * whole scan of the table, on every save, rather than look each one up by its id.
 */
const SAVE_TXS = `
  WITH x AS (SELECT * FROM ${TX_RECORDS} LIMIT $2),
  t AS (
    UPDATE tx_transaction tx SET protocol = x.protocol, state = x.state, outcome = x.outcome, reason = x.reason,
           timeout_ms = x.timeout_ms, metadata = x.metadata, created_at = x.created_at, deadline = x.deadline,
           decided_at = x.decided_at, completed_at = x.completed_at, updated_at = x.updated_at, version = tx.version + 1
      FROM x WHERE tx.id = x.id AND tx.version = x.version RETURNING tx.id),
  p AS (
    INSERT INTO tx_participant (${PARTICIPANT_COLUMNS})
    SELECT ${PARTICIPANT_VALUES} FROM x JOIN t ON t.id = x.id, ${PARTICIPANT_RECORDS}
    ON CONFLICT (tx_id, name) DO UPDATE SET position = EXCLUDED.position, payload = EXCLUDED.payload, url = EXCLUDED.url,
       vote = EXCLUDED.vote, vote_reason = EXCLUDED.vote_reason, pre_committed = EXCLUDED.pre_committed, acked = EXCLUDED.acked)
  SELECT id FROM t`;

interface RawTx {
  id: string;
  protocol: string;
  state: string;
  outcome: string | null;
  reason: string | null;
  timeout_ms: number;
  metadata: Record<string, unknown>;
  created_at: Date;
  deadline: Date;
  decided_at: Date | null;
  completed_at: Date | null;
  version: number;
  participants: ParticipantState[];
}

function fromRaw(r: RawTx): Versioned {
  return {
    version: r.version,
    state: {
      id: r.id,
      protocol: r.protocol as TxState['protocol'],
      phase: r.state as TxPhase,
      outcome: r.outcome as TxState['outcome'],
      reason: r.reason,
      timeoutMs: r.timeout_ms,
      metadata: r.metadata,
      createdAt: r.created_at.getTime(),
      deadline: r.deadline.getTime(),
      decidedAt: r.decided_at?.getTime() ?? null,
      completedAt: r.completed_at?.getTime() ?? null,
      participants: r.participants.map((p) => ({
        name: p.name, payload: p.payload, url: p.url, vote: p.vote, voteReason: p.voteReason, preCommitted: p.preCommitted, acked: p.acked,
      })),
    },
  };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A transaction as a record of TX_RECORDS (without version and participants). */
function txRecord(s: TxState, updatedAt: string) {
  return {
    id: s.id, protocol: s.protocol, state: s.phase, outcome: s.outcome, reason: s.reason, timeout_ms: s.timeoutMs,
    metadata: s.metadata, created_at: iso(s.createdAt), deadline: iso(s.deadline), decided_at: iso(s.decidedAt),
    completed_at: iso(s.completedAt), updated_at: updatedAt,
  };
}

function participantRecord({ p, i }: { p: ParticipantState; i: number }) {
  return {
    name: p.name, position: i, payload: p.payload, url: p.url, vote: p.vote, vote_reason: p.voteReason, pre_committed: p.preCommitted, acked: p.acked,
  };
}

function sameParticipant(a: ParticipantState | undefined, b: ParticipantState): boolean {
  return !!a && a.vote === b.vote && a.voteReason === b.voteReason && a.preCommitted === b.preCommitted && a.acked === b.acked &&
    a.url === b.url && JSON.stringify(a.payload) === JSON.stringify(b.payload);
}
