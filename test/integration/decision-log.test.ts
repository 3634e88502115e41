/**
 * The decision log on a real Postgres: group commit (many steps, inserts and reads in one
 * statement each), optimistic concurrency between two replicas' logs, changes held in memory
 * until a durable step, idempotency keys within one grouped insert, and the listing queries.
 */
import { randomUUID } from 'node:crypto';
import { DataSource, DataSourceOptions } from 'typeorm';
import { loadConfig } from '../../apps/coordinator/config/config';
import { databaseOptions } from '../../apps/coordinator/log/database';
import { DecisionLog } from '../../apps/coordinator/log/decision-log';
import { begin, TxState } from '../../libs/engine';
import { dropCreatedDatabases, freshDatabase } from '../support/postgres';

let ds: DataSource;
let other: DataSource;
/** Statements sent through `ds` (a count, not a stand-in: they run on the real database). */
let statements = 0;
let url: string;

async function open(url: string): Promise<DataSource> {
  const config = loadConfig({ ...process.env, DATABASE_URL: url });
  return new DataSource((await databaseOptions(config)) as DataSourceOptions).initialize();
}

beforeAll(async () => {
  url = await freshDatabase(`txtest_decision_log_${process.pid}`);
  ds = await open(url);
  other = await open(url); // a second replica's connection pool
  const query = ds.query.bind(ds);
  ds.query = ((...args: Parameters<DataSource['query']>) => {
    statements++;
    return query(...args);
  }) as DataSource['query'];
}, 60_000);

afterAll(async () => {
  await ds?.destroy();
  await other?.destroy();
  await dropCreatedDatabases();
});

const newTx = (participants = ['inventory', 'payments']): TxState =>
  begin({ id: randomUUID(), protocol: '2pc', timeoutMs: 30_000, participants: participants.map((name) => ({ name, payload: { name } })), now: Date.now() }).state;

test('groups concurrent inserts, reads and saves into few statements, each change intact', async () => {
  const log = new DecisionLog(ds);
  const txs = Array.from({ length: 200 }, () => newTx());

  statements = 0;
  const inserted = await Promise.all(txs.map((t) => log.insert(t)));
  expect(inserted.every((r) => r.created)).toBe(true);
  const insertStatements = statements;

  statements = 0;
  // One step per transaction: a vote recorded and the metadata changed (a read and a save each).
  await Promise.all(txs.map((t) => log.update(t.id, (s) => ({
    next: { ...s, metadata: { step: 1 }, participants: s.participants.map((p, i) => (i === 0 ? { ...p, vote: 'yes' as const } : p)) },
    result: null,
  }))));
  const updateStatements = statements;

  // 200 inserts, 200 reads and 200 saves went out in far fewer statements than one each.
  expect(insertStatements).toBeLessThan(20);
  expect(updateStatements).toBeLessThan(40);

  const back = await Promise.all(txs.map((t) => log.get(t.id)));
  back.forEach((s, i) => {
    expect(s).toEqual({
      ...txs[i],
      metadata: { step: 1 },
      participants: [{ ...txs[i].participants[0], vote: 'yes' }, txs[i].participants[1]],
    });
  });
});

test('two replicas stepping the same transactions lose no update', async () => {
  const a = new DecisionLog(ds);
  const b = new DecisionLog(other);
  const txs = Array.from({ length: 5 }, () => newTx());
  await Promise.all(txs.map((t) => a.insert(t)));
  const bump = (log: DecisionLog, id: string) =>
    log.update(id, (s) => ({ next: { ...s, metadata: { n: Number(s.metadata.n ?? 0) + 1 } }, result: null }));
  await Promise.all(txs.flatMap((t) => Array.from({ length: 20 }, (_, i) => bump(i % 2 ? a : b, t.id))));
  for (const t of txs) expect((await a.get(t.id))?.metadata).toEqual({ n: 20 });
});

const voted = (s: TxState, name: string): TxState => ({ ...s, participants: s.participants.map((p) => (p.name === name ? { ...p, vote: 'yes' as const } : p)) });
const votes = (s: TxState | null) => s?.participants.map((p) => p.vote);

test('a held change is not written, is seen by the next step without a read, and is written with the next durable step', async () => {
  const log = new DecisionLog(ds);
  const t = newTx(['a', 'b', 'c']);
  await log.insert(t);
  statements = 0;
  // Inserted a moment ago: the steps use what this process wrote, and a held change writes nothing.
  await log.update(t.id, (s) => ({ next: voted(s, 'a'), hold: true, result: null }));
  let seen: TxState | undefined;
  await log.update(t.id, (s) => { seen = s; return { next: voted(s, 'b'), hold: true, result: null }; });
  expect(statements).toBe(0);
  expect(votes(seen!)).toEqual(['yes', null, null]);
  expect(votes(await log.get(t.id))).toEqual([null, null, null]); // the log has none of it

  statements = 0;
  await log.update(t.id, (s) => ({ next: { ...voted(s, 'c'), metadata: { decided: true } }, result: null }));
  expect(statements).toBe(1); // the save only
  const back = await log.get(t.id);
  expect(votes(back)).toEqual(['yes', 'yes', 'yes']);
  expect(back?.metadata).toEqual({ decided: true });
  // And the step after that starts from what was written, again without a read.
  statements = 0;
  await log.update(t.id, (s) => { seen = s; return { next: null, result: null }; });
  expect(statements).toBe(0);
  expect(seen).toEqual(back);
});

test('a held change is written back when a step asks for it, even if that step changes nothing', async () => {
  const log = new DecisionLog(ds);
  const t = newTx(['a', 'b']);
  await log.insert(t);
  await log.update(t.id, (s) => ({ next: voted(s, 'a'), hold: true, result: null }));
  await log.update(t.id, () => ({ next: null, result: null })); // an ordinary step that changes nothing
  expect(votes(await log.get(t.id))).toEqual([null, null]);
  statements = 0;
  await log.update(t.id, () => ({ next: null, result: null }), { writeBack: true });
  expect(statements).toBe(2); // it reads the log first (the row has not moved: the change stands), then saves
  expect(votes(await log.get(t.id))).toEqual(['yes', null]);
});

test('a change held on a row another replica has since stepped is dropped: the durable step is redone on the log', async () => {
  const a = new DecisionLog(ds);
  const b = new DecisionLog(other);
  const t = newTx(['a', 'b', 'c']);
  await a.insert(t);
  await a.update(t.id, (s) => ({ next: voted(s, 'a'), hold: true, result: null }));
  await b.update(t.id, (s) => ({ next: { ...s, metadata: { by: 'b' } }, result: null }));
  const stepsSeen: (string | null)[][] = [];
  await a.update(t.id, (s) => {
    stepsSeen.push(votes(s) as (string | null)[]);
    return { next: voted(s, 'b'), result: null };
  });
  // First on the held change (recent, so not read again), then, its save refused, on b's row.
  expect(stepsSeen).toEqual([['yes', null, null], [null, null, null]]);
  const back = await a.get(t.id);
  expect(votes(back)).toEqual([null, 'yes', null]);
  expect(back?.metadata).toEqual({ by: 'b' });
});

test('of one idempotency key among concurrent inserts, exactly one is created and the others find it', async () => {
  // Six at once: the first two leave in statements of their own and the rest share one, so the key
  // meets itself both across statements and inside one. Which one wins is the database's choice.
  const log = new DecisionLog(ds);
  const key = { key: `k-${randomUUID()}`, hash: 'h' };
  const txs = Array.from({ length: 6 }, () => newTx());
  const results = await Promise.all(txs.map((t) => log.insert(t, key)));
  const created = results.flatMap((r, i) => (r.created ? [i] : []));
  expect(created).toHaveLength(1);
  const winner = txs[created[0]];
  expect(results[created[0]]).toEqual({ created: true, state: winner });
  for (const r of results.filter((r) => !r.created)) expect(r).toMatchObject({ created: false, sameRequest: true, state: { id: winner.id } });
  // The same key with another request behind it finds the holder and is told it differs.
  expect(await log.insert(newTx(), { ...key, hash: 'other' })).toMatchObject({ created: false, sameRequest: false, state: { id: winner.id } });
});

test('a read of something that is no transaction id is null and does not fail the reads grouped with it', async () => {
  const log = new DecisionLog(ds);
  const t = newTx();
  await log.insert(t);
  const [bad, good, missing] = await Promise.all([log.get('not-a-uuid'), log.get(t.id), log.get(randomUUID())]);
  expect(bad).toBeNull();
  expect(good).toEqual(t);
  expect(missing).toBeNull();
});

test('decided: whether the log holds an outcome, seen across replicas, in grouped statements; null for no such transaction', async () => {
  const log = new DecisionLog(ds);
  const replica = new DecisionLog(other);
  const txs = Array.from({ length: 40 }, () => newTx());
  await Promise.all(txs.map((t) => log.insert(t)));
  // Half decided by the other replica: this log's cache still has them undecided, the log does not.
  await Promise.all(txs.slice(0, 20).map((t) => replica.update(t.id, (s) => ({
    next: { ...s, phase: 'committing', outcome: 'commit', decidedAt: Date.now() }, result: null,
  }))));
  statements = 0;
  const seen = await Promise.all([...txs.map((t) => log.decided(t.id)), log.decided(randomUUID()), log.decided('not-a-uuid')]);
  expect(seen).toEqual([...Array(20).fill(true), ...Array(20).fill(false), null, null]);
  expect(statements).toBeLessThanOrEqual(3);
});

test('lists newest first with participants in enlistment order, by state and by participant', async () => {
  const log = new DecisionLog(ds);
  const older = { ...newTx(['x', 'y', 'z']), createdAt: Date.now() + 60_000 };
  const newer = { ...newTx(['only']), createdAt: Date.now() + 120_000 };
  await log.insert(older);
  await log.insert(newer);
  const top = await log.list({ limit: 2 });
  expect(top).toEqual([newer, older]);
  expect((await log.list({ limit: 10, participant: 'y' })).map((s) => s.id)).toEqual([older.id]);
  const page2 = await log.list({ limit: 1, after: { createdAt: newer.createdAt, id: newer.id } });
  expect(page2).toEqual([older]);
  const active = await log.list({ limit: 500, state: 'active' });
  expect(active.length).toBeGreaterThanOrEqual(2);
  expect(active.every((s) => s.phase === 'active')).toBe(true);
});

test('lists one participant\'s transactions newest first page by page, enlisted ones too, with the state filter', async () => {
  const log = new DecisionLog(ds);
  const name = `p-${randomUUID()}`;
  const at = Date.now() + 180_000;
  const txs = [0, 1, 2].map((i) => ({ ...newTx([name, 'other']), createdAt: at + i * 1000 }));
  for (const t of txs) await log.insert(t);
  const late = { ...newTx(['other']), createdAt: at + 5000 };
  await log.insert(late);
  // Enlisted after the begin: found under that participant all the same.
  await log.update(late.id, (s) => ({ next: { ...s, participants: [...s.participants, { ...s.participants[0], name }] }, result: null }));
  await log.update(txs[1].id, (s) => ({ next: { ...s, phase: 'preparing' }, result: null }));

  const page1 = await log.list({ limit: 2, participant: name });
  expect(page1.map((s) => s.id)).toEqual([late.id, txs[2].id]);
  const last = page1[1];
  const page2 = await log.list({ limit: 5, participant: name, after: { createdAt: last.createdAt, id: last.id } });
  expect(page2.map((s) => s.id)).toEqual([txs[1].id, txs[0].id]);
  expect((await log.list({ limit: 5, participant: name, state: 'preparing' })).map((s) => s.id)).toEqual([txs[1].id]);
});

test('a readiness ping right after a statement succeeded sends none of its own; later it asks the database', async () => {
  // As the coordinator builds it: with its configuration, so with the circuit breaker that vouches.
  const log = new DecisionLog(ds, loadConfig({ ...process.env, DATABASE_URL: url }));
  statements = 0;
  await log.ping(); // nothing succeeded yet in this log: it asks
  expect(statements).toBe(1);
  await log.insert(newTx());
  statements = 0;
  await log.ping(); // the insert just answered for the store
  expect(statements).toBe(0);
  await new Promise((r) => setTimeout(r, 1100));
  await log.ping();
  expect(statements).toBe(1);
});

test('a save looks its transactions up by id: no whole scan of the log, with thousands of finished ones in it', async () => {
  // Below some 40,000 rows the planner, not knowing how many records a save's JSON holds, used to
  // join them to a scan of the whole table on every save. A database of its own, and one
  // connection, whose table counters are flushed on demand and read back through it.
  const config = loadConfig({ ...process.env, DATABASE_URL: await freshDatabase(`txtest_decision_log_scan_${process.pid}`) });
  const options = (await databaseOptions(config)) as DataSourceOptions & { extra: object };
  const single = await new DataSource({ ...options, extra: { ...options.extra, max: 1 } } as DataSourceOptions).initialize();
  try {
    await single.query(`
      INSERT INTO tx_transaction (id, protocol, state, outcome, timeout_ms, metadata, created_at, deadline, decided_at, completed_at, updated_at)
      SELECT gen_random_uuid(), '2pc', 'committed', 'commit', 30000, '{}', t, t, t, t, t
        FROM generate_series(1, 10000) g, LATERAL (SELECT now() - interval '1 day' - g * interval '1 ms' AS t) x`);
    await single.query('ANALYZE tx_transaction');
    const log = new DecisionLog(single);
    const txs = Array.from({ length: 20 }, () => newTx());
    await Promise.all(txs.map((t) => log.insert(t)));
    const counters = async () => {
      await single.query('SELECT pg_stat_force_next_flush()'); // flushed before the next statement is read
      const [row] = await single.query(`SELECT seq_scan, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'tx_transaction'`);
      return { scans: Number(row.seq_scan), updates: Number(row.n_tup_upd) };
    };
    const before = await counters();
    await Promise.all(txs.map((t) => log.update(t.id, (s) => ({ next: { ...s, metadata: { saved: true } }, result: null }))));
    const after = await counters();
    expect(after.updates - before.updates).toBe(txs.length);
    expect(after.scans - before.scans).toBe(0);
  } finally {
    await single.destroy();
  }
}, 40_000);
