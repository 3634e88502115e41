import { Inject, Injectable, Optional } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { DataSource, EntityManager, In } from 'typeorm';
import { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
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

// jsonb columns hold Record<string, unknown>, which TypeORM's deep-partial write types cannot express.
type TxRowWrite = QueryDeepPartialEntity<TransactionRow>;
type PRowWrite = QueryDeepPartialEntity<ParticipantRow>;

/**
 * The durable decision log in Postgres. Every change to a transaction happens in `update`, under
 * the transaction row's lock, so steps on one transaction are serialized across replicas and the
 * decision is committed to the database before the caller sends anything.
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

  /** Unfinished transactions by state. */
  countUnfinished(): Promise<Record<string, number>> {
    return this.guard(() => this.countUnfinishedNow());
  }

  ping(): Promise<void> {
    return this.guard(() => this.pingNow());
  }

  private async insertNow(state: TxState, idempotency?: IdempotencyKey): Promise<InsertResult> {
    try {
      await this.db.transaction(async (em) => {
        await em.insert(TransactionRow, toRow(state, idempotency) as Partial<TransactionRow> as TxRowWrite);
        if (state.participants.length) await em.insert(ParticipantRow, state.participants.map((p, i) => toParticipantRow(state.id, p, i)) as PRowWrite[]);
      });
      return { created: true, state };
    } catch (err) {
      if (!idempotency || (err as { code?: string }).code !== UNIQUE_VIOLATION) throw err;
      const row = await this.db.getRepository(TransactionRow).findOneBy({ idempotencyKey: idempotency.key });
      if (!row) throw err;
      return { created: false, state: await this.load(this.db.manager, row), sameRequest: row.requestHash === idempotency.hash };
    }
  }

  private async getNow(id: string): Promise<TxState | null> {
    const row = await this.db.getRepository(TransactionRow).findOneBy({ id });
    return row ? this.load(this.db.manager, row) : null;
  }

  private async updateNow<T>(id: string, change: (state: TxState) => { next: TxState | null; result: T }): Promise<{ result: T } | null> {
    return this.db.transaction(async (em) => {
      const row = await em.getRepository(TransactionRow).findOne({ where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!row) return null;
      const before = await this.load(em, row);
      const { next, result } = change(before);
      if (next) await save(em, before, next);
      return { result };
    });
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

  private async load(em: EntityManager, row: TransactionRow): Promise<TxState> {
    const participants = await em.getRepository(ParticipantRow).find({ where: { txId: row.id }, order: { position: 'ASC' } });
    return fromRows(row, participants);
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

async function save(em: EntityManager, before: TxState, next: TxState): Promise<void> {
  const { idempotencyKey: _k, requestHash: _h, ...row } = toRow(next);
  await em.update(TransactionRow, { id: next.id }, row as TxRowWrite);
  const old = new Map(before.participants.map((p) => [p.name, p]));
  const changed = next.participants
    .map((p, i) => ({ p, i }))
    .filter(({ p }) => JSON.stringify(old.get(p.name)) !== JSON.stringify(p))
    .map(({ p, i }) => toParticipantRow(next.id, p, i));
  if (changed.length) await em.upsert(ParticipantRow, changed as PRowWrite[], ['txId', 'name']);
}

function toRow(s: TxState, idempotency?: IdempotencyKey): TransactionRow {
  return {
    id: s.id,
    protocol: s.protocol,
    state: s.phase,
    outcome: s.outcome,
    reason: s.reason,
    timeoutMs: s.timeoutMs,
    metadata: s.metadata,
    createdAt: new Date(s.createdAt),
    deadline: new Date(s.deadline),
    decidedAt: s.decidedAt === null ? null : new Date(s.decidedAt),
    completedAt: s.completedAt === null ? null : new Date(s.completedAt),
    updatedAt: new Date(),
    idempotencyKey: idempotency?.key ?? null,
    requestHash: idempotency?.hash ?? null,
  };
}

function toParticipantRow(txId: string, p: ParticipantState, position: number): ParticipantRow {
  return { txId, name: p.name, position, payload: p.payload, url: p.url, vote: p.vote, voteReason: p.voteReason, preCommitted: p.preCommitted, acked: p.acked };
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
