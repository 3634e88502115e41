/** The Postgres prepared-transaction adapter against the real Postgres (max_prepared_transactions > 0, see .ci/postgres.sh). */
import { Pool } from 'pg';
import { ensurePgSchema, pgWork } from '../../apps/bank-account/bank';
import { postgresPreparedParticipant, ResourceNotReadyError } from '../../libs/participant';
import { createTestDatabase, TestDatabase } from '../participant/support';
import { adapterSuite } from './harness';

let accounts: TestDatabase;
const pools: Pool[] = [];
const q = async (sql: string, params: unknown[] = []) => (await accounts.ds.query(sql, params)) as any[];

adapterSuite({
  label: 'pg',
  async setUp() {
    accounts = await createTestDatabase('adpg_accounts');
    const pool = new Pool({ connectionString: accounts.url });
    await ensurePgSchema(pool, 10, 1000);
    await pool.end();
  },
  async tearDown() {
    // DROP DATABASE refuses while prepared transactions of it exist.
    for (const { gid } of await q(`SELECT gid FROM pg_prepared_xacts WHERE database = current_database()`)) {
      await q(`ROLLBACK PREPARED '${gid}'`);
    }
    await accounts.drop();
  },
  adapter(name, library) {
    const pool = new Pool({ connectionString: accounts.url, max: 5 });
    pools.push(pool);
    return postgresPreparedParticipant({ name, pool, ownsPool: true, libraryDataSource: library, work: pgWork, recoverIntervalMs: 0 });
  },
  balance: async (id) => Number((await q('SELECT balance FROM bank_account WHERE id = $1', [id]))[0].balance),
  entries: async (txId) => (await q('SELECT 1 FROM bank_entry WHERE tx_id = $1', [txId])).length,
  prepared: async () =>
    (await q(`SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE 'txc:%'`)).map((r) =>
      String(r.gid).split(':').pop()!,
    ),
});

describe('postgres adapter set-up', () => {
  it('says clearly when prepared transactions are disabled (max_prepared_transactions = 0)', async () => {
    // The server here has them on; a pool answering like a default Postgres shows the check.
    const pool = { query: async () => ({ rows: [{ max_prepared_transactions: '0' }] }), options: { database: 'accounts' } } as unknown as Pool;
    const adapter = postgresPreparedParticipant({ name: 'x', pool, libraryDataSource: {} as any, work: async () => 'yes' });
    await expect(adapter.start()).rejects.toThrow(ResourceNotReadyError);
    await expect(adapter.start()).rejects.toThrow(/max_prepared_transactions = 0.*ALTER SYSTEM SET max_prepared_transactions/);
  });

  it('reports the real server setting as usable', async () => {
    const rows = await accounts.ds.query('SHOW max_prepared_transactions');
    expect(Number(rows[0].max_prepared_transactions)).toBeGreaterThan(0);
  });
});
