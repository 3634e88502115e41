import { Inject, Injectable, Optional } from '@nestjs/common';
import { KeyedQueue } from '../../../libs/concurrency/keyed-queue';
import { PinoLogger } from 'nestjs-pino';
import { DataSource, In } from 'typeorm';
import { ParticipantState, TxPhase, TxState } from '../../../libs/engine';
import { Breaker } from '../../../libs/resilience/breaker';
import { CONFIG, CoordinatorConfig } from '../config/config';
import { ParticipantRow, TransactionRow } from './entities';
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

const UNIQUE_VIOLATION = '23505';


/**
 * The durable decision log in Postgres. Every change to a transaction happens in `update`: read
 * the transaction, step it, and save the new state in one statement that applies only if the row's
 * version is still the one read (optimistic concurrency). A step that lost a race with another
 * replica is read again and redone, so steps on one transaction are serialized across replicas,
 * and the change (the decision) is committed before the caller sends anything. Within this
 * process, steps of one transaction also wait for each other, so they do not race at all.
 *
 * The hot path is raw SQL, one round trip each: a read is one query (the transaction and its
 * participants as JSON), a save is one statement (the transaction row and the changed participant
 * rows), a begin is one statement. TypeORM stays for migrations and the listing queries.
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
    return this.guard(() => this.getNow(id));
  }

  /**
   * Locks the transaction, hands its state to `change`, and saves what it returns before commit.
   * Resolves with null when the transaction does not exist.
   */
  update<T>(id: string, change: (state: TxState) => { next: TxState | null; result: T }): Promise<{ result: T } | null> {
    return this.guard(() => this.updateNow(id, change));
  }

  list(q: ListQuery): Promise<TxState[]> {
    return this.guard(() => this.listNow(q));
  }

  /** Unfinished transactions not touched since `before`, in id order from `afterId`: recovery and sweep. */
  unfinished(before: Date, limit: number, afterId?: string): Promise<TxState[]> {
    return this.guard(() => this.unfinishedNow(before, limit, afterId));
  }

  /**
   * Unfinished transactions begun before `createdBefore`, oldest first, at most `limit` (and how
   * many there are in all) — except active ones whose deadline is still ahead (`now`): stuck ones.
   */
  stuck(createdBefore: Date, now: Date, limit: number): Promise<{ items: TxState[]; total: number }> {
    return this.guard(async () => {
      const qb = this.db.getRepository(TransactionRow).createQueryBuilder('t')
        .where('t.completedAt IS NULL').andWhere('t.createdAt < :createdBefore', { createdBefore })
        .andWhere("NOT (t.state = 'active' AND t.deadline > :now)", { now })
        .orderBy('t.createdAt', 'ASC');
      const [rows, total] = await qb.take(limit).getManyAndCount();
      return { items: await this.loadMany(rows), total };
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
    return this.guard(() => this.countUnfinishedNow());
  }

  ping(): Promise<void> {
    return this.guard(() => this.pingNow());
  }

  private async insertNow(state: TxState, idempotency?: IdempotencyKey): Promise<InsertResult> {
    try {
      await this.db.query(INSERT_TX, [
        state.id, state.protocol, state.phase, state.outcome, state.reason, state.timeoutMs, state.metadata,
        new Date(state.createdAt), new Date(state.deadline), toDate(state.decidedAt), toDate(state.completedAt), new Date(),
        idempotency?.key ?? null, idempotency?.hash ?? null, participantsJson(state.participants.map((p, i) => ({ p, i }))),
      ]);
      return { created: true, state };
    } catch (err) {
      if (!idempotency || (err as { code?: string }).code !== UNIQUE_VIOLATION) throw err;
      const row = await this.db.getRepository(TransactionRow).findOneBy({ idempotencyKey: idempotency.key });
      const existing = row && (await this.read(row.id));
      if (!row || !existing) throw err;
      return { created: false, state: existing.state, sameRequest: row.requestHash === idempotency.hash };
    }
  }

  private async getNow(id: string): Promise<TxState | null> {
    return (await this.read(id))?.state ?? null;
  }

  private async read(id: string): Promise<{ state: TxState; version: number } | null> {
    const rows: RawTx[] = await this.db.query(SELECT_TX, [id]);
    return rows.length ? fromRaw(rows[0]) : null;
  }

  private updateNow<T>(id: string, change: (state: TxState) => { next: TxState | null; result: T }): Promise<{ result: T } | null> {
    return this.steps.run(id, async () => {
      for (let attempt = 1; ; attempt++) {
        const current = await this.read(id);
        if (!current) return null;
        const { next, result } = change(current.state);
        if (!next || (await this.saveIfUnchanged(current.state, next, current.version))) return { result };
        // Another replica changed it since the read: step again on what it wrote.
        if (attempt >= MAX_STEP_ATTEMPTS) throw new Error(`transaction ${id} changed concurrently ${attempt} times in a row; giving up this step`);
      }
    });
  }

  /** Saves `next` if the row still has `version`; false when someone else changed it first. */
  private async saveIfUnchanged(before: TxState, next: TxState, version: number): Promise<boolean> {
    const old = new Map(before.participants.map((p) => [p.name, p]));
    const changed = next.participants.map((p, i) => ({ p, i })).filter(({ p }) => !sameParticipant(old.get(p.name), p));
    const rows: { n: number }[] = await this.db.query(SAVE_TX, [
      next.id, version, next.protocol, next.phase, next.outcome, next.reason, next.timeoutMs, next.metadata,
      new Date(next.createdAt), new Date(next.deadline), toDate(next.decidedAt), toDate(next.completedAt), new Date(),
      participantsJson(changed),
    ]);
    return rows[0].n === 1;
  }

  private async listNow(q: ListQuery): Promise<TxState[]> {
    const qb = this.db.getRepository(TransactionRow).createQueryBuilder('t')
      .orderBy('t.createdAt', 'DESC').addOrderBy('t.id', 'DESC').limit(q.limit);
    if (q.state) qb.andWhere('t.state = :state', { state: q.state });
    if (q.participant) {
      qb.andWhere('EXISTS (SELECT 1 FROM tx_participant p WHERE p.tx_id = t.id AND p.name = :participant)', { participant: q.participant });
    }
    if (q.after) qb.andWhere('(t.createdAt, t.id) < (:afterAt, :afterId)', { afterAt: new Date(q.after.createdAt), afterId: q.after.id });
    return this.loadMany(await qb.getMany());
  }

  private async unfinishedNow(before: Date, limit: number, afterId?: string): Promise<TxState[]> {
    const qb = this.db.getRepository(TransactionRow).createQueryBuilder('t')
      .where('t.completedAt IS NULL').andWhere('t.updatedAt < :before', { before })
      .orderBy('t.id', 'ASC').limit(limit);
    if (afterId) qb.andWhere('t.id > :afterId', { afterId });
    return this.loadMany(await qb.getMany());
  }

  private async countUnfinishedNow(): Promise<Record<string, number>> {
    const rows: { state: string; n: string }[] = await this.db.query(
      'SELECT state, count(*) AS n FROM tx_transaction WHERE completed_at IS NULL GROUP BY state');
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }

  private async pingNow(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  private async loadMany(rows: TransactionRow[]): Promise<TxState[]> {
    if (rows.length === 0) return [];
    const all = await this.db.getRepository(ParticipantRow).find({
      where: { txId: In(rows.map((r) => r.id)) },
      order: { position: 'ASC' },
    });
    const byTx = new Map<string, ParticipantRow[]>();
    for (const p of all) byTx.set(p.txId, [...(byTx.get(p.txId) ?? []), p]);
    return rows.map((r) => fromRows(r, byTx.get(r.id) ?? []));
  }
}

/** A step that keeps losing races with other replicas gives up (and is retried by its caller). */
const MAX_STEP_ATTEMPTS = 20;

const PARTICIPANT_JSON = `json_build_object('name', p.name, 'payload', p.payload, 'url', p.url, 'vote', p.vote,
  'voteReason', p.vote_reason, 'preCommitted', p.pre_committed, 'acked', p.acked)`;

/** One transaction with its participants in enlistment order: one round trip. */
const SELECT_TX = `
  SELECT t.id, t.protocol, t.state, t.outcome, t.reason, t.timeout_ms, t.metadata, t.created_at, t.deadline,
         t.decided_at, t.completed_at, t.version,
         COALESCE((SELECT json_agg(${PARTICIPANT_JSON} ORDER BY p.position) FROM tx_participant p WHERE p.tx_id = t.id), '[]'::json) AS participants
    FROM tx_transaction t WHERE t.id = $1`;

const PARTICIPANT_RECORDS = `jsonb_to_recordset($15::jsonb) AS x(name text, position integer, payload jsonb, url text, vote text,
  vote_reason text, pre_committed boolean, acked boolean)`;

/** A new transaction and its participants: one statement, so all of it or nothing. */
const INSERT_TX = `
  WITH t AS (
    INSERT INTO tx_transaction (id, protocol, state, outcome, reason, timeout_ms, metadata, created_at, deadline,
                                decided_at, completed_at, updated_at, idempotency_key, request_hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id)
  INSERT INTO tx_participant (tx_id, name, position, payload, url, vote, vote_reason, pre_committed, acked)
  SELECT (SELECT id FROM t), x.name, x.position, COALESCE(x.payload, '{}'), x.url, x.vote, x.vote_reason, x.pre_committed, x.acked
    FROM ${PARTICIPANT_RECORDS}`;

/**
 * A step's new state, if the row still has the version the step read ($2): the transaction row and
 * the changed (or newly enlisted) participants in one statement. The participants' write depends
 * on the row's: with another version, nothing is written and no row comes back.
 */
const SAVE_TX = `
  WITH t AS (
    UPDATE tx_transaction SET protocol = $3, state = $4, outcome = $5, reason = $6, timeout_ms = $7, metadata = $8,
           created_at = $9, deadline = $10, decided_at = $11, completed_at = $12, updated_at = $13, version = version + 1
     WHERE id = $1 AND version = $2 RETURNING id),
  p AS (
    INSERT INTO tx_participant (tx_id, name, position, payload, url, vote, vote_reason, pre_committed, acked)
    SELECT (SELECT id FROM t), x.name, x.position, COALESCE(x.payload, '{}'), x.url, x.vote, x.vote_reason, x.pre_committed, x.acked
      FROM ${PARTICIPANT_RECORDS.replace('$15', '$14')}
     WHERE EXISTS (SELECT 1 FROM t)
    ON CONFLICT (tx_id, name) DO UPDATE SET position = EXCLUDED.position, payload = EXCLUDED.payload, url = EXCLUDED.url,
       vote = EXCLUDED.vote, vote_reason = EXCLUDED.vote_reason, pre_committed = EXCLUDED.pre_committed, acked = EXCLUDED.acked)
  SELECT count(*)::int AS n FROM t`;

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

function fromRaw(r: RawTx): { state: TxState; version: number } {
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

const toDate = (ms: number | null) => (ms === null ? null : new Date(ms));

function participantsJson(ps: { p: ParticipantState; i: number }[]): string {
  return JSON.stringify(ps.map(({ p, i }) => ({
    name: p.name, position: i, payload: p.payload, url: p.url, vote: p.vote, vote_reason: p.voteReason, pre_committed: p.preCommitted, acked: p.acked,
  })));
}

function sameParticipant(a: ParticipantState | undefined, b: ParticipantState): boolean {
  return !!a && a.vote === b.vote && a.voteReason === b.voteReason && a.preCommitted === b.preCommitted && a.acked === b.acked &&
    a.url === b.url && JSON.stringify(a.payload) === JSON.stringify(b.payload);
}

function fromRows(r: TransactionRow, ps: ParticipantRow[]): TxState {
  return {
    id: r.id,
    protocol: r.protocol as TxState['protocol'],
    phase: r.state as TxPhase,
    outcome: r.outcome as TxState['outcome'],
    reason: r.reason,
    timeoutMs: r.timeoutMs,
    metadata: r.metadata,
    createdAt: r.createdAt.getTime(),
    deadline: r.deadline.getTime(),
    decidedAt: r.decidedAt?.getTime() ?? null,
    completedAt: r.completedAt?.getTime() ?? null,
    participants: ps.map((p) => ({
      name: p.name, payload: p.payload, url: p.url, vote: p.vote as ParticipantState['vote'], voteReason: p.voteReason,
      preCommitted: p.preCommitted, acked: p.acked,
    })),
  };
}
