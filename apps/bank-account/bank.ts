/**
 * The bank's accounts and what one global transaction does to them. Each account service keeps
 * `bank_account (id, balance)` and a journal `bank_entry (tx_id, account, delta)` in its own
 * database (Postgres or MariaDB); both change inside the prepared resource transaction, so a
 * transfer's debit and credit are applied, or not, together with the coordinator's outcome.
 *
 * Prepare payload: `{ op: "debit" | "credit", account: string, amount: positive integer (cents) }`.
 *
 * | prepare | vote |
 * |---|---|
 * | payload invalid | no `invalid-payload` |
 * | account unknown | no `no-such-account` |
 * | debit larger than the balance | no `insufficient-funds` |
 * | otherwise: balance changed, journal entry written, resource transaction prepared | yes |
 */
import type { PoolClient, Pool as PgPool } from 'pg';
import type { Pool as MyPool, PoolConnection } from 'mysql2/promise';
import { z } from 'zod';
import type { PrepareContext, VoteResult } from '../../libs/participant';

export const transferLeg = z.object({
  op: z.enum(['debit', 'credit']),
  account: z.string().min(1).max(64),
  amount: z.number().int().positive().max(1_000_000_000),
});
export type TransferLeg = z.infer<typeof transferLeg>;

export function accountId(i: number): string {
  return `acct-${i}`;
}

// ---- Postgres ----------------------------------------------------------------------------------

export async function ensurePgSchema(pool: PgPool, accounts: number, balance: number): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(`SELECT pg_advisory_xact_lock(hashtextextended('bank_schema', 0))`);
    await c.query(`CREATE TABLE IF NOT EXISTS bank_account (id text PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))`);
    await c.query(`
      CREATE TABLE IF NOT EXISTS bank_entry (
        tx_id   uuid   NOT NULL,
        account text   NOT NULL REFERENCES bank_account (id),
        delta   bigint NOT NULL,
        at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tx_id, account))`);
    // Only the missing accounts: an existing row may be locked by a transaction prepared before a
    // crash, which only this service (once started) can finish — touching it here would wait forever.
    const have = new Set((await c.query<{ id: string }>('SELECT id FROM bank_account')).rows.map((r) => r.id));
    const missing = Array.from({ length: accounts }, (_, i) => accountId(i)).filter((id) => !have.has(id));
    if (missing.length) {
      await c.query(`INSERT INTO bank_account (id, balance) SELECT unnest($1::text[]), $2`, [missing, balance]);
    }
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

export async function pgWork(ctx: PrepareContext, client: PoolClient): Promise<VoteResult> {
  const leg = transferLeg.safeParse(ctx.payload);
  if (!leg.success) return { vote: 'no', reason: 'invalid-payload' };
  const { op, account, amount } = leg.data;
  const delta = op === 'debit' ? -amount : amount;
  const r = await client.query<{ balance: string }>(
    `UPDATE bank_account SET balance = balance + $2 WHERE id = $1 AND balance + $2 >= 0 RETURNING balance`,
    [account, delta],
  );
  if (r.rowCount === 0) {
    const exists = await client.query('SELECT 1 FROM bank_account WHERE id = $1', [account]);
    return { vote: 'no', reason: exists.rowCount ? 'insufficient-funds' : 'no-such-account' };
  }
  await client.query('INSERT INTO bank_entry (tx_id, account, delta) VALUES ($1, $2, $3)', [ctx.txId, account, delta]);
  ctx.logger.info({ op, account, amount, balance: Number(r.rows[0].balance) }, `${op} prepared`);
  return 'yes';
}

// ---- MariaDB -----------------------------------------------------------------------------------

export async function ensureMySchema(pool: MyPool, accounts: number, balance: number): Promise<void> {
  // DDL only when missing: a transaction prepared before a crash holds metadata locks on these tables.
  const [tables] = await pool.query<any[]>(
    `SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('bank_account', 'bank_entry')`,
  );
  const exists = new Set(tables.map((r) => r.t));
  if (!exists.has('bank_account')) {
    await pool.query(`CREATE TABLE IF NOT EXISTS bank_account (
        id VARCHAR(64) NOT NULL PRIMARY KEY, balance BIGINT NOT NULL, CONSTRAINT balance_not_negative CHECK (balance >= 0)
      ) ENGINE = InnoDB`);
  }
  if (!exists.has('bank_entry')) {
    await pool.query(`CREATE TABLE IF NOT EXISTS bank_entry (
        tx_id CHAR(36) NOT NULL, account VARCHAR(64) NOT NULL, delta BIGINT NOT NULL,
        at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (tx_id, account), FOREIGN KEY (account) REFERENCES bank_account (id)
      ) ENGINE = InnoDB`);
  }
  // Only the missing accounts (see ensurePgSchema): existing rows may be locked by prepared transactions.
  const [rows] = await pool.query<any[]>('SELECT id FROM bank_account');
  const have = new Set(rows.map((r) => r.id));
  const missing = Array.from({ length: accounts }, (_, i) => accountId(i)).filter((id) => !have.has(id));
  for (let i = 0; i < missing.length; i += 500) {
    const ids = missing.slice(i, i + 500);
    await pool.query(`INSERT INTO bank_account (id, balance) VALUES ${ids.map(() => '(?, ?)').join(', ')}`, ids.flatMap((id) => [id, balance]));
  }
}

export async function myWork(ctx: PrepareContext, conn: PoolConnection): Promise<VoteResult> {
  const leg = transferLeg.safeParse(ctx.payload);
  if (!leg.success) return { vote: 'no', reason: 'invalid-payload' };
  const { op, account, amount } = leg.data;
  const delta = op === 'debit' ? -amount : amount;
  const [r] = await conn.query<any>(`UPDATE bank_account SET balance = balance + ? WHERE id = ? AND balance + ? >= 0`, [delta, account, delta]);
  if (r.affectedRows === 0) {
    const [rows] = await conn.query<any[]>('SELECT 1 FROM bank_account WHERE id = ?', [account]);
    return { vote: 'no', reason: rows.length ? 'insufficient-funds' : 'no-such-account' };
  }
  await conn.query('INSERT INTO bank_entry (tx_id, account, delta) VALUES (?, ?, ?)', [ctx.txId, account, delta]);
  ctx.logger.info({ op, account, amount }, `${op} prepared`);
  return 'yes';
}
