/**
 * MariaDB (and MySQL) XA as a resource of the participant library: the work runs between
 * `XA START` and `XA END` on a dedicated connection, the yes vote is `XA PREPARE`, the decision
 * `XA COMMIT` / `XA ROLLBACK`; recovery reads `XA RECOVER`. The protocol and every crash point:
 * resource-participant.ts.
 *
 *   const accounts = mysql.createPool({ host, user, database: 'bank' });   // mysql2/promise
 *   const participant = mariadbXaParticipant({ name: 'bank-c', pool: accounts, libraryDataSource,
 *     work: async (ctx, conn) => { await conn.query('UPDATE …'); return 'yes'; } });
 *   await participant.start();
 *
 * The xid is (gtrid `txc:<txId>`, bqual `<participant>/<database>`, formatID 0x74786301); a bqual
 * longer than 64 bytes is replaced by a hash of it. XA RECOVER lists the whole server's prepared
 * transactions; recovery only touches those with this formatID and bqual.
 *
 * MariaDB specifics handled here:
 * - A prepared XA transaction stays attached to the connection that prepared it while that
 *   connection lives: another connection's XA COMMIT answers XAER_NOTA. So the connection is
 *   closed right after XA PREPARE (detaching it; it is durable and committable from any
 *   connection from MariaDB 10.5 on). For the few milliseconds the server takes to notice,
 *   XA COMMIT may still say XAER_NOTA while XA RECOVER lists the xid: reported as `busy`, retried.
 * - Before 10.5 a prepared XA transaction was rolled back when its connection closed; start()
 *   refuses such servers.
 * - Any error inside the work closes the connection, which rolls the unprepared branch back
 *   (also the "rollback only" state after a deadlock).
 */
import { createHash } from 'node:crypto';
import type { Pool, PoolConnection } from 'mysql2/promise';
import type { VoteResult } from '../types';
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

/** "txc" 0x01: marks xids of this library in XA RECOVER. */
export const XA_FORMAT_ID = 0x74786301;
const GTRID_PREFIX = 'txc:';
const ER_XAER_NOTA = 1397;

export interface MariaDbXaOptions extends ResourceParticipantOptions<PoolConnection> {
  /** A mysql2/promise pool of the resource database (it must name a `database`). Not ended unless `ownsPool`. */
  pool: Pool;
  ownsPool?: boolean;
}

export function mariadbXaParticipant(o: MariaDbXaOptions): ResourceParticipant<PoolConnection> {
  return new ResourceParticipant(new MariaDbXaDriver(o.name, o.pool, !!o.ownsPool), o);
}

export class MariaDbXaDriver implements ResourceDriver<PoolConnection> {
  description = 'mariadb';
  private bqual?: Buffer;

  constructor(
    private readonly participant: string,
    private readonly pool: Pool,
    private readonly ownsPool: boolean,
  ) {}

  async setup(): Promise<void> {
    let version: string;
    let database: string | null;
    try {
      const [rows] = await this.pool.query<any[]>('SELECT VERSION() AS version, DATABASE() AS db');
      version = String(rows[0].version);
      database = rows[0].db;
    } catch (err) {
      throw new ResourceNotReadyError(`${this.description}: cannot reach the resource database: ${(err as Error).message}`);
    }
    if (!database) throw new ResourceNotReadyError('mariadb: the pool must name a database (option `database`)');
    this.description = `mariadb:${database}`;
    const m = /^(\d+)\.(\d+)/.exec(version);
    const isMaria = /mariadb/i.test(version);
    if (m && isMaria && (Number(m[1]) < 10 || (Number(m[1]) === 10 && Number(m[2]) < 5))) {
      throw new ResourceNotReadyError(
        `${this.description}: MariaDB ${version} loses a prepared XA transaction when its connection closes; 10.5 or later is needed`,
      );
    }
    const [engines] = await this.pool.query<any[]>(`SELECT SUPPORT, XA FROM information_schema.ENGINES WHERE ENGINE = 'InnoDB'`);
    if (!engines.length || !/^(YES|DEFAULT)$/i.test(engines[0].SUPPORT) || !/^YES$/i.test(engines[0].XA)) {
      throw new ResourceNotReadyError(`${this.description}: InnoDB with XA support is needed (information_schema.ENGINES)`);
    }
    const raw = Buffer.from(`${this.participant}/${database}`, 'utf8');
    this.bqual = raw.length <= 64 ? raw : Buffer.from('h:' + createHash('sha256').update(raw).digest('hex').slice(0, 62));
    // DDL only when missing: transactions prepared before a crash hold metadata locks on the table.
    const [t] = await this.pool.query<any[]>(
      `SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`,
      [M],
    );
    if (t.length) return;
    await this.pool.query(`
      CREATE TABLE IF NOT EXISTS ${M} (
        gid         VARBINARY(200) NOT NULL PRIMARY KEY,
        created_at  TIMESTAMP(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
      ) ENGINE = InnoDB`);
  }

  /** The xid in SQL form: X'gtrid',X'bqual',formatID. */
  private xid(txId: string): string {
    if (!this.bqual) throw new Error('mariadb XA adapter: start() first');
    if (!txIdOf(txId)) throw new Error(`not a transaction id: ${JSON.stringify(txId)}`);
    const gtrid = Buffer.from(GTRID_PREFIX + txId, 'utf8');
    return `X'${gtrid.toString('hex')}',X'${this.bqual.toString('hex')}',${XA_FORMAT_ID}`;
  }

  gid(txId: string): string {
    return `${GTRID_PREFIX}${txId}/${this.bqual?.toString('utf8') ?? '?'}`;
  }

  async runAndPrepare(
    txId: string,
    lockTimeoutMs: number,
    work: (conn: PoolConnection) => Promise<VoteResult>,
    beforePrepare: () => void,
  ): Promise<{ vote: VoteResult; prepared: boolean }> {
    const xid = this.xid(txId);
    const conn = await this.pool.getConnection();
    let release: 'release' | 'destroy' = 'destroy';
    try {
      await conn.query(`SET SESSION innodb_lock_wait_timeout = ${Math.max(1, Math.ceil(lockTimeoutMs / 1000))}`);
      await conn.query(`XA START ${xid}`);
      await conn.query(`INSERT INTO ${M} (gid) VALUES (?)`, [Buffer.from(this.gid(txId))]);
      const vote = await work(conn);
      if (normalizeVoteResult(vote) === 'no') {
        await conn.query(`XA END ${xid}`);
        await conn.query(`XA ROLLBACK ${xid}`);
        release = 'release';
        return { vote, prepared: false };
      }
      beforePrepare();
      await conn.query(`XA END ${xid}`);
      await conn.query(`XA PREPARE ${xid}`);
      // Closing the connection detaches the prepared branch (see the header).
      return { vote, prepared: true };
    } finally {
      // destroy: after PREPARE (detach), or after any error (the unprepared branch rolls back).
      if (release === 'release') conn.release();
      else conn.destroy();
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
      await this.pool.query(`XA ${what} ${this.xid(txId)}`);
      return 'done';
    } catch (err) {
      if ((err as { errno?: number }).errno !== ER_XAER_NOTA) throw err;
      // Unknown to this connection: finished, or still attached to the connection that prepared it.
      return (await this.isPrepared(txId)) ? 'busy' : 'already-finished';
    }
  }

  async isPrepared(txId: string): Promise<boolean> {
    return (await this.recoverRows()).some((e) => e.txId === txId);
  }

  async markerExists(txId: string): Promise<boolean> {
    const [rows] = await this.pool.query<any[]>(`SELECT 1 FROM ${M} WHERE gid = ?`, [Buffer.from(this.gid(txId))]);
    return rows.length > 0;
  }

  listPrepared(): Promise<PreparedEntry[]> {
    return this.recoverRows();
  }

  private async recoverRows(): Promise<PreparedEntry[]> {
    if (!this.bqual) throw new Error('mariadb XA adapter: start() first');
    const [rows] = await this.pool.query<any[]>('XA RECOVER');
    const out: PreparedEntry[] = [];
    for (const r of rows) {
      if (Number(r.formatID) !== XA_FORMAT_ID) continue;
      const data: Buffer = Buffer.isBuffer(r.data) ? r.data : Buffer.from(String(r.data), 'latin1');
      const gl = Number(r.gtrid_length);
      const gtrid = data.subarray(0, gl).toString('utf8');
      const bqual = data.subarray(gl, gl + Number(r.bqual_length));
      if (!bqual.equals(this.bqual) || !gtrid.startsWith(GTRID_PREFIX)) continue;
      const txId = txIdOf(gtrid.slice(GTRID_PREFIX.length));
      if (txId) out.push({ txId, gid: this.gid(txId) });
    }
    return out;
  }

  async pruneMarkers(olderThanMs: number): Promise<number> {
    // A plain (consistent, non-locking) read finds old committed markers; they are then deleted by
    // primary key. A DELETE … WHERE created_at < … would scan with locking reads and wait on the
    // rows of prepared transactions (and gap-lock the inserts of new ones).
    const [rows] = await this.pool.query<any[]>(`SELECT gid FROM ${M} WHERE created_at < NOW(3) - INTERVAL ? SECOND LIMIT 1000`, [
      Math.floor(olderThanMs / 1000),
    ]);
    if (!rows.length) return 0;
    const [r] = await this.pool.query<any>(`DELETE FROM ${M} WHERE gid IN (?)`, [rows.map((x) => x.gid)]);
    return r.affectedRows ?? 0;
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }
}
