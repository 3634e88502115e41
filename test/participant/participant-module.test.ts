/**
 * The NestJS form: ParticipantModule.forRoot / forRootAsync with an injectable participant class
 * that uses the member's own providers, over real Postgres and a real Kafka-protocol broker.
 */
import 'reflect-metadata';
import { Inject, Injectable, INestApplicationContext, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { topics } from '../../libs/protocol';
import {
  DecisionContext,
  ParticipantModule,
  ParticipantService,
  PrepareContext,
  TransactionParticipant,
  VoteResult,
} from '../../libs/participant';
import { startTestBroker, TestBroker } from '../support/broker';
import {
  captureLogger,
  createTestDatabase,
  FakeCoordinator,
  msg,
  newTxId,
  participantTransport,
  record,
  TestDatabase,
  uniquePrefix,
} from './support';

jest.setTimeout(60_000);

/** One of the member service's own providers. */
@Injectable()
class OrderBook {
  readonly events: string[] = [];
}

@Module({ providers: [OrderBook], exports: [OrderBook] })
class OrderBookModule {}

const LIMIT = Symbol('LIMIT');

@Injectable()
class OrdersParticipant implements TransactionParticipant {
  constructor(
    private readonly book: OrderBook,
    @Inject(LIMIT) private readonly limit: number,
  ) {}

  async prepare(ctx: PrepareContext): Promise<VoteResult> {
    const qty = Number(ctx.payload.qty);
    if (!(qty <= this.limit)) return { vote: 'no', reason: 'over-limit' };
    await ctx.manager.query(`INSERT INTO orders (tx_id, qty, status) VALUES ($1, $2, 'held')`, [ctx.txId, qty]);
    this.book.events.push(`prepare:${ctx.txId}`);
    return 'yes';
  }

  async commit(ctx: DecisionContext): Promise<void> {
    await ctx.manager.query(`UPDATE orders SET status = 'placed' WHERE tx_id = $1`, [ctx.txId]);
    this.book.events.push(`commit:${ctx.txId}`);
  }

  async abort(ctx: DecisionContext): Promise<void> {
    await ctx.manager.query(`DELETE FROM orders WHERE tx_id = $1`, [ctx.txId]);
    this.book.events.push(`abort:${ctx.txId}`);
  }
}

@Module({ providers: [{ provide: LIMIT, useValue: 10 }], exports: [LIMIT] })
class LimitModule {}

describe('ParticipantModule', () => {
  let broker: TestBroker;
  let db: TestDatabase;
  let prefix: string;
  let coordinator: FakeCoordinator;

  beforeAll(async () => {
    broker = await startTestBroker();
    db = await createTestDatabase('module');
    prefix = uniquePrefix('m');
    await broker.createTopic(topics(prefix).coordinator, 1);
    for (const name of ['orders', 'orders-async', 'orders-instance']) {
      await broker.createTopic(topics(prefix).participant(name), 1);
    }
    await db.ds.query(`CREATE TABLE orders (tx_id uuid PRIMARY KEY, qty int, status text)`);
    coordinator = await FakeCoordinator.start(broker, prefix);
  });

  afterAll(async () => {
    await coordinator?.stop();
    await db?.drop();
    await broker?.stop();
  });

  it('forRoot with an injectable class: starts on bootstrap, drives the class, stops on close', async () => {
    @Module({
      imports: [
        OrderBookModule,
        ParticipantModule.forRoot({
          name: 'orders',
          participant: OrdersParticipant,
          imports: [OrderBookModule, LimitModule],
          databaseUrl: db.url,
          transport: participantTransport(broker, prefix, 'orders'),
          logger: captureLogger().logger,
        }),
      ],
    })
    class AppModule {}

    const app: INestApplicationContext = await NestFactory.createApplicationContext(AppModule, { logger: false });
    const service = app.get(ParticipantService);
    try {
      expect(service.ready).toBe(true);
      const book = app.get(OrderBook);

      const yes = newTxId();
      await coordinator.send(msg.prepare(yes, 'orders', { qty: 3 }));
      expect(await coordinator.vote(yes)).toMatchObject({ vote: 'yes', participant: 'orders' });
      await coordinator.send(msg.commit(yes, 'orders'));
      await coordinator.ack(yes, 'commit');
      expect(await db.ds.query(`SELECT status FROM orders WHERE tx_id = $1`, [yes])).toEqual([{ status: 'placed' }]);

      const no = newTxId();
      await coordinator.send(msg.prepare(no, 'orders', { qty: 11 }));
      expect(await coordinator.vote(no)).toMatchObject({ vote: 'no', reason: 'over-limit' });

      // The class got the application's own OrderBook instance.
      expect(book.events).toEqual([`prepare:${yes}`, `commit:${yes}`]);
    } finally {
      await app.close();
    }
    expect(service.ready).toBe(false);
  });

  it('forRootAsync: options from a factory with injected providers', async () => {
    @Injectable()
    class Settings {
      readonly databaseUrl = db.url;
    }
    @Module({ providers: [Settings], exports: [Settings] })
    class SettingsModule {}

    @Module({
      imports: [
        ParticipantModule.forRootAsync({
          imports: [SettingsModule, OrderBookModule, LimitModule],
          inject: [Settings],
          participant: OrdersParticipant,
          useFactory: async (s: Settings) => ({
            name: 'orders-async',
            databaseUrl: s.databaseUrl,
            transport: participantTransport(broker, prefix, 'orders-async'),
            logger: captureLogger().logger,
          }),
        }),
      ],
    })
    class AppModule {}

    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      expect(app.get(ParticipantService).ready).toBe(true);
      const txId = newTxId();
      await coordinator.send(msg.prepare(txId, 'orders-async', { qty: 1 }));
      expect((await coordinator.vote(txId)).vote).toBe('yes');
      await coordinator.send(msg.abort(txId, 'orders-async', 'client-abort'));
      await coordinator.ack(txId, 'abort');
      expect(await db.ds.query(`SELECT * FROM orders WHERE tx_id = $1`, [txId])).toEqual([]);
      expect((await record(db.ds, txId, 'orders-async'))?.state).toBe('aborted');
    } finally {
      await app.close();
    }
  });

  it('forRootAsync: the factory may return a participant instance and the DataSource', async () => {
    const seen: string[] = [];
    const instance: TransactionParticipant = {
      prepare: async (ctx) => {
        seen.push(`prepare:${ctx.txId}`);
        return 'yes';
      },
      commit: async (ctx) => void seen.push(`commit:${ctx.txId}`),
      abort: async (ctx) => void seen.push(`abort:${ctx.txId}`),
    };
    @Module({
      imports: [
        ParticipantModule.forRootAsync({
          useFactory: () => ({
            name: 'orders-instance',
            participant: instance,
            dataSource: db.ds,
            transport: participantTransport(broker, prefix, 'orders-instance'),
            logger: captureLogger().logger,
          }),
        }),
      ],
    })
    class AppModule {}

    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      const txId = newTxId();
      await coordinator.send(msg.prepare(txId, 'orders-instance'));
      await coordinator.vote(txId);
      await coordinator.send(msg.commit(txId, 'orders-instance'));
      await coordinator.ack(txId, 'commit');
      expect(seen).toEqual([`prepare:${txId}`, `commit:${txId}`]);
    } finally {
      await app.close();
    }
    expect(db.ds.isInitialized).toBe(true); // given, so not closed by the library
  });
});
