/**
 * Resource adapters: a member service's work runs in a transaction of its OWN database (Postgres
 * or MariaDB), and that transaction is the one the global transaction commits or aborts, through
 * the database's own two-phase commit (Postgres `PREPARE TRANSACTION`, MariaDB XA). The service
 * writes no protocol code: it gives a `work(ctx, conn)` function and a connection pool.
 *
 *   prepare(ctx)  → open a dedicated connection; BEGIN (XA START); insert the commit marker; work();
 *                   PREPARE (XA END + XA PREPARE); return yes. The library then commits its own
 *                   `prepared` record (its Postgres DataSource) and only then sends the yes vote.
 *   commit(ctx)   → COMMIT PREPARED (XA COMMIT), idempotently; the library then records `committed`.
 *   abort(ctx)    → ROLLBACK PREPARED (XA ROLLBACK), idempotently; the library records `aborted`.
 *   recover()     → at start and then periodically: every prepared transaction of this service in
 *                   the resource database is matched with the library's record of it (see below).
 *
 * Global transaction ids. Postgres: gid `txc:<participant>:<txId>` (pg_prepared_xacts is
 * cluster-wide; recovery also filters on the current database). MariaDB: xid
 * (gtrid `txc:<txId>`, bqual `<participant>/<database>` — hashed when longer than 64 bytes, formatID
 * 0x74786301); XA RECOVER is server-wide, so the bqual scopes an xid to one service and database.
 *
 * The commit marker. The first statement of every resource transaction inserts a row
 * (`txc_commit_marker`, keyed by the gid) in the resource database. The row exists exactly when the
 * prepared transaction committed: it is invisible while prepared and gone after a rollback. That is
 * what makes repeats precise — neither Postgres nor XA can say what became of a gid that is no
 * longer prepared:
 *
 *   commit, gid prepared            → COMMIT PREPARED
 *   commit, gid gone, marker        → it committed earlier (a repeat): success
 *   commit, gid gone, no marker     → it was rolled back: ATOMICITY VIOLATION, thrown (never acked)
 *   abort,  gid prepared            → ROLLBACK PREPARED
 *   abort,  gid gone, no marker     → rolled back earlier, or never prepared: success
 *   abort,  gid gone, marker        → it committed: ATOMICITY VIOLATION, thrown (never acked)
 *
 * Markers of committed transactions are pruned (hourly) after `markerRetentionMs` (default 7 days).
 * A decision for a transaction repeated after that long would be refused as a violation (never
 * acked) rather than wrongly accepted; keep the retention above the coordinator's longest retry.
 *
 * Locking. The library handles each message in a local transaction of its DataSource that first
 * takes an advisory lock on (participant, txId) and holds it until that transaction commits. The
 * prepare handler runs inside it; recovery takes the same lock before it looks at the library's
 * record. So recovery never sees a prepare half-way (gid prepared, library record not yet
 * committed), also across several instances of one service sharing the databases.
 *
 * Crash points, in order, and what makes each safe:
 *
 *  1. During work, before PREPARE: the resource transaction dies with its connection (rolled back);
 *     no library record, no vote. The coordinator resends prepare; it runs afresh.
 *  2. PREPARE failed (deadlock, max_prepared_transactions reached, lock timeout …): the database
 *     rolled the transaction back; the handler throws, the library votes no with the reason.
 *  3. PREPARE's answer lost (connection dropped; the gid may or may not be prepared): the handler
 *     throws → the library records `aborted` and votes no. The adapter tries ROLLBACK PREPARED at
 *     once; if that fails too, recovery finds the gid with an `aborted` record and rolls it back.
 *  4. After PREPARE, before the library's record committed (process killed, library DB down, the
 *     library turning a late yes into no): no yes vote ever left, so the coordinator cannot have
 *     decided commit. Recovery finds the gid with no record (or `aborted`) and rolls it back. A
 *     prepare redelivered before that finds the gid already prepared with no record, under the
 *     lock: it rolls the leftover back first and does the work again.
 *  5. After the record committed, before the vote was sent: the library resends the same yes for
 *     a repeated prepare and asks the coordinator (status-request) after the deadline; after a
 *     restart it asks at once. The gid stays prepared (durable in the resource database) meanwhile.
 *  6. COMMIT/ROLLBACK PREPARED done, library record not yet updated (killed): the record still says
 *     prepared; after the restart the library asks, the decision arrives again, and the handler
 *     finds the gid gone and the marker telling what happened: a repeat, answered with success.
 *  7. Library record `committed`/`aborted` but the gid still prepared (cannot happen through the
 *     handlers, which finish the gid first; only a hand edit): recovery finishes the gid as the
 *     record says.
 *
 * A record `prepared`/`precommitted` with its gid prepared is left to the library: it asks the
 * coordinator and the decision reaches the handler. In 2PC the adapter, like the library, never
 * decides on its own.
 */
import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';
import { startLockedTx } from '../log-store';
import { runParticipantMigrations } from '../schema';
import type { DecisionContext, PrepareContext, TransactionParticipant, VoteResult } from '../types';

/** Table of commit markers in the resource database. */
export const COMMIT_MARKER_TABLE = 'txc_commit_marker';

/** The resource database is not set up for two-phase commit, or not reachable; the message says how to fix it. */
export class ResourceNotReadyError extends Error {
  override name = 'ResourceNotReadyError';
}

/** A resource transaction was finished both ways: the marker contradicts the decision. Never acknowledged. */
export class AtomicityViolationError extends Error {
  override name = 'AtomicityViolationError';
}

/** One prepared transaction of this service found in the resource database. */
export interface PreparedEntry {
  /** The transaction id (coordinator's UUID) it belongs to. */
  txId: string;
  /** The database's id of it (gid, or the XA xid in SQL form). */
  gid: string;
}

/** What finishing a prepared transaction found. */
export type FinishResult = 'done' | 'already-finished' | 'busy';

/**
 * What an engine adapter (Postgres, MariaDB) provides to the generic participant below. `C` is the
 * connection the service's work function gets.
 */
export interface ResourceDriver<C> {
  /** For messages: `postgres` / `mariadb` and where. */
  readonly description: string;
  /** Checks that two-phase commit is usable (clear ResourceNotReadyError otherwise) and creates the marker table. */
  setup(): Promise<void>;
  /** The gid of (participant, txId). */
  gid(txId: string): string;
  /**
   * Opens a connection, begins the resource transaction, inserts the marker, runs `work`; on yes
   * prepares it and returns `prepared: true`; on no (or a throw) rolls it back. The connection is
   * released either way.
   */
  runAndPrepare(
    txId: string,
    lockTimeoutMs: number,
    work: (conn: C) => Promise<VoteResult>,
    beforePrepare: () => void,
  ): Promise<{ vote: VoteResult; prepared: boolean }>;
  /** Finishes a prepared transaction; `already-finished` when it is not prepared (any more). */
  commitPrepared(txId: string): Promise<FinishResult>;
  rollbackPrepared(txId: string): Promise<FinishResult>;
  /** Whether the gid is prepared right now. */
  isPrepared(txId: string): Promise<boolean>;
  /** Whether the marker of the gid exists (the transaction committed). */
  markerExists(txId: string): Promise<boolean>;
  /** Every transaction of this participant (and database) prepared now. */
  listPrepared(): Promise<PreparedEntry[]>;
  /** Deletes markers older than `ms`; returns how many. */
  pruneMarkers(olderThanMs: number): Promise<number>;
  close(): Promise<void>;
}

export interface ResourceParticipantOptions<C> {
  /** The participant name (as given to startParticipant / ParticipantModule). */
  name: string;
  /** The library's DataSource (its `tx_participant_log`); the same one the runtime uses. */
  libraryDataSource: DataSource;
  /**
   * The service's work for one global transaction, inside the resource transaction. Return `yes`
   * to prepare it, `no` (with a reason) to roll it back and vote no. A throw votes no.
   */
  work: (ctx: PrepareContext, conn: C) => Promise<VoteResult>;
  /** Lock wait limit inside the work (default 5000 ms): a row held by an undecided transaction makes this one vote no rather than wait past its deadline. */
  lockTimeoutMs?: number;
  /** How often recovery runs after start (default 10000 ms; 0: only at start). */
  recoverIntervalMs?: number;
  /** How long commit markers are kept (default 7 days). */
  markerRetentionMs?: number;
  logger?: Logger;
}

export interface RecoveryReport {
  /** Prepared transactions of this service found. */
  found: number;
  /** Rolled back: no library record (the yes vote never left) or the record says aborted. */
  rolledBack: string[];
  /** Committed: the library record says committed. */
  committed: string[];
  /** Left prepared: the library waits for the coordinator's decision. */
  inDoubt: string[];
  /** Could not be finished this round (still attached, lock busy); tried again next round. */
  skipped: string[];
}

/**
 * A TransactionParticipant whose vote is a prepared transaction of the service's own database.
 * Give it to startParticipant / ParticipantModule as the participant; call `start()` before the
 * library starts consuming (it checks the database, creates the marker table and recovers) and
 * `stop()` after the library stopped.
 */
export class ResourceParticipant<C> implements TransactionParticipant {
  private readonly log?: Logger;
  private timer?: NodeJS.Timeout;
  private lastPrune = Date.now();
  private recovering?: Promise<RecoveryReport>;
  private stopped = false;

  constructor(
    private readonly driver: ResourceDriver<C>,
    private readonly options: ResourceParticipantOptions<C>,
  ) {
    this.log = options.logger?.child({ participant: options.name, resource: driver.description });
  }

  /** Checks the resource database, creates what the adapter needs, recovers, and starts periodic recovery. */
  async start(): Promise<RecoveryReport> {
    await this.driver.setup();
    // The library's table must exist for recovery to read it (idempotent, also run by the runtime).
    await runParticipantMigrations(this.options.libraryDataSource);
    const report = await this.recover();
    const every = this.options.recoverIntervalMs ?? 10_000;
    if (every > 0) this.schedule(every);
    return report;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.recovering?.catch(() => undefined);
    await this.driver.close();
  }

  private schedule(every: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(async () => {
      try {
        await this.recover();
        if (Date.now() - this.lastPrune > 3600_000) {
          this.lastPrune = Date.now();
          await this.driver.pruneMarkers(this.options.markerRetentionMs ?? 7 * 24 * 3600_000);
        }
      } catch (err) {
        this.log?.warn({ err }, 'periodic recovery of prepared transactions failed; will retry');
      }
      this.schedule(every);
    }, every);
    this.timer.unref();
  }

  // ---- TransactionParticipant ------------------------------------------------------------------

  async prepare(ctx: PrepareContext): Promise<VoteResult> {
    const { txId } = ctx;
    // We hold the library's lock of (participant, txId) and it has no record: a gid prepared now is
    // a leftover of an attempt whose record never committed (crash point 4). Its yes never left.
    if (await this.driver.isPrepared(txId)) {
      const r = await this.driver.rollbackPrepared(txId);
      if (r === 'busy') throw new Error(`a leftover prepared transaction ${this.driver.gid(txId)} is still attached; try again`);
      ctx.logger.warn({ gid: this.driver.gid(txId) }, 'rolled back a leftover prepared transaction of an earlier attempt');
    }
    const lockTimeoutMs = this.options.lockTimeoutMs ?? 5000;
    let result: { vote: VoteResult; prepared: boolean };
    try {
      result = await this.driver.runAndPrepare(txId, lockTimeoutMs, (conn) => this.options.work(ctx, conn), () => {
        if (ctx.deadline.getTime() <= Date.now()) throw new Error('deadline-passed');
      });
    } catch (err) {
      // Crash point 3: PREPARE's answer may have been lost. Best effort now; recovery otherwise.
      await this.driver.rollbackPrepared(txId).catch(() => undefined);
      throw err;
    }
    if (result.prepared) ctx.logger.info({ gid: this.driver.gid(txId) }, 'resource transaction prepared');
    return result.vote;
  }

  async commit(ctx: DecisionContext): Promise<void> {
    await this.finish(ctx, 'commit');
  }

  async abort(ctx: DecisionContext): Promise<void> {
    await this.finish(ctx, 'abort');
  }

  private async finish(ctx: DecisionContext, kind: 'commit' | 'abort'): Promise<void> {
    const gid = this.driver.gid(ctx.txId);
    const r = kind === 'commit' ? await this.driver.commitPrepared(ctx.txId) : await this.driver.rollbackPrepared(ctx.txId);
    if (r === 'busy') throw new Error(`prepared transaction ${gid} is still attached to a closing connection; will retry`);
    if (r === 'done') {
      ctx.logger.info({ gid }, kind === 'commit' ? 'resource transaction committed' : 'resource transaction rolled back');
      return;
    }
    // Not prepared: finished before (a repeat after a crash, crash point 6). The marker says how.
    const committed = await this.driver.markerExists(ctx.txId);
    if ((kind === 'commit') === committed) {
      ctx.logger.info({ gid }, `resource transaction was already ${kind === 'commit' ? 'committed' : 'rolled back'}`);
      return;
    }
    const msg =
      kind === 'commit'
        ? `told to commit ${gid}, but it is no longer prepared and did not commit (rolled back)`
        : `told to abort ${gid}, but it already committed`;
    ctx.logger.error({ gid, alert: 'atomicity' }, `PROTOCOL VIOLATION: ${msg}`);
    throw new AtomicityViolationError(msg);
  }

  // ---- recovery --------------------------------------------------------------------------------

  /**
   * Matches every prepared transaction of this service with the library's record, under the
   * library's lock of that transaction: no record or `aborted` → roll back; `committed` → commit;
   * `prepared`/`precommitted` → leave it (the library asks the coordinator).
   */
  recover(): Promise<RecoveryReport> {
    this.recovering ??= this.doRecover().finally(() => (this.recovering = undefined));
    return this.recovering;
  }

  private async doRecover(): Promise<RecoveryReport> {
    const entries = await this.driver.listPrepared();
    const report: RecoveryReport = { found: entries.length, rolledBack: [], committed: [], inDoubt: [], skipped: [] };
    for (const e of entries) {
      if (this.stopped) break;
      try {
        await this.reconcileOne(e, report);
      } catch (err) {
        this.log?.warn({ err, txId: e.txId, gid: e.gid }, 'could not reconcile a prepared transaction; will retry');
        report.skipped.push(e.txId);
      }
    }
    if (report.rolledBack.length || report.committed.length) {
      this.log?.info(
        { rolledBack: report.rolledBack, committed: report.committed, inDoubt: report.inDoubt.length },
        'recovered prepared transactions',
      );
    }
    return report;
  }

  private async reconcileOne(e: PreparedEntry, report: RecoveryReport): Promise<void> {
    const q = this.options.libraryDataSource.createQueryRunner();
    await q.connect();
    try {
      try {
        // Waits for a handler of this transaction that is running now (its prepare, commit, abort).
        const rec = await startLockedTx(q, e.txId, this.options.name);
        const log = this.log?.child({ txId: e.txId, gid: e.gid });
        if (rec && (rec.state === 'prepared' || rec.state === 'precommitted')) {
          report.inDoubt.push(e.txId);
        } else if (rec?.state === 'committed') {
          const r = await this.driver.commitPrepared(e.txId);
          if (r === 'busy') report.skipped.push(e.txId);
          else {
            log?.warn('library record says committed but the resource transaction was still prepared; committed it');
            report.committed.push(e.txId);
          }
        } else {
          const r = await this.driver.rollbackPrepared(e.txId);
          if (r === 'busy') report.skipped.push(e.txId);
          else {
            log?.info(
              { record: rec?.state ?? 'none' },
              'prepared resource transaction without a yes vote (no prepared record); rolled it back',
            );
            report.rolledBack.push(e.txId);
          }
        }
        await q.commitTransaction();
      } catch (err) {
        if (q.isTransactionActive) await q.rollbackTransaction().catch(() => undefined);
        throw err;
      }
    } finally {
      await q.release();
    }
  }
}

/** The txId inside a gid/xid of ours, or null. */
export function txIdOf(gidTail: string): string | null {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(gidTail) ? gidTail.toLowerCase() : null;
}

export function normalizeVoteResult(v: VoteResult): 'yes' | 'no' {
  if (v === 'yes' || v === 'no') return v;
  if (v && typeof v === 'object' && (v.vote === 'yes' || v.vote === 'no')) return v.vote;
  throw new Error(`work returned ${JSON.stringify(v)}, expected 'yes', 'no' or { vote, reason? }`);
}
