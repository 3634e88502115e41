/**
 * Postgres prepared transactions as a resource of the participant library: the work runs in a
 * transaction of a dedicated pool connection, the yes vote is `PREPARE TRANSACTION 'txc:<name>:<txId>'`,
 * the decision `COMMIT PREPARED` / `ROLLBACK PREPARED`; recovery reads `pg_prepared_xacts`.
 * The protocol and every crash point: resource-participant.ts.
 *
 *   const accounts = new Pool({ connectionString: ACCOUNTS_URL });
 *   const participant = postgresPreparedParticipant({ name: 'bank-a', pool: accounts, libraryDataSource,
 *     work: async (ctx, client) => { await client.query('UPDATE …'); return 'yes'; } });
 *   await participant.start();                       // checks max_prepared_transactions, recovers
 *   const runtime = await startParticipant({ name: 'bank-a', participant, dataSource: libraryDataSource });
 *
 * Needs `max_prepared_transactions > 0` on the server (a restart to change); start() says so clearly.
 * The pool's user must be the owner of the prepared transactions or a superuser.
 */
import type { Pool, PoolClient } from 'pg';
import {
  COMMIT_MARKER_TABLE as M,
  FinishResult,
  normalizeVoteResult,
  PreparedEntry,
  ResourceDriver,
  ResourceNotReadyError,
  ResourceParticipant,
  ResourceParticipantOptions,
  txIdOf,
} from './resource-participant';

const GID_PREFIX = 'txc:';

export interface PostgresPreparedOptions extends ResourceParticipantOptions<PoolClient> {
  /** A pg Pool of the resource database (the service's accounts, stock …). The adapter does not end it unless `ownsPool`. */
  pool: Pool;
  ownsPool?: boolean;
}

export function postgresPreparedParticipant(o: PostgresPreparedOptions): ResourceParticipant<PoolClient> {
  return new ResourceParticipant(new PostgresDriver(o.name, o.pool, !!o.ownsPool), o);
}

/** Postgres error codes used below. */
const UNDEFINED_OBJECT = '42704'; // prepared transaction with identifier … does not exist
const OBJECT_IN_USE = '55006'; // prepared transaction with identifier … is busy (being finished by another session)
const OBJECT_NOT_IN_STATE = '55000'; // prepared transactions are disabled

export class PostgresDriver implements ResourceDriver<PoolClient> {
  readonly description: string;

  constructor(
    private readonly participant: string,
    private readonly pool: Pool,
    private readonly ownsPool: boolean,
  ) {
    const o = (pool as unknown as { options?: { database?: string; connectionString?: string } }).options ?? {};
    let db = o.database;
    if (!db && o.connectionString) {
      try {
        db = new URL(o.connectionString).pathname.slice(1);
      } catch {
        db = undefined;
      }
    }
    this.description = `postgres${db ? `:${db}` : ''}`;
  }

  gid(txId: string): string {
    // Both parts are safe inside a quoted literal: a participant name is [A-Za-z0-9._-], a txId a UUID.
    if (!txIdOf(txId)) throw new Error(`not a transaction id: ${JSON.stringify(txId)}`);
    return `${GID_PREFIX}${this.participant}:${txId}`;
  }

  async setup(): Promise<void> {
    let max: number;
    try {
      const r = await this.pool.query<{ max_prepared_transactions: string }>('SHOW max_prepared_transactions');
      max = Number(r.rows[0].max_prepared_transactions);
    } catch (err) {
      throw new ResourceNotReadyError(`${this.description}: cannot reach the resource database: ${(err as Error).message}`);
    }
    if (!(max > 0)) {
      throw new ResourceNotReadyError(
        `${this.description}: max_prepared_transactions = ${max}, so PREPARE TRANSACTION is disabled. ` +
          `Run "ALTER SYSTEM SET max_prepared_transactions = 64" and restart Postgres (see .ci/postgres.sh)`,
      );
    }
    await this.pool.query(`SELECT pg_advisory_lock(hashtextextended('${M}', 0))`).then(async () => {
      try {
        await this.pool.query(`
          CREATE TABLE IF NOT EXISTS ${M} (
            gid         text        PRIMARY KEY,
            created_at  timestamptz NOT NULL DEFAULT now()
          )`);
      } finally {
        await this.pool.query(`SELECT pg_advisory_unlock(hashtextextended('${M}', 0))`);
      }
    });
  }

  async runAndPrepare(
    txId: string,
    lockTimeoutMs: number,
    work: (conn: PoolClient) => Promise<unknown>,
    beforePrepare: () => void,
  ): Promise<{ vote: import('../types').VoteResult; prepared: boolean }> {
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      try {
        await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`);
        await client.query(`INSERT INTO ${M} (gid) VALUES ($1)`, [this.gid(txId)]);
        const vote = (await work(client)) as import('../types').VoteResult;
        if (normalizeVoteResult(vote) === 'no') {
          await client.query('ROLLBACK');
          return { vote, prepared: false };
        }
        beforePrepare();
        await client.query(`PREPARE TRANSACTION '${this.gid(txId)}'`);
        return { vote, prepared: true };
      } catch (err) {
        // After a failed statement or a failed PREPARE the transaction is rolled back / rolls back here.
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw explain(err, this.description);
      }
    } finally {
      client.release(broken);
    }
  }

  commitPrepared(txId: string): Promise<FinishResult> {
    return this.finish('COMMIT', txId);
  }

  rollbackPrepared(txId: string): Promise<FinishResult> {
    return this.finish('ROLLBACK', txId);
  }

  private async finish(what: 'COMMIT' | 'ROLLBACK', txId: string): Promise<FinishResult> {
    try {
      // Not in a transaction block: COMMIT/ROLLBACK PREPARED refuse to run inside one.
      await this.pool.query(`${what} PREPARED '${this.gid(txId)}'`);
      return 'done';
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === UNDEFINED_OBJECT) return 'already-finished';
      if (code === OBJECT_IN_USE) return 'busy';
      throw err;
    }
  }

  async isPrepared(txId: string): Promise<boolean> {
    const r = await this.pool.query('SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()', [
      this.gid(txId),
    ]);
    return r.rowCount! > 0;
  }

  async markerExists(txId: string): Promise<boolean> {
    const r = await this.pool.query(`SELECT 1 FROM ${M} WHERE gid = $1`, [this.gid(txId)]);
    return r.rowCount! > 0;
  }

  async listPrepared(): Promise<PreparedEntry[]> {
    const prefix = `${GID_PREFIX}${this.participant}:`;
    const r = await this.pool.query<{ gid: string }>(
      `SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND left(gid, $2) = $1 ORDER BY prepared`,
      [prefix, prefix.length],
    );
    const out: PreparedEntry[] = [];
    for (const { gid } of r.rows) {
      const txId = txIdOf(gid.slice(prefix.length));
      if (txId) out.push({ txId, gid });
    }
    return out;
  }

  async pruneMarkers(olderThanMs: number): Promise<number> {
    const r = await this.pool.query(`DELETE FROM ${M} WHERE created_at < now() - $1 * interval '1 millisecond'`, [olderThanMs]);
    return r.rowCount ?? 0;
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }
}

function explain(err: unknown, where: string): unknown {
  const e = err as { code?: string; message?: string };
  if (e?.code === OBJECT_NOT_IN_STATE && /prepared transactions are disabled/i.test(e.message ?? '')) {
    return new ResourceNotReadyError(
      `${where}: prepared transactions are disabled (max_prepared_transactions = 0); ` +
        'set it above 0 and restart Postgres',
    );
  }
  return err;
}
