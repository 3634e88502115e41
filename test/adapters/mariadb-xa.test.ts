/** The MariaDB XA adapter against the real MariaDB on 127.0.0.1:3306 (root, no password; .ci/mariadb.sh). */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { ensureMySchema, myWork } from '../../apps/bank-account/bank';
import { mariadbXaParticipant, XA_FORMAT_ID } from '../../libs/participant';
import { adapterSuite } from './harness';

export const MARIADB = {
  host: process.env.TEST_MARIADB_HOST ?? '127.0.0.1',
  port: Number(process.env.TEST_MARIADB_PORT ?? 3306),
  user: process.env.TEST_MARIADB_USER ?? 'root',
  password: process.env.TEST_MARIADB_PASSWORD ?? '',
};
const database = `txa_${randomBytes(4).toString('hex')}`;
let admin: mysql.Pool;
const q = async (sql: string, params: unknown[] = []) => (await admin.query<any[]>(sql, params))[0];

/** Our xids in XA RECOVER whose bqual names this test database. */
async function ours(): Promise<{ txId: string; sql: string }[]> {
  const out = [];
  for (const r of await q('XA RECOVER')) {
    if (Number(r.formatID) !== XA_FORMAT_ID) continue;
    const data: Buffer = Buffer.isBuffer(r.data) ? r.data : Buffer.from(String(r.data), 'latin1');
    const g = data.subarray(0, r.gtrid_length);
    const b = data.subarray(r.gtrid_length);
    if (!b.toString().endsWith(`/${database}`)) continue;
    out.push({ txId: g.toString().slice(4), sql: `X'${g.toString('hex')}',X'${b.toString('hex')}',${XA_FORMAT_ID}` });
  }
  return out;
}

adapterSuite({
  label: 'maria',
  async setUp() {
    admin = mysql.createPool({ ...MARIADB, connectionLimit: 3 });
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.query(`USE ${database}`);
    const pool = mysql.createPool({ ...MARIADB, database, connectionLimit: 2 });
    await ensureMySchema(pool, 10, 1000);
    await pool.end();
    await admin.end();
    admin = mysql.createPool({ ...MARIADB, database, connectionLimit: 3 });
  },
  async tearDown() {
    for (const x of await ours()) await q(`XA ROLLBACK ${x.sql}`);
    await q(`DROP DATABASE ${database}`);
    await admin.end();
  },
  adapter(name, library) {
    const pool = mysql.createPool({ ...MARIADB, database, connectionLimit: 5 });
    return mariadbXaParticipant({ name, pool, ownsPool: true, libraryDataSource: library, work: myWork, recoverIntervalMs: 0 });
  },
  balance: async (id) => Number((await q('SELECT balance FROM bank_account WHERE id = ?', [id]))[0].balance),
  entries: async (txId) => (await q('SELECT 1 FROM bank_entry WHERE tx_id = ?', [txId])).length,
  prepared: async () => (await ours()).map((x) => x.txId),
});
