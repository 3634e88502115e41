/**
 * The coordinator's Kafka inbox does not wait for an answer's step to be saved. kafkajs fetches
 * again only when every message of its last fetch is handled; were the vote handler to wait for
 * the save of the decision it makes, one slow save would hold every answer behind it. Here
 * transaction A's row is locked in Postgres, so the decision A's vote makes cannot be saved; B's
 * vote, produced after it, is still read and B commits. A commits once the lock goes, and its
 * commit is sent only after its decision is saved.
 */
import { randomUUID } from 'node:crypto';
import { Consumer, Kafka, logLevel, Producer } from 'kafkajs';
import { Client } from 'pg';
import { encodeMessage, topics } from '../../libs/protocol';
import { startTestBroker, TestBroker } from '../support/broker';
import { api, startCoordinator, TestCoordinator, uniquePrefix } from '../support/coordinator';
import { dropCreatedDatabases } from '../support/postgres';
import { eventually } from '../support/processes';

const MEMBER = 'm';
let broker: TestBroker;
let coordinator: TestCoordinator;
let prefix: string;
let producer: Producer;
let consumer: Consumer;
let db: Client;
/** Messages the member received: type per transaction id, in order. */
const received: { type: string; txId: string }[] = [];

beforeAll(async () => {
  broker = await startTestBroker();
  prefix = uniquePrefix();
  coordinator = await startCoordinator({
    brokers: broker.bootstrap,
    prefix,
    database: `txanswer_${randomUUID().slice(0, 8)}`,
    // No resend while the test holds the lock (a resend writes the row too), and a blocked save
    // that outlasts the test rather than failing inside it.
    env: { TX_RESEND_INITIAL_MS: '60000', TX_RESEND_MAX_MS: '60000', TX_DB_TIMEOUT_MS: '60000', LOG_LEVEL: 'warn' },
  });
  db = new Client({ connectionString: coordinator.env.DATABASE_URL });
  await db.connect();
  const kafka = new Kafka({ brokers: broker.brokers, logLevel: logLevel.NOTHING });
  producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  // A member that records what it is sent and answers only when the test says so.
  consumer = kafka.consumer({ groupId: `${prefix}member`, maxWaitTimeInMs: 5, sessionTimeout: 6000 });
  await consumer.connect();
  await consumer.subscribe({ topic: topics(prefix).participant(MEMBER), fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => void received.push(JSON.parse(String(message.value))) });
}, 120_000);

afterAll(async () => {
  await consumer?.disconnect();
  await producer?.disconnect();
  await db?.end();
  await coordinator?.stop();
  await broker?.stop();
  await dropCreatedDatabases();
});

const state = async (txId: string) => (await db.query('SELECT state FROM tx_transaction WHERE id = $1', [txId])).rows[0]?.state;

async function voteYes(txId: string): Promise<void> {
  const vote = { v: 1, type: 'vote', vote: 'yes', txId, participant: MEMBER, protocol: '2pc', sentAt: new Date().toISOString() } as const;
  await producer.send({ topic: topics(prefix).coordinator, acks: -1, messages: [{ key: txId, value: encodeMessage(vote) }] });
}

/** Begins a transaction with the member, asks to commit it, and waits until its prepare reached the member and `preparing` is saved. */
async function preparing(): Promise<{ id: string; answered: Promise<{ body: { outcome: string | null } }> }> {
  const { body: tx } = await api(coordinator.url, 'POST', '/v1/transactions', { participants: [{ name: MEMBER }] });
  const answered = api(coordinator.url, 'POST', `/v1/transactions/${tx.id}/commit?waitMs=60000`);
  await eventually(async () => received.some((m) => m.txId === tx.id && m.type === 'prepare'), Boolean, 30_000, `the prepare of ${tx.id}`);
  await eventually(() => state(tx.id), (s) => s === 'preparing', 10_000, `${tx.id} preparing`);
  return { id: tx.id, answered };
}

describe('an answer whose step cannot be saved yet', () => {
  it('does not hold the answers read after it', async () => {
    const a = await preparing();
    const b = await preparing();

    const lock = new Client({ connectionString: coordinator.env.DATABASE_URL });
    await lock.connect();
    try {
      await lock.query('BEGIN');
      await lock.query('SELECT 1 FROM tx_transaction WHERE id = $1 FOR UPDATE', [a.id]);
      await voteYes(a.id);
      // A's decision is being saved, and waits for the lock.
      await eventually(
        async () => (await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].n,
        (n) => n > 0, 30_000, 'the save of A to wait for the lock',
      );

      await voteYes(b.id);
      expect((await b.answered).body.outcome).toBe('commit');
      await eventually(async () => received.some((m) => m.txId === b.id && m.type === 'commit'), Boolean, 10_000, 'the commit of B');
      // Meanwhile A is undecided and nothing of a decision has left for it.
      expect(await state(a.id)).toBe('preparing');
      expect(received.filter((m) => m.txId === a.id).map((m) => m.type)).toEqual(['prepare']);
    } finally {
      await lock.query('ROLLBACK').catch(() => undefined);
      await lock.end();
    }

    expect((await a.answered).body.outcome).toBe('commit');
    await eventually(async () => received.some((m) => m.txId === a.id && m.type === 'commit'), Boolean, 10_000, 'the commit of A');
  }, 120_000);
});
