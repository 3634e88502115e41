/**
 * The participant library against real Postgres and a real Kafka-protocol broker: a fake
 * coordinator produces CONTRACT messages onto the participant's topic and reads its answers.
 */
import { Kafka, logLevel } from 'kafkajs';
import { encodeMessage, topics } from '../../libs/protocol';
import { ParticipantConfigError, ParticipantRuntime, startParticipant } from '../../libs/participant';
import { startTestBroker, TestBroker } from '../support/broker';
import {
  captureLogger,
  createTestDatabase,
  effects,
  FakeCoordinator,
  msg,
  newTxId,
  participantTransport,
  record,
  RecordingParticipant,
  sleep,
  TestDatabase,
  testTransport,
  uniquePrefix,
} from './support';

jest.setTimeout(60_000);

describe('startParticipant options', () => {
  const participant = new RecordingParticipant();

  it('rejects a name that is not a legal participant name', async () => {
    await expect(startParticipant({ name: 'bad name', participant, databaseUrl: 'postgres://x/y' })).rejects.toThrow(
      /participant name "bad name" is invalid/,
    );
  });

  it('rejects a database URL of another scheme', async () => {
    await expect(startParticipant({ name: 'ok', participant, databaseUrl: 'mysql://x/y' })).rejects.toThrow(
      /databaseUrl must be a postgres:\/\/ or postgresql:\/\/ URL/,
    );
  });

  it('names DATABASE_URL when neither option nor variable is set', async () => {
    const saved = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL;
    try {
      await expect(startParticipant({ name: 'ok', participant })).rejects.toThrow(/DATABASE_URL is not set/);
    } finally {
      if (saved !== undefined) process.env.DATABASE_URL = saved;
    }
  });

  it('uses HTTP when no transport is given and KAFKA_BROKERS is not set, naming a bad HTTP option', async () => {
    const saved = process.env.KAFKA_BROKERS;
    delete process.env.KAFKA_BROKERS;
    try {
      const err = await startParticipant({ name: 'ok', participant, databaseUrl: 'postgres://x/y', coordinatorUrl: 'ftp://x' }).catch((e) => e);
      expect(err).toBeInstanceOf(ParticipantConfigError);
      expect(err.message).toMatch(/participant option coordinatorUrl must be an http\(s\) URL/);
    } finally {
      if (saved !== undefined) process.env.KAFKA_BROKERS = saved;
    }
  });

  it('rejects a handler missing a method', async () => {
    await expect(
      startParticipant({ name: 'ok', participant: { prepare: async () => 'yes' } as never, databaseUrl: 'postgres://x/y' }),
    ).rejects.toThrow(/must implement commit, abort/);
  });
});

describe('participant runtime over Kafka', () => {
  const NAME = 'inventory';
  let broker: TestBroker;
  let db: TestDatabase;
  let prefix: string;
  let coordinator: FakeCoordinator;
  let runtime: ParticipantRuntime;
  const participant = new RecordingParticipant();
  const log = captureLogger('info');
  /** What the participant's log held for a transaction when its vote reached the coordinator. */
  const recordAtVote = new Map<string, unknown>();

  beforeAll(async () => {
    broker = await startTestBroker();
    db = await createTestDatabase('participant');
    prefix = uniquePrefix('p');
    await broker.createTopic(topics(prefix).coordinator, 2);
    await broker.createTopic(topics(prefix).participant(NAME), 2);
    await RecordingParticipant.createTable(db.ds);
    // Both join their consumer groups at once (the mock broker delays a group's first join ~3 s).
    [coordinator, runtime] = await Promise.all([
      FakeCoordinator.start(broker, prefix),
      startParticipant({
        name: NAME,
        participant,
        databaseUrl: db.url,
        transport: participantTransport(broker, prefix, NAME),
        logger: log.logger,
        statusRequestAfterMs: 300,
        retryInitialMs: 100,
        retryMaxMs: 1000,
      }),
    ]);
    coordinator.onReceive = async (m) => {
      if (m.type === 'vote') recordAtVote.set(m.txId, await record(db.ds, m.txId, NAME));
    };
  });

  afterAll(async () => {
    await runtime?.stop();
    await coordinator?.stop();
    await db?.drop();
    await broker?.stop();
  });

  it('is ready once started and has created its table', async () => {
    expect(runtime.ready).toBe(true);
    expect(runtime.name).toBe(NAME);
    const [{ n }] = await db.ds.query(`SELECT count(*)::int AS n FROM tx_participant_log`);
    expect(n).toBe(0);
  });

  it('prepare → the record is durable before the yes vote arrives', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, { sku: 'A1', qty: 2 }));
    const vote = await coordinator.vote(txId);
    expect(vote).toMatchObject({ v: 1, type: 'vote', txId, participant: NAME, protocol: '2pc', vote: 'yes' });
    expect(vote.reason).toBeUndefined();
    expect(Date.parse(vote.sentAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(recordAtVote.get(txId)).toMatchObject({ state: 'prepared', protocol: '2pc', payload: { sku: 'A1', qty: 2 } });
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1 });
    expect(participant.count(txId, 'prepare')).toBe(1);
  });

  it('prepare → no: votes no with the reason, rolls the handler work back, keeps a tombstone', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, { vote: 'no', reason: 'insufficient-stock' }));
    const vote = await coordinator.vote(txId);
    expect(vote).toMatchObject({ vote: 'no', reason: 'insufficient-stock' });
    expect(await effects(db.ds, txId)).toEqual({});
    expect(await record(db.ds, txId, NAME)).toMatchObject({ state: 'aborted', reason: 'insufficient-stock' });
  });

  it('a throwing prepare votes no with the error message', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, { throw: 'warehouse offline' }));
    expect(await coordinator.vote(txId)).toMatchObject({ vote: 'no', reason: 'warehouse offline' });
    expect(await effects(db.ds, txId)).toEqual({});
    expect((await record(db.ds, txId, NAME))?.state).toBe('aborted');
  });

  it('a prepare whose SQL fails votes no with the database error, and leaves a usable tombstone', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, { sqlError: 'throw' }));
    expect(await coordinator.vote(txId)).toMatchObject({ vote: 'no', reason: expect.stringMatching(/no_such_table/) });
    expect(await effects(db.ds, txId)).toEqual({});
    expect((await record(db.ds, txId, NAME))?.state).toBe('aborted');
  });

  it('a prepare that swallows an SQL error and votes yes is turned into a no', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, { sqlError: 'swallow' }));
    expect(await coordinator.vote(txId)).toMatchObject({ vote: 'no', reason: 'prepare-failed: local transaction aborted' });
    expect(await effects(db.ds, txId)).toEqual({});
    expect((await record(db.ds, txId, NAME))?.state).toBe('aborted');
  });

  it('a prepare past its deadline votes no without calling the handler', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, {}, { deadlineInMs: -1000 }));
    expect(await coordinator.vote(txId)).toMatchObject({ vote: 'no', reason: 'deadline-passed' });
    expect(participant.count(txId, 'prepare')).toBe(0);
  });

  it('a duplicate prepare calls the handler once and votes yes again', async () => {
    const txId = newTxId();
    const prepare = msg.prepare(txId, NAME, { sku: 'B', qty: 1 });
    await coordinator.send(prepare, { ...prepare, sentAt: new Date().toISOString() });
    const votes = await coordinator.waitForCount((m) => m.txId === txId && m.type === 'vote', 2);
    expect(votes.map((v) => (v as { vote: string }).vote)).toEqual(['yes', 'yes']);
    await coordinator.send(prepare); // and once more, later
    await coordinator.waitForCount((m) => m.txId === txId && m.type === 'vote', 3);
    expect(participant.count(txId, 'prepare')).toBe(1);
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1 });
  });

  it('commit → the handler runs once and the commit is acknowledged; a duplicate is acknowledged again', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME));
    expect((await coordinator.vote(txId)).vote).toBe('yes');
    await coordinator.send(msg.commit(txId, NAME));
    expect(await coordinator.ack(txId, 'commit')).toMatchObject({ v: 1, type: 'ack', of: 'commit', participant: NAME });
    expect(await record(db.ds, txId, NAME)).toMatchObject({ state: 'committed' });
    await coordinator.send(msg.commit(txId, NAME));
    await coordinator.waitForCount((m) => m.txId === txId && m.type === 'ack', 2);
    expect(participant.count(txId, 'commit')).toBe(1);
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, commit: 1 });
    // A prepare arriving after the commit is answered yes, from the record.
    await coordinator.send(msg.prepare(txId, NAME));
    await coordinator.waitForCount((m) => m.txId === txId && m.type === 'vote', 2);
    expect(coordinator.about(txId, 'vote').map((v) => (v as { vote: string }).vote)).toEqual(['yes', 'yes']);
    expect(participant.count(txId, 'prepare')).toBe(1);
  });

  it('abort after prepare → the abort handler runs once and the abort is acknowledged', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME));
    await coordinator.vote(txId);
    await coordinator.send(msg.abort(txId, NAME, 'vote-no:payments'), msg.abort(txId, NAME, 'vote-no:payments'));
    await coordinator.waitForCount((m) => m.txId === txId && m.type === 'ack' && m.of === 'abort', 2);
    expect(participant.count(txId, 'abort')).toBe(1);
    expect(await record(db.ds, txId, NAME)).toMatchObject({ state: 'aborted', reason: 'vote-no:payments' });
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, abort: 1 });
  });

  it('abort without prepare → a tombstone and an ack; a late prepare is then refused', async () => {
    const txId = newTxId();
    await coordinator.send(msg.abort(txId, NAME, 'timeout:prepare'));
    expect(await coordinator.ack(txId, 'abort')).toMatchObject({ of: 'abort' });
    expect(await record(db.ds, txId, NAME)).toMatchObject({ state: 'aborted', reason: 'timeout:prepare' });
    await coordinator.send(msg.prepare(txId, NAME));
    expect(await coordinator.vote(txId)).toMatchObject({ vote: 'no', reason: 'already-aborted' });
    expect(participant.count(txId, 'prepare')).toBe(0);
    expect(participant.count(txId, 'abort')).toBe(0);
  });

  it('commit for a transaction it never prepared: logs an error and does not acknowledge', async () => {
    const txId = newTxId();
    await coordinator.send(msg.commit(txId, NAME));
    await waitUntil(() => log.lines.some((l) => l.txId === txId && l.level === 50));
    const line = log.lines.find((l) => l.txId === txId && l.level === 50)!;
    expect(line).toMatchObject({ alert: 'atomicity', of: 'commit', state: 'none' });
    await sleep(300);
    expect(coordinator.about(txId, 'ack')).toEqual([]);
    expect(await record(db.ds, txId, NAME)).toBeNull();
  });

  it('abort after commit: logs an error and does not acknowledge', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME));
    await coordinator.vote(txId);
    await coordinator.send(msg.commit(txId, NAME));
    await coordinator.ack(txId, 'commit');
    await coordinator.send(msg.abort(txId, NAME));
    await waitUntil(() => log.lines.some((l) => l.txId === txId && l.level === 50));
    await sleep(300);
    expect(coordinator.about(txId, 'ack').map((a) => (a as { of: string }).of)).toEqual(['commit']);
    expect((await record(db.ds, txId, NAME))?.state).toBe('committed');
  });

  it('a failing commit handler is rolled back and retried until it succeeds, then acknowledged', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, { failCommit: 2 }));
    await coordinator.vote(txId);
    await coordinator.send(msg.commit(txId, NAME));
    await coordinator.ack(txId, 'commit');
    expect(participant.count(txId, 'commit')).toBe(3);
    expect(coordinator.about(txId, 'ack')).toHaveLength(1);
    // The two failed attempts left nothing behind.
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, commit: 1 });
    expect((await record(db.ds, txId, NAME))?.state).toBe('committed');
  });

  it('a commit handler that swallows an SQL error is rolled back and retried, then acknowledged once', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, { swallowCommitSqlError: 1 }));
    await coordinator.vote(txId);
    await coordinator.send(msg.commit(txId, NAME));
    await coordinator.ack(txId, 'commit');
    expect(participant.count(txId, 'commit')).toBe(2);
    expect(coordinator.about(txId, 'ack')).toHaveLength(1);
    // Retried by the library, as a failing handler is, not redelivered by the transport (which
    // would hold up the partition's other messages).
    expect(log.lines.filter((l) => l.txId === txId && /commit handler failed; will retry/.test(String(l.msg)))).toHaveLength(1);
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, commit: 1 });
    expect((await record(db.ds, txId, NAME))?.state).toBe('committed');
  });

  it('a late decision: sends status-request after the deadline, repeats, and finishes on the answer', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, {}, { deadlineInMs: 400 }));
    expect((await coordinator.vote(txId)).vote).toBe('yes');
    const voteAt = Date.now();
    const first = await coordinator.waitFor((m) => m.txId === txId && m.type === 'status-request');
    expect(first).toMatchObject({ v: 1, participant: NAME, protocol: '2pc' });
    expect(Date.now() - voteAt).toBeGreaterThanOrEqual(400); // not before deadline + grace
    await coordinator.waitForCount((m) => m.txId === txId && m.type === 'status-request', 3);
    await coordinator.send(msg.abort(txId, NAME, 'timeout:prepare'));
    await coordinator.ack(txId, 'abort');
    expect(participant.count(txId, 'abort')).toBe(1);
    const asked = coordinator.about(txId, 'status-request').length;
    await sleep(1200);
    expect(coordinator.about(txId, 'status-request').length).toBe(asked); // it stopped asking
  });

  it('3PC: pre-commit records precommitted and is acknowledged; commit then finishes', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, {}, { protocol: '3pc' }));
    expect(await coordinator.vote(txId)).toMatchObject({ vote: 'yes', protocol: '3pc' });
    await coordinator.send(msg.preCommit(txId, NAME));
    expect(await coordinator.ack(txId, 'pre-commit')).toMatchObject({ protocol: '3pc' });
    expect((await record(db.ds, txId, NAME))?.state).toBe('precommitted');
    await coordinator.send(msg.commit(txId, NAME, '3pc'));
    await coordinator.ack(txId, 'commit');
    expect((await record(db.ds, txId, NAME))?.state).toBe('committed');
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, 'pre-commit': 1, commit: 1 });
  });

  it('ignores messages addressed to another participant', async () => {
    const txId = newTxId();
    // Produced onto this participant's topic with a raw producer, but naming someone else.
    const producer = new Kafka({ brokers: broker.brokers, logLevel: logLevel.NOTHING }).producer();
    await producer.connect();
    try {
      await producer.send({
        topic: topics(prefix).participant(NAME),
        messages: [{ key: txId, value: encodeMessage({ ...msg.prepare(txId, NAME), participant: 'payments' }) }],
      });
    } finally {
      await producer.disconnect();
    }
    await waitUntil(() => log.lines.some((l) => l.txId === txId && /another participant/.test(String(l.msg))));
    expect(participant.count(txId, 'prepare')).toBe(0);
  });

  it('logs every protocol line with the txId', () => {
    const protocolLines = log.lines.filter((l) => /vot|acknowledg|status-request|prepared|retrying/.test(String(l.msg)));
    expect(protocolLines.length).toBeGreaterThan(10);
    for (const l of protocolLines) expect(l).toMatchObject({ txId: expect.any(String), participant: NAME });
  });
});

describe('participant restart', () => {
  const NAME = 'ledger';
  let broker: TestBroker;
  let db: TestDatabase;
  let prefix: string;
  let coordinator: FakeCoordinator;

  beforeAll(async () => {
    broker = await startTestBroker();
    db = await createTestDatabase('restart');
    prefix = uniquePrefix('r');
    await broker.createTopic(topics(prefix).coordinator, 1);
    await broker.createTopic(topics(prefix).participant(NAME), 1);
    await RecordingParticipant.createTable(db.ds);
    coordinator = await FakeCoordinator.start(broker, prefix);
  });

  afterAll(async () => {
    await coordinator?.stop();
    await db?.drop();
    await broker?.stop();
  });

  it('a participant restarted while prepared asks for the outcome at start and finishes on the answer', async () => {
    const participant = new RecordingParticipant();
    const options = {
      name: NAME,
      participant,
      dataSource: db.ds, // the service's own DataSource: the library must not close it
      logger: captureLogger().logger,
      statusRequestAfterMs: 300,
      retryInitialMs: 200,
      retryMaxMs: 1000,
    };
    const first = await startParticipant({ ...options, transport: participantTransport(broker, prefix, NAME) });
    const txId = newTxId();
    const other = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, {}, { deadlineInMs: 60_000 }));
    await coordinator.send(msg.prepare(other, NAME, {}, { deadlineInMs: 60_000 }));
    expect((await coordinator.vote(txId)).vote).toBe('yes');
    expect((await coordinator.vote(other)).vote).toBe('yes');
    await first.stop();
    expect(first.ready).toBe(false);
    expect(db.ds.isInitialized).toBe(true);
    // The deadline is a minute away: the first run never asked.
    expect(coordinator.about(txId, 'status-request')).toEqual([]);

    const second = await startParticipant({ ...options, transport: participantTransport(broker, prefix, NAME) });
    try {
      await coordinator.waitFor((m) => m.txId === txId && m.type === 'status-request');
      await coordinator.waitFor((m) => m.txId === other && m.type === 'status-request');
      await coordinator.send(msg.commit(txId, NAME), msg.abort(other, NAME, 'timeout:prepare'));
      await coordinator.ack(txId, 'commit');
      await coordinator.ack(other, 'abort');
      expect(participant.count(txId, 'commit')).toBe(1);
      expect(participant.count(other, 'abort')).toBe(1);
      expect(await effects(db.ds, txId)).toEqual({ prepare: 1, commit: 1 });
      expect((await record(db.ds, txId, NAME))?.state).toBe('committed');
      expect((await record(db.ds, other, NAME))?.state).toBe('aborted');
    } finally {
      await second.stop();
    }
  });
});

describe('two instances of one participant on one database', () => {
  const NAME = 'twin';
  let broker: TestBroker;
  let db: TestDatabase;
  let prefix: string;
  let coordinator: FakeCoordinator;
  const participant = new RecordingParticipant();
  const runtimes: ParticipantRuntime[] = [];

  beforeAll(async () => {
    broker = await startTestBroker();
    db = await createTestDatabase('twin');
    prefix = uniquePrefix('w');
    await broker.createTopic(topics(prefix).coordinator, 1);
    await broker.createTopic(topics(prefix).participant(NAME), 1);
    await RecordingParticipant.createTable(db.ds);
    // Two consumer groups on one topic: each instance gets every message, as happens for a while
    // when a rebalance hands a partition over. They share the database, as replicas do.
    const [c, ...rs] = await Promise.all([
      FakeCoordinator.start(broker, prefix),
      ...['a', 'b'].map((g) =>
        startParticipant({
          name: NAME,
          participant,
          databaseUrl: db.url,
          transport: testTransport(broker, {
            groupId: `txp.${NAME}.${g}`,
            listenTopic: topics(prefix).participant(NAME),
            topicPrefix: prefix,
          }),
          logger: captureLogger().logger,
        }),
      ),
    ]);
    coordinator = c;
    runtimes.push(...rs);
  });

  afterAll(async () => {
    await Promise.all(runtimes.map((r) => r.stop()));
    await coordinator?.stop();
    await db?.drop();
    await broker?.stop();
  });

  it('handles each message once in effect, however many instances receive it', async () => {
    const txIds = Array.from({ length: 10 }, () => newTxId());
    await coordinator.send(...txIds.map((t) => msg.prepare(t, NAME)));
    await coordinator.waitForCount((m) => m.type === 'vote' && txIds.includes(m.txId), 20);
    expect(coordinator.received.filter((m) => m.type === 'vote').every((m) => (m as { vote: string }).vote === 'yes')).toBe(true);
    await coordinator.send(...txIds.map((t, i) => (i % 2 ? msg.commit(t, NAME) : msg.abort(t, NAME))));
    await coordinator.waitForCount((m) => m.type === 'ack' && txIds.includes(m.txId), 20);
    for (const [i, t] of txIds.entries()) {
      expect(participant.count(t, 'prepare')).toBe(1);
      expect(participant.count(t, i % 2 ? 'commit' : 'abort')).toBe(1);
      expect(await effects(db.ds, t)).toEqual(i % 2 ? { prepare: 1, commit: 1 } : { prepare: 1, abort: 1 });
    }
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await sleep(20);
  }
}
