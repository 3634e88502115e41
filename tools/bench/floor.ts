/**
 * What the coordinator is measured against, on the same broker and database with the same client
 * settings:
 *
 * - Kafka round trip: produce, consume, produce back, consume (plain kafkajs), p50 at concurrency 1.
 * - Postgres commit: one row inserted and committed, p50 at concurrency 1.
 * - Bare ceiling: the message pattern of a transaction (prepare → vote, [pre-commit → ack,]
 *   decision → ack, to and from each participant) moved by plain kafkajs code with no
 *   coordinator logic and no log; each participant is its own process, as in the real system.
 *   Both sides batch as plain kafkajs code would: what is sent in one event-loop turn goes in one
 *   produce request, and each fetched batch is answered with one.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Consumer, Kafka, logLevel, Message, Producer } from 'kafkajs';
import { Client } from 'pg';
import { COMMIT_INTERVAL_MS } from '../../libs/transport/kafka-transport';
import { KeyPartitioner } from '../../libs/transport/key-partitioner';
import { ManagedProcess } from '../support/processes';
import { cpuPercents, cpuSeconds, latency, Latency, percentile, runQueueSeconds } from './stats';

export interface CeilingResult {
  tps: number;
  latency: Latency;
}

export interface BareSettings {
  bootstrap: string;
  maxWaitMs: number;
  logDir: string;
  /** Creates a topic with the benchmark's partition count (before anything uses it). */
  createTopic: (topic: string) => Promise<void>;
  /** `--watch`: every `everyS` seconds, transactions per second in the window and the CPU of the broker, the echoes and this process. */
  watch?: { everyS: number; brokerPid: number; say: (line: string) => void };
}

/**
 * Runs `rounds` message rounds per transaction against `participants` echo processes, with
 * `concurrency` transactions in flight, for `durationMs` (after a warm-up).
 */
export async function bareRounds(
  s: BareSettings,
  o: { participants: number; rounds: number; concurrency: number; durationMs: number; warmupMs: number },
): Promise<CeilingResult> {
  const prefix = `bare${randomUUID().slice(0, 8)}.`;
  const replyTopic = `${prefix}coordinator`;
  const names = Array.from({ length: o.participants }, (_, i) => `p${i + 1}`);
  for (const topic of [replyTopic, ...names.map((n) => `${prefix}participant.${n}`)]) await s.createTopic(topic);
  const kafka = new Kafka({ clientId: 'bench-bare', brokers: s.bootstrap.split(','), logLevel: logLevel.NOTHING });
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: true, createPartitioner: KeyPartitioner });
  await producer.connect();
  await producer.send({ topic: replyTopic, acks: -1, messages: [{ key: 'setup', value: '{"type":"setup"}' }] });

  const echoes = names.map(
    (name) =>
      new ManagedProcess(`echo-${name}`, 'tools/bench/echo.js', [s.bootstrap, `${prefix}participant.${name}`, replyTopic, String(s.maxWaitMs)], {}, join(s.logDir, `echo-${name}.log`), (_p, seen) => seen(/echo ready/)),
  );
  await Promise.all(echoes.map((e) => e.start()));

  // Each transaction in flight waits for the replies of its current round.
  const waiting = new Map<string, { left: number; done: () => void }>();
  const consumer: Consumer = kafka.consumer({ groupId: `${prefix}coordinator`, maxWaitTimeInMs: s.maxWaitMs, sessionTimeout: 6000 });
  await consumer.connect();
  await consumer.subscribe({ topic: replyTopic, fromBeginning: false });
  await consumer.run({
    partitionsConsumedConcurrently: 4,
    // Offsets committed as the system's consumers commit them: at most once a second.
    autoCommit: false,
    autoCommitInterval: COMMIT_INTERVAL_MS,
    eachBatch: async ({ batch, commitOffsetsIfNecessary }) => {
      for (const message of batch.messages) {
        const m = JSON.parse(String(message.value)) as { txId?: string };
        const w = m.txId ? waiting.get(m.txId) : undefined;
        if (w && --w.left === 0) w.done();
      }
      await commitOffsetsIfNecessary();
    },
  });

  const types = o.rounds === 3 ? ['prepare', 'pre-commit', 'commit'] : o.rounds === 2 ? ['prepare', 'commit'] : ['prepare'];
  // Messages sent in one turn of the event loop go out in one produce request (plain batching).
  let outbox: { topic: string; messages: Message[] }[] = [];
  let flushed: Promise<void> | null = null;
  const send = (batch: { topic: string; messages: Message[] }[]) => {
    outbox.push(...batch);
    flushed ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const topicMessages = outbox;
      outbox = [];
      flushed = null;
      await producer.sendBatch({ acks: -1, topicMessages });
    });
    return flushed;
  };
  const transaction = async (): Promise<void> => {
    const txId = randomUUID();
    for (const type of types) {
      const replies = new Promise<void>((done) => waiting.set(txId, { left: names.length, done }));
      const sentAt = new Date().toISOString();
      await send(
        names.map((name) => ({
          topic: `${prefix}participant.${name}`,
          messages: [{ key: txId, value: JSON.stringify({ v: 1, type, txId, participant: name, protocol: '2pc', sentAt }) }],
        })),
      );
      await withTimeout(replies, 30_000, `no replies to ${type} within 30 s`);
    }
    waiting.delete(txId);
  };

  let finished = 0;
  const watching = s.watch ? watchRounds(s.watch, echoes.map((e) => e.pid!), () => finished) : undefined;
  try {
    // Until every echo consumer has joined its group, the first transactions wait.
    await withTimeout(transaction(), 60_000, 'the bare ceiling did not start');
    const latencies: number[] = [];
    const measureFrom = Date.now() + o.warmupMs;
    const end = measureFrom + o.durationMs;
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (Date.now() < end) {
          const t0 = performance.now();
          const started = Date.now();
          await transaction();
          finished++;
          if (started >= measureFrom) latencies.push(performance.now() - t0);
        }
      }),
    );
    const seconds = (Date.now() - measureFrom) / 1000;
    return { tps: latencies.length / seconds, latency: latency(latencies) };
  } finally {
    if (watching) clearInterval(watching);
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await Promise.all(echoes.map((e) => e.stop()));
  }
}

/** The bare pattern's `--watch` line: what a long run of the ceiling does over time, with no coordinator in it (the echoes' figures are their sums). */
function watchRounds(w: NonNullable<BareSettings['watch']>, echoPids: number[], finished: () => number): NodeJS.Timeout {
  const cpu = () => {
    const own = process.cpuUsage();
    return new Map([
      ['broker', cpuSeconds(w.brokerPid)],
      ['echoes', echoPids.reduce((a, pid) => a + cpuSeconds(pid), 0)],
      ['bench', (own.user + own.system) / 1e6],
    ]);
  };
  const waits = () =>
    new Map([
      ['echoes', echoPids.reduce((a, pid) => a + runQueueSeconds(pid), 0)],
      ['bench', runQueueSeconds(process.pid)],
    ]);
  const started = Date.now();
  let last = { at: started, done: finished(), cpu: cpu(), waits: waits() };
  return setInterval(() => {
    try {
      const now = { at: Date.now(), done: finished(), cpu: cpu(), waits: waits() };
      const s = (now.at - last.at) / 1000;
      w.say(`      at ${String(Math.round((now.at - started) / 1000)).padStart(4)} s: ${((now.done - last.done) / s).toFixed(0)} tx/s; cpu % ${cpuPercents(last.cpu, now.cpu, s).join(', ')}; waiting for a core % ${cpuPercents(last.waits, now.waits, s).join(', ')}`);
      last = now;
    } catch (err) {
      w.say(`      watch: ${(err as Error).message}`);
    }
  }, w.everyS * 1000);
}

/** p50 of a Kafka round trip (produce, consume, produce back, consume) at concurrency 1. */
export async function kafkaRoundTrip(s: BareSettings, durationMs: number): Promise<Latency> {
  const r = await bareRounds(s, { participants: 1, rounds: 1, concurrency: 1, durationMs, warmupMs: 1000 });
  return r.latency;
}

/** p50 of committing one inserted row (autocommit: one round trip, one WAL flush). */
export async function postgresCommit(databaseUrl: string, samples: number): Promise<number> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, tx_id uuid NOT NULL, at timestamptz NOT NULL)');
    const times: number[] = [];
    for (let i = 0; i < samples + 20; i++) {
      const t0 = performance.now();
      await client.query('INSERT INTO bench_floor (tx_id, at) VALUES ($1, now())', [randomUUID()]);
      if (i >= 20) times.push(performance.now() - t0);
    }
    return percentile(times, 50);
  } finally {
    await client.end();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]).finally(() => clearTimeout(timer));
}
