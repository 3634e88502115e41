/**
 * Graceful shutdown on Kafka: SIGTERM while transactions run with two example participants. The
 * coordinator must exit 0 within TX_SHUTDOWN_TIMEOUT_MS after stopping its transport (kafkajs
 * consumer disconnect: it commits what it handled and sends LeaveGroup), and after a restart
 * every transaction finishes.
 *
 * Not checked here: that the group is empty at once. The test broker (librdkafka's mock) does not
 * act on LeaveGroup: even after a plain kafkajs consumer disconnects cleanly, a new member's join
 * waits for the old member's session to expire, and it does not serve DescribeGroups.
 */
import { randomUUID } from 'node:crypto';
import { startTestBroker, TestBroker } from '../support/broker';
import { api, startCoordinator, startParticipant, TestCoordinator, TestParticipant, uniquePrefix } from '../support/coordinator';
import { dropCreatedDatabases, freshDatabase, query } from '../support/postgres';
import { eventually, sleep } from '../support/processes';

jest.setTimeout(180_000);

const RUN = `txshk_${randomUUID().slice(0, 8)}`;
const NAMES = ['inventory', 'payments'];
let broker: TestBroker;
let prefix: string;
let coordinator: TestCoordinator;
const participants: TestParticipant[] = [];

beforeAll(async () => {
  broker = await startTestBroker();
  prefix = uniquePrefix();
  coordinator = await startCoordinator({
    brokers: broker.bootstrap,
    prefix,
    database: `${RUN}_coordinator`,
    env: { TX_SHUTDOWN_TIMEOUT_MS: '15000' },
  });
  for (const name of NAMES) {
    participants.push(await startParticipant(name, { brokers: broker.bootstrap, prefix, databaseUrl: await freshDatabase(`${RUN}_${name}`) }));
  }
}, 120_000);

afterAll(async () => {
  await Promise.all(participants.map((p) => p.stop()));
  await coordinator?.stop();
  await broker?.stop();
  await dropCreatedDatabases();
});

test('SIGTERM under load: exit 0 after the transport stopped, everything finishes after a restart', async () => {
  let stop = false;
  let begun = 0;
  const client = async () => {
    for (let i = 0; !stop; i++) {
      try {
        const b = await api(coordinator.url, 'POST', '/v1/transactions', {
          timeoutMs: 5000,
          participants: NAMES.map((name) => ({ name, payload: { sku: `sku-${i % 3}`, qty: 1 } })),
        });
        if (b.status !== 201) { await sleep(50); continue; }
        begun++;
        await api(coordinator.url, 'POST', `/v1/transactions/${b.body.id}/commit?waitMs=2000`);
      } catch {
        await sleep(50);
      }
    }
  };
  const load = [client(), client(), client()];
  await eventually(async () => begun, (n) => n >= 6, 60_000, 'transactions under way');

  const sigterm = Date.now();
  coordinator.proc.child.kill('SIGTERM');
  const code = await coordinator.proc.exited;
  const took = Date.now() - sigterm;
  stop = true;
  await Promise.all(load);

  expect(code).toBe(0);
  expect(took).toBeLessThan(15_000);
  const out = coordinator.proc.output();
  expect(out).toContain('transport stopped');
  expect(out).toContain('coordinator stopped');
  expect(out).not.toMatch(/did not disconnect cleanly/);

  await coordinator.restart();
  const db = coordinator.env.DATABASE_URL;
  await eventually(
    () => query<{ n: number }>(db, `SELECT count(*)::int AS n FROM tx_transaction WHERE state NOT IN ('committed', 'aborted')`),
    (r) => r[0].n === 0,
    60_000,
    'every transaction to finish after the restart',
  );
  expect((await query<{ n: number }>(db, 'SELECT count(*)::int AS n FROM tx_transaction'))[0].n).toBeGreaterThanOrEqual(begun);
});
