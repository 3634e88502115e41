/**
 * The same suite for every resource adapter, against the real database: the library runtime over
 * the Kafka test broker with a fake coordinator (test/participant/support.ts), the bank's work
 * function (apps/bank-account/bank.ts), and restarts of the adapter and runtime while prepared.
 */
import pino from 'pino';
import { topics } from '../../libs/protocol';
import {
  AtomicityViolationError,
  ParticipantRuntime,
  PrepareContext,
  ResourceParticipant,
  startParticipant,
} from '../../libs/participant';
import { startTestBroker, TestBroker } from '../support/broker';
import {
  createTestDatabase,
  FakeCoordinator,
  msg,
  newTxId,
  participantTransport,
  record,
  TestDatabase,
  uniquePrefix,
} from '../participant/support';
import type { DataSource } from 'typeorm';

/** What the suite needs of one engine. */
export interface Engine {
  label: string;
  /** Creates the resource database with accounts acct-0..9 at 1000 each. */
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  /** A new adapter on a new pool (as after a process restart). */
  adapter(name: string, library: DataSource): ResourceParticipant<any>;
  balance(account: string): Promise<number>;
  entries(txId: string): Promise<number>;
  /** Our prepared transactions in the database, by txId. */
  prepared(): Promise<string[]>;
}

const silent = pino({ level: 'silent' });

/**
 * A decision handed to the adapter directly, right after its prepare: retried while the prepared
 * branch is still attached to the connection that prepared it (MariaDB notices that connection's
 * close a few milliseconds later; the adapter says `busy`), as the library retries a failed handler.
 */
async function decidedDirectly(decide: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await decide();
    } catch (err) {
      if (attempt >= 50 || !/still attached/.test((err as Error).message)) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export function adapterSuite(engine: Engine): void {
  const NAME = `bank-${engine.label}`;
  let broker: TestBroker;
  let library: TestDatabase;
  let prefix: string;
  let coordinator: FakeCoordinator;
  const open: { runtime?: ParticipantRuntime; adapter: ResourceParticipant<any> }[] = [];

  beforeAll(async () => {
    broker = await startTestBroker();
    library = await createTestDatabase(`ad${engine.label}`);
    await engine.setUp();
    prefix = uniquePrefix(engine.label);
    await broker.createTopic(topics(prefix).coordinator, 1);
    await broker.createTopic(topics(prefix).participant(NAME), 1);
    coordinator = await FakeCoordinator.start(broker, prefix);
  }, 60_000);

  afterAll(async () => {
    for (const o of open) {
      await o.runtime?.stop().catch(() => undefined);
      await o.adapter.stop().catch(() => undefined);
    }
    await coordinator?.stop();
    await engine.tearDown().catch(() => undefined);
    await library?.drop();
    await broker?.stop();
  });

  /** Adapter + library runtime, as the bank service starts them. */
  async function startService() {
    const adapter = engine.adapter(NAME, library.ds);
    const entry: (typeof open)[number] = { adapter };
    open.push(entry);
    const report = await adapter.start();
    entry.runtime = await startParticipant({
      name: NAME,
      participant: adapter,
      dataSource: library.ds,
      transport: participantTransport(broker, prefix, NAME),
      logger: silent,
      statusRequestAfterMs: 300,
      retryInitialMs: 200,
      retryMaxMs: 1000,
    });
    return { adapter, runtime: entry.runtime, report };
  }

  async function stopService(s: { adapter: ResourceParticipant<any>; runtime: ParticipantRuntime }) {
    await s.runtime.stop();
    await s.adapter.stop();
  }

  const ctx = (txId: string, payload: Record<string, unknown>): PrepareContext => ({
    txId,
    participant: NAME,
    protocol: '2pc',
    payload,
    deadline: new Date(Date.now() + 30_000),
    manager: library.ds.manager,
    logger: silent,
  });

  describe(`${engine.label} resource adapter`, () => {
    let service: Awaited<ReturnType<typeof startService>>;
    beforeAll(async () => {
      service = await startService();
    }, 60_000);

    it('votes yes only after the resource transaction is prepared; commit applies it once, a repeat is acknowledged', async () => {
      const txId = newTxId();
      const preparedWhenVoted: boolean[] = [];
      coordinator.onReceive = async (m) => {
        if (m.txId === txId && m.type === 'vote') preparedWhenVoted.push((await engine.prepared()).includes(txId));
      };
      await coordinator.send(msg.prepare(txId, NAME, { op: 'debit', account: 'acct-1', amount: 300 }));
      expect((await coordinator.vote(txId)).vote).toBe('yes');
      coordinator.onReceive = undefined;
      expect(preparedWhenVoted).toEqual([true]);
      expect((await record(library.ds, txId, NAME))?.state).toBe('prepared');
      expect(await engine.balance('acct-1')).toBe(1000); // not visible while prepared

      await coordinator.send(msg.commit(txId, NAME));
      await coordinator.ack(txId, 'commit');
      expect(await engine.prepared()).not.toContain(txId);
      expect(await engine.balance('acct-1')).toBe(700);
      expect(await engine.entries(txId)).toBe(1);

      // A repeated commit (the library's record is committed: acked without a handler call) …
      await coordinator.send(msg.commit(txId, NAME));
      await coordinator.waitForCount((m) => m.txId === txId && m.type === 'ack', 2);
      // … and the handler itself called again (as after a crash between COMMIT PREPARED and the record).
      await service.adapter.commit({ ...ctx(txId, {}), reason: undefined });
      expect(await engine.balance('acct-1')).toBe(700);
    });

    it('votes no when the debit would overdraw, and leaves nothing prepared or changed', async () => {
      const txId = newTxId();
      await coordinator.send(msg.prepare(txId, NAME, { op: 'debit', account: 'acct-2', amount: 5000 }));
      expect(await coordinator.vote(txId)).toMatchObject({ vote: 'no', reason: 'insufficient-funds' });
      expect(await engine.prepared()).not.toContain(txId);
      expect(await engine.balance('acct-2')).toBe(1000);
      expect(await engine.entries(txId)).toBe(0);
    });

    it('abort rolls the prepared transaction back; a repeat is fine', async () => {
      const txId = newTxId();
      await coordinator.send(msg.prepare(txId, NAME, { op: 'credit', account: 'acct-3', amount: 50 }));
      expect((await coordinator.vote(txId)).vote).toBe('yes');
      await coordinator.send(msg.abort(txId, NAME, 'vote-no:other'));
      await coordinator.ack(txId, 'abort');
      expect(await engine.prepared()).not.toContain(txId);
      expect(await engine.balance('acct-3')).toBe(1000);
      await service.adapter.abort({ ...ctx(txId, {}), reason: 'again' });
      expect(await engine.entries(txId)).toBe(0);
    });

    it('a decision that contradicts what the database did is refused loudly, never acknowledged', async () => {
      const a = newTxId();
      await service.adapter.prepare(ctx(a, { op: 'credit', account: 'acct-4', amount: 1 }));
      await decidedDirectly(() => service.adapter.abort({ ...ctx(a, {}) }));
      await expect(service.adapter.commit({ ...ctx(a, {}) })).rejects.toBeInstanceOf(AtomicityViolationError);
      const b = newTxId();
      await service.adapter.prepare(ctx(b, { op: 'credit', account: 'acct-4', amount: 1 }));
      await decidedDirectly(() => service.adapter.commit({ ...ctx(b, {}) }));
      await expect(service.adapter.abort({ ...ctx(b, {}) })).rejects.toBeInstanceOf(AtomicityViolationError);
      expect(await engine.balance('acct-4')).toBe(1001);
    });

    it('a redelivered prepare rolls back the leftover of an attempt whose record never committed, and redoes the work', async () => {
      const txId = newTxId();
      // The handler ran and prepared, then the process died before the library's record committed.
      await service.adapter.prepare(ctx(txId, { op: 'debit', account: 'acct-5', amount: 100 }));
      expect(await engine.prepared()).toContain(txId);
      await coordinator.send(msg.prepare(txId, NAME, { op: 'debit', account: 'acct-5', amount: 100 }));
      expect((await coordinator.vote(txId)).vote).toBe('yes');
      await coordinator.send(msg.commit(txId, NAME));
      await coordinator.ack(txId, 'commit');
      expect(await engine.balance('acct-5')).toBe(900); // once, not twice
      expect(await engine.prepared()).not.toContain(txId);
    });

    it('restart while prepared: the prepared work survives, unvoted leftovers are rolled back, the in-doubt one asks and commits', async () => {
      const inDoubt = newTxId();
      const aborted = newTxId();
      await coordinator.send(msg.prepare(inDoubt, NAME, { op: 'debit', account: 'acct-6', amount: 250 }, { deadlineInMs: 60_000 }));
      await coordinator.send(msg.prepare(aborted, NAME, { op: 'credit', account: 'acct-7', amount: 70 }, { deadlineInMs: 60_000 }));
      expect((await coordinator.vote(inDoubt)).vote).toBe('yes');
      expect((await coordinator.vote(aborted)).vote).toBe('yes');
      // A third one prepared by the handler whose yes never left (crash before the record).
      const orphan = newTxId();
      await service.adapter.prepare(ctx(orphan, { op: 'credit', account: 'acct-8', amount: 999 }));
      await stopService(service);
      expect((await engine.prepared()).sort()).toEqual([inDoubt, aborted, orphan].sort());

      service = await startService();
      expect(service.report.rolledBack).toEqual([orphan]);
      expect(service.report.inDoubt.sort()).toEqual([inDoubt, aborted].sort());
      expect(await engine.balance('acct-8')).toBe(1000);
      await coordinator.waitFor((m) => m.txId === inDoubt && m.type === 'status-request');
      await coordinator.waitFor((m) => m.txId === aborted && m.type === 'status-request');
      await coordinator.send(msg.commit(inDoubt, NAME), msg.abort(aborted, NAME, 'timeout:prepare'));
      await coordinator.ack(inDoubt, 'commit');
      await coordinator.ack(aborted, 'abort');
      expect(await engine.prepared()).toEqual([]);
      expect(await engine.balance('acct-6')).toBe(750);
      expect(await engine.balance('acct-7')).toBe(1000);
      expect(await engine.entries(inDoubt)).toBe(1);
      expect(await engine.entries(aborted)).toBe(0);
    }, 60_000);

    it('recovery finishes a prepared transaction whose library record is already final', async () => {
      const txId = newTxId();
      await coordinator.send(msg.prepare(txId, NAME, { op: 'credit', account: 'acct-9', amount: 5 }));
      expect((await coordinator.vote(txId)).vote).toBe('yes');
      // As if the record had been moved on by hand while the resource transaction stayed prepared.
      await library.ds.query(`UPDATE tx_participant_log SET state = 'committed' WHERE tx_id = $1`, [txId]);
      const report = await service.adapter.recover();
      expect(report.committed).toEqual([txId]);
      expect(await engine.balance('acct-9')).toBe(1005);
    });
  });
}
