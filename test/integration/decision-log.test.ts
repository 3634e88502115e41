/**
 * The decision log on a real Postgres: group commit (many steps, inserts and reads in one
 * statement each), optimistic concurrency between two replicas' logs, idempotency keys within one
 * grouped insert, and the listing queries.
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

async function open(url: string): Promise<DataSource> {
  const config = loadConfig({ ...process.env, DATABASE_URL: url });
  return new DataSource((await databaseOptions(config)) as DataSourceOptions).initialize();
}

beforeAll(async () => {
  const url = await freshDatabase(`txtest_decision_log_${process.pid}`);
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
