/**
 * The Kafka test broker (tools/kafka-test-broker) and KafkaTransport against it: real kafkajs
 * clients on the real Kafka protocol, served by librdkafka's mock cluster.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Consumer, Kafka, KafkaMessage, logLevel, Partitioners, Producer } from 'kafkajs';
import {
  encodeMessage,
  ERROR_HEADER,
  PrepareMessage,
  ProtocolMessage,
  sign,
  SIGNATURE_HEADER,
  topics,
  VoteMessage,
} from '../../libs/protocol';
import { Envelope, KafkaTransport, SOURCE_TOPIC_HEADER, TransportLogger } from '../../libs/transport';
import { KeyPartitioner, partitionOfKey } from '../../libs/transport/key-partitioner';
import { startTestBroker, TestBroker } from '../support/broker';

/** The mock broker's fetch long-poll always runs to the end: keep it short. */
const MAX_WAIT_MS = 5;

let broker: TestBroker;

beforeAll(async () => {
  broker = await startTestBroker();
});

afterAll(async () => {
  await broker?.stop();
});

describe('kafka test broker', () => {
  it('prints its bootstrap servers', () => {
    expect(broker.bootstrap).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(broker.brokers).toEqual([broker.bootstrap]);
  });

  it('creates topics and refuses to create one twice', async () => {
    const name = `t${randomBytes(4).toString('hex')}.created`;
    await broker.createTopic(name, 3);
    await expect(broker.createTopic(name, 3)).rejects.toThrow(/ERR .*TOPIC_ALREADY_EXISTS/);
  });

  it('takes a broker down and up, sets latency and pushes errors', async () => {
    await expect(broker.command('down 1')).resolves.toBe('OK');
    await expect(broker.command('up 1')).resolves.toBe('OK');
    await broker.rtt(1, 0);
    await broker.error(0, 6, 1); // Produce: NOT_LEADER_FOR_PARTITION once
    await broker.command('clear 0');
  });

  it('answers ERR to a bad command and goes on', async () => {
    await expect(broker.command('frobnicate')).rejects.toThrow(/ERR unknown command/);
    await expect(broker.command('down 2')).rejects.toThrow(/ERR usage/);
    await expect(broker.command('create only-a-name')).rejects.toThrow(/ERR usage/);
    await expect(broker.command('up 1')).resolves.toBe('OK');
  });

  it('runs a cluster of several brokers with ids from 1', async () => {
    const three = await startTestBroker({ brokers: 3 });
    try {
      expect(three.brokers).toHaveLength(3);
      await three.down(3);
      await three.up(3);
      await expect(three.down(4)).rejects.toThrow(/ERR/);
    } finally {
      await three.stop();
    }
    await three.stop(); // twice is fine
  });
});

// ---------------------------------------------------------------------------------------------

const prefixes: string[] = [];
function newPrefix(): string {
  const p = `t${randomBytes(4).toString('hex')}.`;
  prefixes.push(p);
  return p;
}

function prepare(txId: string, participant: string, payload: Record<string, unknown> = {}): PrepareMessage {
  const now = Date.now();
  return {
    v: 1,
    type: 'prepare',
    txId,
    participant,
    protocol: '2pc',
    sentAt: new Date(now).toISOString(),
    deadline: new Date(now + 30_000).toISOString(),
    payload,
  };
}

function vote(txId: string, participant: string, v: 'yes' | 'no'): VoteMessage {
  return { v: 1, type: 'vote', txId, participant, protocol: '2pc', sentAt: new Date().toISOString(), vote: v };
}

function collectingLogger(): TransportLogger & { lines: { level: string; obj: object; msg?: string }[] } {
  const lines: { level: string; obj: object; msg?: string }[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj, msg }),
  };
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

type Received = { message: ProtocolMessage; envelope: Envelope; at: number };

/** A coordinator-side and a participant-side transport on one prefix, plus raw clients to poke them. */
class Rig {
  readonly prefix = newPrefix();
  readonly t = topics(this.prefix);
  readonly coordinatorLog = collectingLogger();
  readonly participantLog = collectingLogger();
  readonly atCoordinator: Received[] = [];
  readonly atParticipant: Received[] = [];
  readonly deadLetters: KafkaMessage[] = [];
  /** Participant-side hook: may throw to refuse a message, may answer it. */
  onParticipant: (m: ProtocolMessage) => Promise<void> = async () => undefined;
  coordinator!: KafkaTransport;
  participant!: KafkaTransport;
  rawProducer!: Producer;
  dltConsumer!: Consumer;

  constructor(private readonly secret?: string) {}

  async start(): Promise<void> {
    const common = {
      brokers: broker.brokers,
      topicPrefix: this.prefix,
      secret: this.secret,
      maxWaitTimeInMs: MAX_WAIT_MS,
      redeliveryDelayMs: 20,
    };
    this.coordinator = new KafkaTransport({
      ...common,
      clientId: 'coordinator',
      groupId: `${this.prefix}coordinator`,
      listenTopic: this.t.coordinator,
      logger: this.coordinatorLog,
    });
    this.participant = new KafkaTransport({
      ...common,
      clientId: 'inventory',
      groupId: `${this.prefix}participant.inventory`,
      listenTopic: this.t.participant('inventory'),
      logger: this.participantLog,
    });
    const kafka = new Kafka({ clientId: 'raw', brokers: broker.brokers, logLevel: logLevel.NOTHING });
    this.rawProducer = kafka.producer({
      allowAutoTopicCreation: true,
      idempotent: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    this.dltConsumer = kafka.consumer({ groupId: `${this.prefix}dlt-reader`, maxWaitTimeInMs: MAX_WAIT_MS });
    const dltJoined = new Promise<void>((resolve) => this.dltConsumer.on(this.dltConsumer.events.GROUP_JOIN, () => resolve()));

    await Promise.all([
      this.coordinator.start(async (message, envelope) => {
        this.atCoordinator.push({ message, envelope, at: Date.now() });
      }),
      this.participant.start(async (message, envelope) => {
        await this.onParticipant(message);
        this.atParticipant.push({ message, envelope, at: Date.now() });
      }),
      this.rawProducer.connect(),
      (async () => {
        await this.dltConsumer.connect();
        await this.dltConsumer.subscribe({ topics: [this.t.deadLetter], fromBeginning: true });
        await this.dltConsumer.run({
          eachMessage: async ({ message }) => {
            this.deadLetters.push(message);
          },
        });
        await dltJoined;
      })(),
    ]);
  }

  async stop(): Promise<void> {
    await Promise.all([
      this.coordinator?.stop(),
      this.participant?.stop(),
      this.rawProducer?.disconnect(),
      this.dltConsumer?.disconnect(),
    ]);
  }
}

const latencies: { what: string; ms: number }[] = [];

afterAll(() => {
  if (latencies.length) {
    // Informational: end-to-end latency on the mock broker with maxWaitTimeInMs = MAX_WAIT_MS.
    console.log(latencies.map((l) => `${l.what}: ${l.ms} ms`).join('\n'));
  }
});

describe('KafkaTransport without a secret', () => {
  const rig = new Rig();
  beforeAll(() => rig.start());
  afterAll(() => rig.stop());

  it('carries a prepare to the participant and its vote back', async () => {
    rig.onParticipant = async (m) => {
      if (m.type === 'prepare') await rig.participant.send([vote(m.txId, m.participant, 'yes')]);
    };
    const txId = randomUUID();
    const sentAt = Date.now();
    await rig.coordinator.send([prepare(txId, 'inventory', { sku: 'A1', qty: 2 })]);
    await waitFor('the vote', () => rig.atCoordinator.some((r) => r.message.txId === txId));

    const atP = rig.atParticipant.find((r) => r.message.txId === txId)!;
    expect(atP.message).toMatchObject({ type: 'prepare', participant: 'inventory', payload: { sku: 'A1', qty: 2 } });
    expect(atP.envelope).toMatchObject({ topic: rig.t.participant('inventory'), key: txId });
    expect(atP.envelope.headers[SIGNATURE_HEADER]).toBeUndefined();
    const atC = rig.atCoordinator.find((r) => r.message.txId === txId)!;
    expect(atC.message).toMatchObject({ type: 'vote', vote: 'yes', participant: 'inventory' });
    expect(atC.envelope).toMatchObject({ topic: rig.t.coordinator, key: txId });

    latencies.push({ what: 'first message, send() call to handler (one way)', ms: atP.at - sentAt });
    latencies.push({ what: 'first prepare -> vote round trip', ms: atC.at - sentAt });
  });

  it('delivers one message end to end in a few milliseconds (measured, not asserted)', async () => {
    rig.onParticipant = async () => undefined;
    const samples: number[] = [];
    for (let i = 0; i < 20; i++) {
      const txId = randomUUID();
      const sentAt = Date.now();
      await rig.coordinator.send([prepare(txId, 'inventory')]);
      await waitFor('the prepare', () => rig.atParticipant.some((r) => r.message.txId === txId));
      samples.push(rig.atParticipant.find((r) => r.message.txId === txId)!.at - sentAt);
    }
    samples.sort((a, b) => a - b);
    latencies.push({ what: 'one way, median of 20', ms: samples[10] });
    latencies.push({ what: 'one way, max of 20', ms: samples[19] });
  });

  it('keeps one transaction’s messages in order', async () => {
    rig.onParticipant = async () => undefined;
    const txId = randomUUID();
    for (let i = 0; i < 10; i++) await rig.coordinator.send([prepare(txId, 'inventory', { seq: i })]);
    await rig.coordinator.send(Array.from({ length: 10 }, (_, i) => prepare(txId, 'inventory', { seq: 10 + i })));
    // Other transactions interleaved in the same batch must not disturb it.
    await rig.coordinator.send([
      prepare(randomUUID(), 'inventory'),
      prepare(txId, 'inventory', { seq: 20 }),
      prepare(randomUUID(), 'inventory'),
    ]);
    const seqs = () =>
      rig.atParticipant
        .filter((r) => r.message.txId === txId)
        .map((r) => (r.message as PrepareMessage).payload.seq as number);
    await waitFor('21 messages', () => seqs().length >= 21);
    expect(seqs()).toEqual(Array.from({ length: 21 }, (_, i) => i));
  });

  it('redelivers a message whose handler threw, before the later ones of its transaction', async () => {
    const txId = randomUUID();
    const attempts: number[] = [];
    let failuresLeft = 2;
    rig.onParticipant = async (m) => {
      if (m.txId !== txId) return;
      const seq = (m as PrepareMessage).payload.seq as number;
      attempts.push(seq);
      if (seq === 0 && failuresLeft-- > 0) throw new Error('database unavailable');
    };
    await rig.coordinator.send([prepare(txId, 'inventory', { seq: 0 }), prepare(txId, 'inventory', { seq: 1 })]);
    const handled = () =>
      rig.atParticipant.filter((r) => r.message.txId === txId).map((r) => (r.message as PrepareMessage).payload.seq);
    await waitFor('both messages handled', () => handled().length >= 2);
    expect(handled()).toEqual([0, 1]);
    expect(attempts).toEqual([0, 0, 0, 1]);
    expect(rig.participantLog.lines.some((l) => l.level === 'error' && /redelivered/.test(l.msg ?? ''))).toBe(true);
  });

  it('dead-letters a value that is not JSON and one of an unknown version, and goes on', async () => {
    rig.onParticipant = async () => undefined;
    const topic = rig.t.participant('inventory');
    const v2 = { ...prepare(randomUUID(), 'inventory'), v: 2 };
    await rig.rawProducer.send({
      topic,
      messages: [
        { key: 'k-not-json', value: 'this is not json', headers: { 'x-trace': 'abc' } },
        { key: v2.txId, value: JSON.stringify(v2) },
      ],
    });
    const good = randomUUID();
    await rig.coordinator.send([prepare(good, 'inventory')]);

    await waitFor('the good message', () => rig.atParticipant.some((r) => r.message.txId === good));
    await waitFor('two dead letters', () => rig.deadLetters.length >= 2);
    const byKey = new Map(rig.deadLetters.map((m) => [m.key?.toString(), m]));
    const notJson = byKey.get('k-not-json')!;
    expect(notJson.value?.toString()).toBe('this is not json');
    expect(notJson.headers?.[ERROR_HEADER]?.toString()).toBe('value is not JSON');
    expect(notJson.headers?.[SOURCE_TOPIC_HEADER]?.toString()).toBe(topic);
    expect(notJson.headers?.['x-trace']?.toString()).toBe('abc');
    const unknownVersion = byKey.get(v2.txId)!;
    expect(unknownVersion.value?.toString()).toBe(JSON.stringify(v2));
    expect(unknownVersion.headers?.[ERROR_HEADER]?.toString()).toMatch(/unknown protocol version v=2/);
    expect(rig.atParticipant.some((r) => r.message.txId === v2.txId)).toBe(false);
  });
});

describe('KafkaTransport with a secret', () => {
  const secret = 'test-secret-' + randomBytes(8).toString('hex');
  const rig = new Rig(secret);
  beforeAll(() => rig.start());
  afterAll(() => rig.stop());

  it('signs what it sends and accepts what is signed', async () => {
    rig.onParticipant = async (m) => {
      if (m.type === 'prepare') await rig.participant.send([vote(m.txId, m.participant, 'no')]);
    };
    const txId = randomUUID();
    await rig.coordinator.send([prepare(txId, 'inventory')]);
    await waitFor('the vote', () => rig.atCoordinator.some((r) => r.message.txId === txId));
    const atP = rig.atParticipant.find((r) => r.message.txId === txId)!;
    expect(atP.envelope.headers[SIGNATURE_HEADER]).toBe(sign(atP.envelope.value!, secret));
    expect(rig.atCoordinator.find((r) => r.message.txId === txId)!.message).toMatchObject({ type: 'vote', vote: 'no' });
  });

  it('dead-letters unsigned and badly signed messages and still delivers the next good one', async () => {
    rig.onParticipant = async () => undefined;
    const topic = rig.t.participant('inventory');
    const unsigned = prepare(randomUUID(), 'inventory');
    const forged = prepare(randomUUID(), 'inventory');
    const otherSecret = prepare(randomUUID(), 'inventory');
    const goodRaw = prepare(randomUUID(), 'inventory');
    const goodRawValue = encodeMessage(goodRaw);
    await rig.rawProducer.send({
      topic,
      messages: [
        { key: unsigned.txId, value: encodeMessage(unsigned) },
        { key: forged.txId, value: encodeMessage(forged), headers: { [SIGNATURE_HEADER]: 'not-hex' } },
        {
          key: otherSecret.txId,
          value: encodeMessage(otherSecret),
          headers: { [SIGNATURE_HEADER]: sign(encodeMessage(otherSecret), 'another secret') },
        },
        { key: goodRaw.txId, value: goodRawValue, headers: { [SIGNATURE_HEADER]: sign(goodRawValue, secret) } },
      ],
    });
    const good = randomUUID();
    await rig.coordinator.send([prepare(good, 'inventory')]);

    await waitFor('the good messages', () =>
      [good, goodRaw.txId].every((id) => rig.atParticipant.some((r) => r.message.txId === id)),
    );
    await waitFor('three dead letters', () => rig.deadLetters.length >= 3);
    const errorOf = (txId: string) =>
      rig.deadLetters.find((m) => m.key?.toString() === txId)?.headers?.[ERROR_HEADER]?.toString();
    expect(errorOf(unsigned.txId)).toBe('missing signature');
    expect(errorOf(forged.txId)).toBe('bad signature');
    expect(errorOf(otherSecret.txId)).toBe('bad signature');
    expect(
      rig.deadLetters.every((m) => m.headers?.[SOURCE_TOPIC_HEADER]?.toString() === topic),
    ).toBe(true);
    for (const id of [unsigned.txId, forged.txId, otherSecret.txId]) {
      expect(rig.atParticipant.some((r) => r.message.txId === id)).toBe(false);
    }
  });
});

describe('KafkaTransport readiness and an unreachable broker', () => {
  let own: TestBroker;
  let coordinator: KafkaTransport;
  let participant: KafkaTransport;
  const received: string[] = [];

  beforeAll(async () => {
    own = await startTestBroker();
    const prefix = newPrefix();
    const common = { brokers: own.brokers, topicPrefix: prefix, maxWaitTimeInMs: MAX_WAIT_MS };
    coordinator = new KafkaTransport({
      ...common,
      clientId: 'coordinator',
      groupId: `${prefix}coordinator`,
      listenTopic: topics(prefix).coordinator,
      logger: collectingLogger(),
    });
    participant = new KafkaTransport({
      ...common,
      clientId: 'inventory',
      groupId: `${prefix}participant.inventory`,
      listenTopic: topics(prefix).participant('inventory'),
      logger: collectingLogger(),
    });
    await participant.start(async (m) => {
      received.push(m.txId);
    });
  });

  afterAll(async () => {
    await Promise.all([coordinator?.stop(), participant?.stop()]);
    await coordinator?.stop(); // twice is fine
    await own?.stop();
  });

  it('check() resolves while the broker is up', async () => {
    await expect(coordinator.check()).resolves.toBeUndefined();
    await expect(participant.check()).resolves.toBeUndefined();
  });

  it('check() and send() reject within seconds once the only broker is down, and all recovers after up', async () => {
    const before = randomUUID();
    await coordinator.send([prepare(before, 'inventory')]);
    await waitFor('a message before the outage', () => received.includes(before));

    await own.down(1);
    // A produce that succeeded within the last second answers check() without asking the broker;
    // past that, check() asks and fails.
    await new Promise((r) => setTimeout(r, 1100));
    let t = Date.now();
    await expect(coordinator.check()).rejects.toThrow();
    latencies.push({ what: 'check() rejection with the broker down', ms: Date.now() - t });
    t = Date.now();
    await expect(coordinator.send([prepare(randomUUID(), 'inventory')])).rejects.toThrow();
    latencies.push({ what: 'send() rejection with the broker down', ms: Date.now() - t });

    await own.up(1);
    t = Date.now();
    for (;;) {
      try {
        await coordinator.check();
        break;
      } catch (err) {
        if (Date.now() - t > 15_000) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const after = randomUUID();
    await coordinator.send([prepare(after, 'inventory')]);
    latencies.push({ what: 'check() and send() working again after up', ms: Date.now() - t });
    // The participant's consumer rode out the outage (same group member, no rebalance wait).
    await waitFor('a message after the outage', () => received.includes(after), 20_000);
    latencies.push({ what: 'consumer receiving again after up', ms: Date.now() - t });
  });
});

/** A coordinator-side transport of its own, on the prefix's coordinator topic. */
function coordinatorTransport(prefix: string): KafkaTransport {
  return new KafkaTransport({
    brokers: broker.brokers,
    topicPrefix: prefix,
    maxWaitTimeInMs: MAX_WAIT_MS,
    clientId: 'coordinator',
    groupId: `${prefix}coordinator`,
    listenTopic: topics(prefix).coordinator,
  });
}

describe('KafkaTransport receiving()', () => {
  it('is false until the consumer has joined its group, true while in it, false after stop', async () => {
    const transport = coordinatorTransport(newPrefix());
    expect(transport.receiving()).toBe(false);
    const started = transport.start(async () => undefined);
    expect(transport.receiving()).toBe(false);
    await started;
    expect(transport.receiving()).toBe(true);
    await transport.stop();
    expect(transport.receiving()).toBe(false);
  });
});

describe('KafkaTransport backlog(key)', () => {
  it('is the lag of the partition where that key arrives, as of its last fetch', async () => {
    const prefix = newPrefix();
    const t = topics(prefix);
    await broker.createTopic(t.coordinator, 4);
    const slow = randomUUID();
    let other = randomUUID();
    while (partitionOfKey(other, 4) === partitionOfKey(slow, 4)) other = randomUUID();
    const kafka = new Kafka({ clientId: 'raw', brokers: broker.brokers, logLevel: logLevel.NOTHING });
    const producer = kafka.producer({ createPartitioner: KeyPartitioner });
    await producer.connect();
    // Six answers of one transaction, each in its own produce request: the test broker hands over
    // one such record batch per partition per fetch, so five wait behind the first.
    for (let i = 1; i <= 6; i++) {
      await producer.send({ topic: t.coordinator, acks: -1, messages: [{ key: slow, value: encodeMessage(vote(slow, `p${i}`, 'yes')) }] });
    }
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const seen: string[] = [];
    const transport = coordinatorTransport(prefix);
    try {
      expect(transport.backlog(slow)).toBe(0);
      // The second answer is held, so the lag read with the first batch stays the last known.
      await transport.start(async (m) => {
        seen.push(m.participant);
        if (m.participant === 'p2') await gate;
      });
      await waitFor('the second answer', () => seen.length === 2);
      await waitFor('the lag of its partition', () => transport.backlog(slow) === 5);
      expect(transport.backlog(other)).toBe(0);
      release();
      await waitFor('every answer', () => seen.length === 6);
      await waitFor('no backlog', () => transport.backlog(slow) === 0);
    } finally {
      release();
      await transport.stop();
      await producer.disconnect();
    }
  });
});
