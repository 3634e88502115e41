/**
 * Graceful shutdown of the built coordinator (HTTP transport, Postgres) under load: clients keep
 * beginning and committing transactions with two example participants when SIGTERM arrives, and
 * one participant has just stopped, so that transactions are under way that cannot finish before
 * the coordinator exits.
 * Readiness must turn 503 at once and new transactions be refused with 503 problem+json and
 * Retry-After; the process must exit 0 within TX_SHUTDOWN_TIMEOUT_MS; the decision log must hold
 * no half-written transaction; after a restart every transaction finishes, and the participants'
 * stock matches the committed ones exactly.
 */
import { randomUUID } from 'node:crypto';
import { api, startCoordinator, startParticipant, TestCoordinator, TestParticipant } from '../support/coordinator';
import { dropCreatedDatabases, freshDatabase, query } from '../support/postgres';
import { eventually, freePort, sleep } from '../support/processes';

jest.setTimeout(180_000);

const RUN = `txshut_${randomUUID().slice(0, 8)}`;
const NAMES = ['inventory', 'payments'];
const DELAY_MS = 1500;
const TIMEOUT_MS = 15_000;
let coordinator: TestCoordinator;
const participants: Record<string, TestParticipant> = {};
const dbs: Record<string, string> = {};
const urls: Record<string, string> = {};
const ports: Record<string, number> = {};
const launch = (name: string) =>
  startParticipant(name, { transport: 'http', databaseUrl: dbs[name], port: ports[name], coordinatorUrl: coordinator.url });

beforeAll(async () => {
  coordinator = await startCoordinator({
    transport: 'http',
    database: `${RUN}_coordinator`,
    env: { TX_SHUTDOWN_DELAY_MS: String(DELAY_MS), TX_SHUTDOWN_TIMEOUT_MS: String(TIMEOUT_MS) },
  });
  await Promise.all(NAMES.map(async (name) => {
    dbs[name] = await freshDatabase(`${RUN}_${name}`);
    ports[name] = await freePort();
    participants[name] = await launch(name);
    urls[name] = participants[name].url!;
  }));
}, 120_000);

afterAll(async () => {
  await Promise.all(Object.values(participants).map((p) => p.stop()));
  await coordinator?.stop();
  await dropCreatedDatabases();
});

interface Seen {
  status: number;
  type: string | null;
  retryAfter: string | null;
  body: any;
  at: number;
}

test('SIGTERM under load: readiness 503, no new transactions, exit 0, nothing half-written, all finished after restart', async () => {
  const seen: Seen[] = [];
  const begun = new Set<string>();
  let stopLoad = false;
  const record = (r: Awaited<ReturnType<typeof api>>) =>
    seen.push({ status: r.status, type: r.headers.get('content-type'), retryAfter: r.headers.get('retry-after'), body: r.body, at: Date.now() });

  // Six clients: begin with both participants, then commit; until the coordinator is gone.
  const client = async (k: number) => {
    for (let i = 0; !stopLoad; i++) {
      try {
        const b = await api(coordinator.url, 'POST', '/v1/transactions', {
          timeoutMs: 5000,
          participants: NAMES.map((name) => ({ name, url: urls[name], payload: { sku: `sku-${(k + i) % 3}`, qty: 1 } })),
        });
        record(b);
        if (b.status !== 201) { await sleep(50); continue; }
        begun.add(b.body.id);
        record(await api(coordinator.url, 'POST', `/v1/transactions/${b.body.id}/commit`));
      } catch {
        await sleep(50); // connection refused once the server has closed
      }
    }
  };
  const ready: { status: number; at: number }[] = [];
  const probe = async () => {
    while (!stopLoad) {
      const status = await fetch(`${coordinator.url}/health/ready`).then((r) => r.status, () => 0);
      ready.push({ status, at: Date.now() });
      await sleep(50);
    }
  };
  const load = [0, 1, 2, 3, 4, 5].map(client);
  const probing = probe();

  await eventually(async () => begun.size, (n) => n >= 10, 30_000, 'some transactions under way');
  // payments stops: the transactions begun from now on cannot get its vote (or its ack).
  await participants.payments.stop();
  const stalled = begun.size;
  await eventually(async () => begun.size, (n) => n >= stalled + 6, 30_000, 'transactions stalled on payments');
  const sigterm = Date.now();
  coordinator.proc.child.kill('SIGTERM');
  // A begin while draining (the clients may all be waiting on stalled commits then).
  await sleep(300);
  record(await api(coordinator.url, 'POST', '/v1/transactions', {
    timeoutMs: 5000,
    participants: NAMES.map((name) => ({ name, url: urls[name], payload: { sku: 'sku-0', qty: 1 } })),
  }));
  const code = await coordinator.proc.exited;
  const took = Date.now() - sigterm;
  stopLoad = true;
  await Promise.all([...load, probing]);

  // The process: exit 0, within the bound, after the delay; its log tells the steps.
  expect(code).toBe(0);
  expect(took).toBeGreaterThanOrEqual(DELAY_MS);
  expect(took).toBeLessThan(TIMEOUT_MS);
  const out = coordinator.proc.output();
  for (const line of ['SIGTERM received: shutting down gracefully', 'shutting down: readiness 503, no new transactions', 'transport stopped', 'coordinator stopped']) {
    expect(out).toContain(line);
  }

  // Readiness: 200 before, 503 from SIGTERM on (never ready again), then no answer.
  const before = ready.filter((r) => r.at < sigterm);
  const after = ready.filter((r) => r.at > sigterm + 100);
  expect(before.some((r) => r.status === 200)).toBe(true);
  expect(after.filter((r) => r.status === 503).length).toBeGreaterThanOrEqual(3);
  expect(after.some((r) => r.status === 200)).toBe(false);

  // New transactions were refused while draining: 503 problem+json with Retry-After.
  const refused = seen.filter((s) => s.status === 503);
  expect(refused.length).toBeGreaterThan(0);
  for (const r of refused) {
    expect(r.type).toMatch(/^application\/problem\+json/);
    expect(r.retryAfter).toMatch(/^\d+$/);
    expect(r.body).toMatchObject({ type: 'urn:txcoord:problem:shutting-down', status: 503 });
  }
  expect(seen.filter((s) => s.status >= 500 && s.status !== 503)).toEqual([]);
  expect(seen.filter((s) => s.status === 201 && s.at > sigterm + 50)).toEqual([]);

  // The decision log right after the exit: every begun transaction is there, none half-written.
  const db = coordinator.env.DATABASE_URL;
  const rows = await query<{ id: string; state: string; outcome: string | null; decided_at: Date | null; votes: (string | null)[]; acked: boolean[] }>(db, `
    SELECT t.id, t.state, t.outcome, t.decided_at, array_agg(p.vote ORDER BY p.position) AS votes, array_agg(p.acked ORDER BY p.position) AS acked
      FROM tx_transaction t JOIN tx_participant p ON p.tx_id = t.id GROUP BY t.id`);
  expect(rows.length).toBeGreaterThanOrEqual(begun.size);
  expect(new Set(rows.map((r) => r.id))).toEqual(expect.objectContaining({ size: rows.length }));
  for (const id of begun) expect(rows.some((r) => r.id === id)).toBe(true);
  for (const r of rows) {
    const undecided = r.state === 'active' || r.state === 'preparing';
    expect({ id: r.id, consistent: undecided === (r.outcome === null) && undecided === (r.decided_at === null) }).toEqual({ id: r.id, consistent: true });
    if (r.outcome === 'commit') expect(r.votes).toEqual(NAMES.map(() => 'yes'));
    if (r.state === 'committed' || r.state === 'aborted') expect(r.acked).toEqual(NAMES.map(() => true));
  }
  const unfinished = rows.filter((r) => r.state !== 'committed' && r.state !== 'aborted').length;
  expect(unfinished).toBeGreaterThan(0);

  // Restarted (payments too), the coordinator finishes every one: it resends what is decided, and
  // the undecided ones abort at their deadline.
  await coordinator.restart();
  participants.payments = await launch('payments');
  await eventually(
    () => query<{ n: number }>(db, `SELECT count(*)::int AS n FROM tx_transaction WHERE state NOT IN ('committed', 'aborted')`),
    (r) => r[0].n === 0,
    60_000,
    `the ${unfinished} unfinished transactions to finish after the restart`,
  );

  // The participants agree: no reservation left, and the stock taken is exactly the committed quantities.
  const committed = await query<{ name: string; sku: string; qty: number }>(db, `
    SELECT p.name, p.payload->>'sku' AS sku, sum((p.payload->>'qty')::int)::int AS qty
      FROM tx_transaction t JOIN tx_participant p ON p.tx_id = t.id WHERE t.outcome = 'commit' GROUP BY 1, 2`);
  expect(committed.length).toBeGreaterThan(0);
  for (const name of NAMES) {
    await eventually(() => query(dbs[name], 'SELECT 1 FROM example_reservation'), (r) => r.length === 0, 30_000, `${name}'s reservations to be released or kept`);
    const stock = await query<{ sku: string; qty: number }>(dbs[name], 'SELECT sku, qty FROM example_stock WHERE participant = $1', [name]);
    for (const s of stock) {
      const taken = committed.find((c) => c.name === name && c.sku === s.sku)?.qty ?? 0;
      expect({ name, sku: s.sku, qty: s.qty }).toEqual({ name, sku: s.sku, qty: 100 - taken });
    }
  }
});
