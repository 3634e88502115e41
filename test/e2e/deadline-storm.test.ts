/**
 * Thousands of transactions reaching their deadline at the same moment (as after a crash with
 * them in flight) are all aborted by their own deadline timers: none of those steps fails waiting
 * for the log, so none is left for the sweep. The transactions are written into the log as a crash
 * right after their commit requests leaves them (`preparing`, no votes, one deadline a few seconds
 * ahead), the coordinator is restarted, and the sweep is set too far off to help. The log's
 * timeout is short (TX_DB_TIMEOUT_MS=400), so steps that queued for it all at once would fail.
 */
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { seedInFlight } from '../../tools/support/in-flight';
import { startCoordinator, TestCoordinator } from '../support/coordinator';
import { dropCreatedDatabases } from '../support/postgres';
import { eventually, freePort } from '../support/processes';

const IN_FLIGHT = 4000;
let coordinator: TestCoordinator;
let db: Client;

beforeAll(async () => {
  coordinator = await startCoordinator({
    transport: 'http',
    database: `txstorm_${randomUUID().slice(0, 8)}`,
    env: { TX_DB_TIMEOUT_MS: '400', TX_SWEEP_INTERVAL_MS: '600000', TX_RESEND_INITIAL_MS: '2000', TX_RESEND_MAX_MS: '10000', LOG_LEVEL: 'warn' },
  });
  db = new Client({ connectionString: coordinator.env.DATABASE_URL });
  await db.connect();
}, 60_000);

afterAll(async () => {
  await db?.end();
  await coordinator?.stop();
  await dropCreatedDatabases();
});

describe('a deadline storm', () => {
  it('aborts every transaction by its own timer, none left to the sweep', async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const ids = await seedInFlight(db, IN_FLIGHT, [{ name: 'ghost', url: nowhere }], 10);
    await coordinator.restart();
    const before = await db.query(`SELECT count(*)::int AS n FROM tx_transaction WHERE outcome IS NULL AND id = ANY($1::uuid[])`, [ids]);
    expect(before.rows[0].n).toBe(IN_FLIGHT); // recovered before their deadline: the timers are what aborts them

    const aborted = await eventually(
      async () => (await db.query(`SELECT count(*)::int AS n FROM tx_transaction WHERE outcome = 'abort' AND id = ANY($1::uuid[])`, [ids])).rows[0].n as number,
      (n) => n === IN_FLIGHT,
      60_000,
      'every transaction aborted',
    );
    expect(aborted).toBe(IN_FLIGHT);
    expect(coordinator.proc.output()).not.toMatch(/deadline timer failed/);
  }, 120_000);
});
