/**
 * The participant library's local transactions (startTransactionWith, commitTransactionWith,
 * startLockedTx) against real Postgres through TypeORM: statements in the round trip of START
 * TRANSACTION and of COMMIT, TypeORM's bookkeeping and events kept, a failed write never followed
 * by its commit, the read after the lock seeing what the lock's previous holder committed, and a
 * record's move stopping its COMMIT when the record is not in the state it moves from.
 */
import { randomUUID } from 'node:crypto';
import { DataSource, EntitySubscriberInterface, EventSubscriber, QueryRunner, TransactionCommitEvent, TransactionStartEvent } from 'typeorm';
import { findRecord, insertRecordSql, moveRecordSql, startLockedTx } from '../../libs/participant/log-store';
import { runParticipantMigrations } from '../../libs/participant/schema';
import { commitTransactionWith, startTransactionWith } from '../../libs/participant/typeorm-transaction';
import { createTestDatabase, TestDatabase } from './support';

const events: string[] = [];
@EventSubscriber()
class TransactionWatcher implements EntitySubscriberInterface {
  afterTransactionStart(_e: TransactionStartEvent): void {
    events.push('after-start');
  }
  afterTransactionCommit(_e: TransactionCommitEvent): void {
    events.push('after-commit');
  }
}

describe('local transactions', () => {
  let db: TestDatabase;
  let ds: DataSource;

  beforeAll(async () => {
    db = await createTestDatabase('localtx');
    ds = new DataSource({ type: 'postgres', url: db.url, entities: [], subscribers: [TransactionWatcher] });
    await ds.initialize();
    await runParticipantMigrations(ds);
    await ds.query('CREATE TABLE t (id int PRIMARY KEY)');
  });

  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  /** A query runner whose driver client counts the queries it sends (each one round trip). */
  async function countingRunner(): Promise<{ q: QueryRunner; sent: string[] }> {
    const q = ds.createQueryRunner();
    const client = await q.connect();
    const sent: string[] = [];
    const query = client.query;
    client.query = function (this: unknown, ...args: unknown[]) {
      if (typeof args[0] === 'string') sent.push(args[0]);
      return query.apply(this, args);
    };
    // Restored on release, so the pooled connection goes back as it came.
    const release = q.release.bind(q);
    q.release = async () => {
      client.query = query;
      return release();
    };
    return { q, sent };
  }

  it('sends START TRANSACTION and the statements as one query, and returns their rows', async () => {
    const { q, sent } = await countingRunner();
    try {
      events.length = 0;
      const rows = await startTransactionWith(q, ['SELECT 1 AS a', 'SELECT 2 AS b, 3 AS c']);
      expect(rows).toEqual([[{ a: 1 }], [{ b: 2, c: 3 }]]);
      expect(sent).toHaveLength(1);
      expect(sent[0]).toMatch(/^START TRANSACTION;\nSELECT 1 AS a;\nSELECT 2 AS b, 3 AS c$/);
      // TypeORM knows its transaction is open and fired its events.
      expect(q.isTransactionActive).toBe(true);
      expect(events).toEqual(['after-start']);
      // The query method is TypeORM's own again.
      expect(Object.prototype.hasOwnProperty.call(q, 'query')).toBe(false);
      await q.commitTransaction();
    } finally {
      await q.release();
    }
  });

  it('sends the statements and COMMIT as one query; TypeORM sees its transaction committed', async () => {
    const { q, sent } = await countingRunner();
    try {
      await startTransactionWith(q, ['SELECT 1']);
      events.length = 0;
      await commitTransactionWith(q, ['INSERT INTO t VALUES (10)', 'INSERT INTO t VALUES (11)']);
      expect(sent).toHaveLength(2);
      expect(sent[1]).toBe('INSERT INTO t VALUES (10);\nINSERT INTO t VALUES (11);\nCOMMIT');
      expect(q.isTransactionActive).toBe(false);
      expect(events).toEqual(['after-commit']);
    } finally {
      await q.release();
    }
    expect(await ds.query('SELECT id FROM t WHERE id >= 10 ORDER BY id')).toEqual([{ id: 10 }, { id: 11 }]);
    await ds.query('DELETE FROM t');
  });

  it('a statement that fails stops the COMMIT: nothing of the transaction is kept, and it rolls back', async () => {
    const q = ds.createQueryRunner();
    try {
      await startTransactionWith(q, ['SELECT 1']);
      await q.query('INSERT INTO t VALUES (20)');
      // The second insert breaks the primary key: the COMMIT after it must not run.
      await expect(commitTransactionWith(q, ['INSERT INTO t VALUES (21)', 'INSERT INTO t VALUES (21)'])).rejects.toThrow(/duplicate key/);
      expect(q.isTransactionActive).toBe(true);
      await expect(q.query('SELECT 1')).rejects.toThrow(/current transaction is aborted/);
      await q.rollbackTransaction();
    } finally {
      await q.release();
    }
    expect(await ds.query('SELECT count(*)::int AS n FROM t')).toEqual([{ n: 0 }]);
  });

  it('leaves TypeORM able to nest: a transaction inside commits to a savepoint, and the outer rollback undoes it', async () => {
    const q = ds.createQueryRunner();
    try {
      await startTransactionWith(q, ['SELECT 1']);
      await q.manager.transaction(async (m) => {
        await m.query('INSERT INTO t VALUES (1)');
      });
      expect(await q.query('SELECT count(*)::int AS n FROM t')).toEqual([{ n: 1 }]);
      await q.rollbackTransaction();
    } finally {
      await q.release();
    }
    expect(await ds.query('SELECT count(*)::int AS n FROM t')).toEqual([{ n: 0 }]);
  });

  it('after a failing statement the transaction rolls back and the connection is usable again', async () => {
    const q = ds.createQueryRunner();
    try {
      await expect(startTransactionWith(q, ['SELECT 1', 'SELECT * FROM no_such_table'])).rejects.toThrow(/no_such_table/);
      expect(q.isTransactionActive).toBe(true);
      await q.rollbackTransaction();
      expect(await q.query('SELECT 7 AS x')).toEqual([{ x: 7 }]);
    } finally {
      await q.release();
    }
  });

  it('startLockedTx waits for the lock and then reads what its previous holder committed', async () => {
    const txId = randomUUID();
    const first = ds.createQueryRunner();
    const second = ds.createQueryRunner();
    try {
      expect(await startLockedTx(first, txId, 'inventory')).toBeNull();
      let secondRead: unknown = 'pending';
      const waiting = startLockedTx(second, txId, 'inventory').then((rec) => (secondRead = rec));
      await new Promise((r) => setTimeout(r, 200));
      expect(secondRead).toBe('pending'); // blocked on the first's lock
      await first.query(insertRecordSql({ txId, participant: 'inventory', protocol: '2pc', state: 'prepared' }));
      await first.commitTransaction();
      await waiting;
      // One statement for lock and read would have taken its snapshot before the lock and seen nothing.
      expect(secondRead).toMatchObject({ txId, participant: 'inventory', state: 'prepared' });
      await second.commitTransaction();
    } finally {
      await first.release();
      await second.release();
    }
  });

  it('quotes every value: a name, payload and reason with quotes and backslashes, and the deadline, are read back as written', async () => {
    const txId = randomUUID();
    const name = "o'brien\\x";
    const payload = { note: "it's a \\ back'slash ü", n: [1, 2] };
    const deadline = new Date(Date.now() + 12_345);
    const reason = "no: 'quoted' \\ reason";
    const q = ds.createQueryRunner();
    try {
      expect(await startLockedTx(q, txId, name)).toBeNull();
      await q.query(insertRecordSql({ txId, participant: name, protocol: '2pc', state: 'aborted', payload, deadline, reason }));
      await q.commitTransaction();
      expect(await startLockedTx(q, txId, name)).toMatchObject({ txId, participant: name, state: 'aborted', payload, deadline, reason });
      await q.commitTransaction();
    } finally {
      await q.release();
    }
  });

  it("a record's move sent with the COMMIT: moves it, with the reason quoted; from a state the record is not in, it raises and stops the COMMIT", async () => {
    const txId = randomUUID();
    const reason = "timeout: 'quoted' \\ reason";
    const q = ds.createQueryRunner();
    try {
      await startLockedTx(q, txId, 'ledger');
      await commitTransactionWith(q, [insertRecordSql({ txId, participant: 'ledger', protocol: '2pc', state: 'prepared' })]);
      await startLockedTx(q, txId, 'ledger');
      await q.query('INSERT INTO t VALUES (3)');
      await commitTransactionWith(q, [moveRecordSql(txId, 'ledger', 'prepared', 'aborted', reason)]);
      expect(await findRecord(ds, txId, 'ledger')).toMatchObject({ state: 'aborted', reason });

      await startLockedTx(q, txId, 'ledger');
      await q.query('INSERT INTO t VALUES (4)');
      const moved = commitTransactionWith(q, [moveRecordSql(txId, 'ledger', 'prepared', 'committed')]);
      await expect(moved).rejects.toMatchObject({
        code: 'P0001',
        message: `tx_participant_log: expected one prepared record of ${txId}/ledger to move to committed`,
      });
      await q.rollbackTransaction();
    } finally {
      await q.release();
    }
    expect(await findRecord(ds, txId, 'ledger')).toMatchObject({ state: 'aborted', reason });
    expect(await ds.query('SELECT id FROM t WHERE id IN (3, 4) ORDER BY id')).toEqual([{ id: 3 }]);
  });
});
