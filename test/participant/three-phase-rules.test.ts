/**
 * The participant library's 3PC timeout rules (docs/PROTOCOL.md), against real Postgres and the
 * Kafka test broker, with a fake coordinator that stays silent when the test wants it to:
 *  - pre-committed and no commit by its timeout (the prepare's deadline + statusRequestAfterMs):
 *    it commits on its own and acknowledges commit — safe because the coordinator makes the commit
 *    decision durable before any pre-commit leaves;
 *  - prepared (voted yes, no pre-commit): it never aborts on its own, it only asks;
 *  - an abort after pre-commit is a protocol violation: refused, not applied, not acknowledged;
 *  - a participant restarted while pre-committed, past its timeout, commits right after start.
 */
import { topics } from '../../libs/protocol';
import { ParticipantRuntime, startParticipant } from '../../libs/participant';
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
  uniquePrefix,
} from './support';

jest.setTimeout(60_000);

const NAME = 'ledger';
const STATUS_AFTER_MS = 300;
let broker: TestBroker;
let db: TestDatabase;
let prefix: string;
let coordinator: FakeCoordinator;
let runtime: ParticipantRuntime;
const participant = new RecordingParticipant();
const log = captureLogger('info');

const start = () =>
  startParticipant({
    name: NAME,
    participant,
    databaseUrl: db.url,
    transport: participantTransport(broker, prefix, NAME),
    logger: log.logger,
    statusRequestAfterMs: STATUS_AFTER_MS,
    retryInitialMs: 100,
    retryMaxMs: 400,
  });

beforeAll(async () => {
  broker = await startTestBroker();
  db = await createTestDatabase('threephase');
  prefix = uniquePrefix('p3');
  await broker.createTopic(topics(prefix).coordinator, 2);
  await broker.createTopic(topics(prefix).participant(NAME), 2);
  await RecordingParticipant.createTable(db.ds);
  [coordinator, runtime] = await Promise.all([FakeCoordinator.start(broker, prefix), start()]);
});

afterAll(async () => {
  await runtime?.stop();
  await coordinator?.stop();
  await db?.drop();
  await broker?.stop();
});

async function preCommitted(deadlineInMs: number): Promise<{ txId: string; deadline: number }> {
  const txId = newTxId();
  const prepare = msg.prepare(txId, NAME, {}, { protocol: '3pc', deadlineInMs });
  await coordinator.send(prepare);
  expect((await coordinator.vote(txId)).vote).toBe('yes');
  await coordinator.send(msg.preCommit(txId, NAME));
  await coordinator.ack(txId, 'pre-commit');
  expect((await record(db.ds, txId, NAME))?.state).toBe('precommitted');
  return { txId, deadline: Date.parse((prepare as { deadline: string }).deadline) };
}

describe('3PC participant rules', () => {
  it('pre-committed, then silence: asks until its timeout, then commits on its own and acknowledges commit', async () => {
    const { txId, deadline } = await preCommitted(800);
    const ack = await coordinator.ack(txId, 'commit');
    const ackedAt = Date.now();
    // Not before its timeout: the prepare's deadline plus statusRequestAfterMs.
    expect(ackedAt).toBeGreaterThanOrEqual(deadline + STATUS_AFTER_MS);
    expect(ack).toMatchObject({ protocol: '3pc', participant: NAME });
    expect((await record(db.ds, txId, NAME))?.state).toBe('committed');
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, 'pre-commit': 1, commit: 1 });
    expect(log.lines.some((l) => l.txId === txId && /committing on its own/.test(String(l.msg)))).toBe(true);
    // The commit the coordinator sends later is acknowledged again, and changes nothing.
    await coordinator.send(msg.commit(txId, NAME, '3pc'));
    await coordinator.waitForCount((m) => m.txId === txId && m.type === 'ack' && m.of === 'commit', 2);
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, 'pre-commit': 1, commit: 1 });
  });

  it('prepared (voted yes, no pre-commit), then silence long past its timeout: never aborts on its own, only asks', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, {}, { protocol: '3pc', deadlineInMs: 300 }));
    expect((await coordinator.vote(txId)).vote).toBe('yes');
    await coordinator.waitForCount((m) => m.txId === txId && m.type === 'status-request', 4);
    await sleep(1000);
    expect((await record(db.ds, txId, NAME))?.state).toBe('prepared');
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1 });
    expect(coordinator.received.filter((m) => m.txId === txId && m.type === 'ack')).toEqual([]);
    // The answer finishes it.
    await coordinator.send(msg.abort(txId, NAME, 'timeout:prepare', '3pc'));
    await coordinator.ack(txId, 'abort');
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, abort: 1 });
  });

  it('refuses an abort after pre-commit (the commit decision was durable): not applied, not acknowledged, said loudly', async () => {
    const { txId } = await preCommitted(30_000);
    await coordinator.send(msg.abort(txId, NAME, 'bogus', '3pc'));
    const deadline = Date.now() + 10_000;
    while (!log.lines.some((l) => l.txId === txId && /PROTOCOL VIOLATION/.test(String(l.msg)))) {
      if (Date.now() > deadline) throw new Error('no PROTOCOL VIOLATION logged');
      await sleep(50);
    }
    expect((await record(db.ds, txId, NAME))?.state).toBe('precommitted');
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, 'pre-commit': 1 });
    expect(coordinator.received.filter((m) => m.txId === txId && m.type === 'ack' && m.of === 'abort')).toEqual([]);
    await coordinator.send(msg.commit(txId, NAME, '3pc'));
    await coordinator.ack(txId, 'commit');
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, 'pre-commit': 1, commit: 1 });
  });

  it('restarted while pre-committed and past its timeout: commits on its own right after start', async () => {
    const txId = newTxId();
    await coordinator.send(msg.prepare(txId, NAME, {}, { protocol: '3pc', deadlineInMs: 60_000 }));
    expect((await coordinator.vote(txId)).vote).toBe('yes');
    await coordinator.send(msg.preCommit(txId, NAME));
    await coordinator.ack(txId, 'pre-commit');
    await runtime.stop();
    // While it is down its deadline passes (moved into the past in its own record).
    await db.ds.query(`UPDATE tx_participant_log SET deadline = now() - interval '1 minute' WHERE tx_id = $1`, [txId]);
    runtime = await start();
    await coordinator.ack(txId, 'commit');
    expect((await record(db.ds, txId, NAME))?.state).toBe('committed');
    expect(await effects(db.ds, txId)).toEqual({ prepare: 1, 'pre-commit': 1, commit: 1 });
  });
});
