import {
  Admin,
  Consumer,
  EachBatchPayload,
  IHeaders,
  Kafka,
  KafkaMessage,
  logLevel,
  LogEntry,
  Message,
  Producer,
  SASLOptions,
} from 'kafkajs';
import {
  decodeMessage,
  encodeMessage,
  ERROR_HEADER,
  isForParticipant,
  ProtocolMessage,
  sign,
  SIGNATURE_HEADER,
  topics,
  Topics,
} from '../protocol';
import { Batcher } from '../concurrency/batcher';
import { Breaker, BreakerSettings, breakerSettingsFromEnv } from '../resilience/breaker';
import { KeyPartitioner, partitionOfKey } from './key-partitioner';
import { Envelope, MessageHandler, MessageTransport } from './transport';

/** Headers added to a dead-lettered message next to `tx-error`: where it was read from. */
export const SOURCE_TOPIC_HEADER = 'tx-source-topic';
export const SOURCE_PARTITION_HEADER = 'tx-source-partition';
export const SOURCE_OFFSET_HEADER = 'tx-source-offset';

export interface TransportLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface KafkaTransportOptions {
  /** Bootstrap servers, "host:port". */
  brokers: string[];
  clientId: string;
  /** Consumer group of this process's role (all coordinator replicas share one; one per participant service). */
  groupId: string;
  /** The topic this process consumes: `topics(prefix).coordinator` or `topics(prefix).participant(name)`. */
  listenTopic: string;
  /** TX_TOPIC_PREFIX, used to route outgoing messages and to name the dead-letter topic. */
  topicPrefix: string;
  /** TX_MESSAGE_SECRET: sign outgoing messages and reject unsigned or badly signed incoming ones. */
  secret?: string;
  /**
   * Fetch long-poll. Real Kafka answers a fetch as soon as data arrives, so the default (1000 ms)
   * only bounds idle polling. librdkafka's mock broker always waits the full time: use a few ms there.
   */
  maxWaitTimeInMs?: number;
  logger?: TransportLogger;
  ssl?: boolean;
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
  /**
   * Consumer session timeout (default 30000). When a second member joins a running group, the
   * mock broker waits this long minus 1 s for the rebalance; tests with several members of one
   * group want 6000 or so.
   */
  sessionTimeoutMs?: number;
  /** Consumer heartbeat interval (default 3000, at most a third of the session timeout). */
  heartbeatIntervalMs?: number;
  /** First pause of a partition whose handler failed, before its messages are redelivered; doubles up to 10 s (default 500). */
  redeliveryDelayMs?: number;
  /** Partitions handled at once (default 4); each partition's messages stay in order. */
  partitionsConsumedConcurrently?: number;
  /** How long start() may take to connect and join the group before it gives up (default 30000). */
  startTimeoutMs?: number;
  /** How long stop() waits for each client to disconnect (default 5000). */
  stopTimeoutMs?: number;
  /** How long check() waits for the broker (default 3000). */
  checkTimeoutMs?: number;
  /**
   * Circuit breaker around producing (libs/resilience/breaker.ts): after repeated failures send()
   * fails at once instead of waiting out kafkajs's retries, until a probe succeeds. Default: the
   * TX_BREAKER_* variables, else their defaults; false: none.
   */
  breaker?: BreakerSettings | false;
}

const MAX_REDELIVERY_DELAY_MS = 10_000;
/**
 * How long a partition's lag, read with its last fetched batch, stays known. A partition being
 * read is fetched many times a second, however far behind it is; one not fetched for this long is
 * paused or no longer assigned here, and its last lag says nothing.
 */
const LAG_KNOWN_FOR_MS = 5000;
/**
 * Handled messages' offsets are committed at most this often (and by the batch in hand when the
 * consumer stops), not after every batch: kafkajs waits for a commit before its next fetch, so a
 * commit per batch put one more broker round trip into every fetch cycle, and a request per
 * partition batch into the broker's load. A crash, a rebalance, or a stop between batches
 * redelivers what was handled since the last commit (as with Kafka's own clients, which commit
 * every 5 s by default); every receiver takes duplicates (delivery is at least once, CONTRACT
 * section 3).
 */
export const COMMIT_INTERVAL_MS = 1000;

type Decoded =
  | { index: number; envelope: Envelope; ok: true; message: ProtocolMessage }
  | { index: number; envelope: Envelope; ok: false; error: string; raw: KafkaMessage };

/** One produce request carries at most this many sends, and about this many bytes of values. */
const MAX_BATCH_SENDS = 1000;
const MAX_BATCH_BYTES = 512 * 1024;

interface OutgoingMessage {
  topic: string;
  message: Message;
  bytes: number;
}

/**
 * The protocol over Kafka (CONTRACT section 3), on kafkajs directly: the raw value bytes are needed
 * for HMAC verification and for dead-lettering, which @nestjs/microservices would hide.
 *
 * Sending: every message is keyed by its txId (so one transaction stays on one partition, in
 * order), signed when a secret is set, and routed by type. Concurrent send()s are coalesced into
 * one produce request (see outbox); each resolves when the broker has acknowledged every one of
 * its messages (acks=all). The producer is not
 * idempotent (librdkafka's mock cluster cannot do it) so a retried produce can duplicate a
 * message: receivers are idempotent anyway. Messages for one transaction keep their order as long
 * as the caller awaits one send() before the next.
 *
 * Receiving is at least once. See onBatch() for the redelivery rules.
 */
export class KafkaTransport implements MessageTransport {
  private readonly kafka: Kafka;
  private readonly consumerKafka: Kafka;
  private readonly topics: Topics;
  private readonly logger: TransportLogger;
  private readonly heartbeatIntervalMs: number;
  private readonly redeliveryDelayMs: number;

  private producerConnecting?: Promise<Producer>;
  private adminConnecting?: Promise<Admin>;
  private consumer?: Consumer;
  private starting = false;
  private stopping?: Promise<void>;

  private readonly producerBreaker: Breaker | null;
  /** Per partition of the listen topic read here: messages after its last fetched batch, and when (see backlog). */
  private readonly lags = new Map<number, { lag: number; at: number }>();
  /** Partitions of the listen topic, read when the consumer joins its group (0: not known yet). */
  private listenPartitions = 0;
  /** The consumer is a member of its group with partitions assigned (see receiving). */
  private inGroup = false;
  /** Fetches of the listen topic and the messages they brought (see inboxReads). */
  private readonly reads = { fetches: 0, messages: 0 };
  /**
   * Coalescing (Nagle for produce requests): with no produce under way a send goes out at once;
   * sends that come while one is under way wait for it and then go out together in one produce
   * request. Under load that turns many small requests into few large record batches (one per
   * partition), at no cost to an idle system. Each caller still resolves only when the broker has
   * acknowledged its messages; a failed request rejects every send in it. One request at a time,
   * in order: a transaction's messages keep theirs.
   */
  private readonly outbox = new Batcher((sends: OutgoingMessage[][]) => this.produce(sends), {
    maxInFlight: 1,
    maxItems: MAX_BATCH_SENDS,
    weigh: (send) => send.reduce((n, m) => n + m.bytes, 0),
    maxWeight: MAX_BATCH_BYTES,
  });

  /** Consecutive handler failures per partition of the listen topic, for the redelivery backoff. */
  private readonly failures = new Map<number, number>();
  private readonly resumeTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: KafkaTransportOptions) {
    if (!opts.brokers?.length) throw new Error('KafkaTransport: brokers must not be empty');
    if (!opts.listenTopic) throw new Error('KafkaTransport: listenTopic is required');
    if (!opts.groupId) throw new Error('KafkaTransport: groupId is required');
    this.topics = topics(opts.topicPrefix);
    this.logger = opts.logger ?? silentLogger;
    const sessionTimeout = opts.sessionTimeoutMs ?? 30_000;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? Math.min(3000, Math.floor(sessionTimeout / 3));
    this.redeliveryDelayMs = opts.redeliveryDelayMs ?? 500;
    this.producerBreaker = opts.breaker === false ? null
      : new Breaker('kafka-producer', opts.breaker ?? breakerSettingsFromEnv(), () => !this.stopping, this.logger);

    const client = {
      clientId: opts.clientId,
      brokers: opts.brokers,
      ssl: opts.ssl,
      sasl: opts.sasl as SASLOptions | undefined,
      connectionTimeout: 3000,
      requestTimeout: 10_000,
      // kafkajs logs every connection error at ERROR; they are symptoms that callers see as
      // rejected sends and failed checks, so they go to the given logger at warn.
      logLevel: opts.logger ? logLevel.WARN : logLevel.NOTHING,
      logCreator: () => (entry: LogEntry) => this.logKafkajs(entry),
    };
    // Producer and admin: modest retries, so that with the broker down send() and check() fail
    // within a few seconds and the callers' own retry and backoff take over.
    this.kafka = new Kafka({ ...client, retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 3 } });
    // Consumer: patient retries (about 15 s), so that it rides out a short broker outage without
    // crashing and is consuming again within a second or two of the broker's return. After a
    // longer outage it crashes and kafkajs restarts it, but as a new group member: the broker then
    // holds the rebalance until the old member's session has timed out (sessionTimeoutMs).
    this.consumerKafka = new Kafka({ ...client, retry: { initialRetryTime: 300, maxRetryTime: 2000, retries: 10 } });
  }

  async start(handler: MessageHandler): Promise<void> {
    if (this.stopping) throw new Error('KafkaTransport: stopped');
    if (this.starting || this.consumer) throw new Error('KafkaTransport: already started');
    this.starting = true;
    const { groupId, listenTopic } = this.opts;
    const sessionTimeout = this.opts.sessionTimeoutMs ?? 30_000;
    const consumer = (this.consumer = this.consumerKafka.consumer({
      groupId,
      allowAutoTopicCreation: true,
      maxWaitTimeInMs: this.opts.maxWaitTimeInMs ?? 1000,
      sessionTimeout,
      rebalanceTimeout: Math.max(sessionTimeout, 10_000),
      heartbeatInterval: this.heartbeatIntervalMs,
      // A consumer that exhausts its retries crashes and kafkajs restarts it (restartOnFailure).
      retry: { restartOnFailure: async () => true },
    }));

    let joinedOnce = false;
    let onFirstJoin: (() => void) | undefined;
    let onFatal: ((err: Error) => void) | undefined;
    const joined = new Promise<void>((resolve, reject) => {
      onFirstJoin = resolve;
      onFatal = reject;
    });
    joined.catch(() => undefined); // awaited in begin(); must not be an unhandled rejection if begin() gave up first
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const { memberId, isLeader, memberAssignment } = e.payload;
      this.logger.info({ groupId, memberId, isLeader, memberAssignment }, 'kafka consumer joined its group');
      this.lags.clear(); // the assignment may have changed: lags are known again after the next fetch
      void this.connectedAdmin()
        .then((admin) => admin.fetchTopicMetadata({ topics: [listenTopic] }))
        .then(({ topics: [t] }) => (this.listenPartitions = t?.partitions.length ?? 0))
        .catch(() => undefined); // backlog() says 0 until known
      this.inGroup = true;
      joinedOnce = true;
      onFirstJoin?.();
    });
    consumer.on(consumer.events.FETCH, () => this.reads.fetches++);
    const leftGroup = () => (this.inGroup = false);
    consumer.on(consumer.events.REBALANCING, leftGroup);
    consumer.on(consumer.events.STOP, leftGroup);
    consumer.on(consumer.events.CRASH, (e) => {
      leftGroup();
      const { error, restart } = e.payload;
      this.logger.error({ groupId, err: error, restart }, 'kafka consumer crashed');
      if (!restart && !joinedOnce) onFatal?.(error);
    });

    let abandoned = false;
    const step = () => {
      if (abandoned || this.stopping) throw new Error('KafkaTransport: start abandoned');
    };
    const begin = async () => {
      await consumer.connect();
      step();
      // fromBeginning only applies to partitions without a committed offset, that is to a new
      // group: it then reads from the start of the topic, so nothing produced between the topic's
      // creation (here, by this subscribe) and the group join is lost. An existing group goes on
      // from its committed offsets.
      await consumer.subscribe({ topics: [listenTopic], fromBeginning: true });
      step();
      await consumer.run({
        eachBatchAutoResolve: false,
        // Commits come from onBatch, at most every COMMIT_INTERVAL_MS.
        autoCommit: false,
        autoCommitInterval: COMMIT_INTERVAL_MS,
        partitionsConsumedConcurrently: this.opts.partitionsConsumedConcurrently ?? 32,
        eachBatch: (payload) => this.onBatch(payload, handler),
      });
      // run() resolves after the first join attempt, which may have failed and be scheduled for a
      // restart: only the join itself says the partitions are assigned and being fetched.
      await joined;
      step();
    };
    try {
      await withTimeout(begin(), this.opts.startTimeoutMs ?? 30_000, `kafka consumer did not join group ${groupId}`);
    } catch (err) {
      abandoned = true;
      await this.bounded('consumer', () => consumer.disconnect());
      if (this.consumer === consumer) this.consumer = undefined;
      throw err;
    } finally {
      this.starting = false;
    }
    // The producer is needed for dead-lettering; connect it now so the first one is not slow.
    await this.connectedProducer().catch(() => undefined);
  }

  async send(messages: ProtocolMessage[]): Promise<void> {
    if (this.stopping) throw new Error('KafkaTransport: stopped');
    if (messages.length === 0) return;
    const outgoing: OutgoingMessage[] = messages.map((m) => {
      const value = encodeMessage(m);
      const headers: IHeaders = {};
      if (this.opts.secret) headers[SIGNATURE_HEADER] = sign(value, this.opts.secret);
      const topic = isForParticipant(m) ? this.topics.participant(m.participant) : this.topics.coordinator;
      return { topic, message: { key: m.txId, value, headers }, bytes: value.length };
    });
    return this.outbox.run(outgoing);
  }

  /** One produce request with the messages of `sends`, grouped by topic (see outbox). */
  private async produce(sends: OutgoingMessage[][]): Promise<void[]> {
    const byTopic = new Map<string, Message[]>();
    for (const send of sends) {
      for (const m of send) {
        const list = byTopic.get(m.topic);
        if (list) list.push(m.message);
        else byTopic.set(m.topic, [m.message]);
      }
    }
    const request = async () => {
      const producer = await this.connectedProducer();
      await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
    };
    await (this.producerBreaker ? this.producerBreaker.run(request) : request());
    return sends.map(() => undefined);
  }

  receiving(): boolean {
    return this.inGroup;
  }

  inboxReads(): { fetches: number; messages: number } {
    return { ...this.reads };
  }

  backlog(key: string): number {
    if (this.listenPartitions === 0) return 0;
    const read = this.lags.get(partitionOfKey(key, this.listenPartitions));
    // A partition not fetched for a while (paused, or no longer ours) has no known backlog.
    return read && Date.now() - read.at < LAG_KNOWN_FOR_MS ? read.lag : 0;
  }

  /** The state of this transport's circuit breakers, for health details. */
  breakers(): Record<string, ReturnType<Breaker['describe']>> {
    return this.producerBreaker ? { kafkaProducer: this.producerBreaker.describe() } : {};
  }

  /**
   * The broker answers. Under load a produce that succeeded within the last second (breaker
   * closed) says so; a metadata request of its own would queue behind the sends.
   */
  async check(): Promise<void> {
    if (this.stopping) throw new Error('KafkaTransport: stopped');
    if (this.producerBreaker?.recentlySucceeded()) return;
    const timeoutMs = this.opts.checkTimeoutMs ?? 3000;
    await withTimeout(
      (async () => {
        const admin = await this.connectedAdmin();
        // A metadata request that goes to a broker, not kafkajs's cached copy.
        const { brokers } = await admin.describeCluster();
        if (brokers.length === 0) throw new Error('the cluster reports no brokers');
      })(),
      timeoutMs,
      'kafka broker not reachable',
    );
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const t of this.resumeTimers) clearTimeout(t);
      this.resumeTimers.clear();
      this.producerBreaker?.shutdown();
      // The consumer first: it finishes the batch in hand, commits, and leaves the group.
      const consumer = this.consumer;
      if (consumer) await this.bounded('consumer', () => consumer.disconnect());
      await Promise.all([
        this.producerConnecting?.then(
          (producer) => this.bounded('producer', () => producer.disconnect()),
          () => undefined,
        ),
        this.adminConnecting?.then(
          (admin) => this.bounded('admin', () => admin.disconnect()),
          () => undefined,
        ),
      ]);
    })();
    return this.stopping;
  }

  /**
   * A disconnect that gives up after stopTimeoutMs. With the broker down, kafkajs would retry
   * leaving the group for as long as its retry policy allows; stop() does not wait for that.
   */
  private async bounded(what: string, disconnect: () => Promise<void>): Promise<void> {
    const ms = this.opts.stopTimeoutMs ?? 5000;
    try {
      await withTimeout(disconnect(), ms, `kafka ${what} did not disconnect`);
    } catch (err) {
      this.logger.warn({ err }, `kafka ${what} did not disconnect cleanly`);
    }
  }

  /**
   * One fetched batch of one partition.
   *
   * - Each message is decoded and verified. Unreadable ones are produced to the dead-letter topic
   *   (original key, value and headers, plus `tx-error` and where they came from) and count as
   *   handled. If even that produce fails, they count as not handled and are read again.
   * - Readable messages are grouped by key (txId): one key's messages go to the handler one after
   *   the other in offset order, different keys concurrently. After a handler throws, the rest of
   *   that key's messages in the batch are not handed over, so they are never seen out of order.
   * - Then offsets are resolved in order up to, not including, the first message that was not
   *   handled. kafkajs fetches each partition from its last resolved offset, so everything from
   *   that message on is simply fetched and handed over again; no seek is needed. Messages of
   *   other keys after it are delivered twice, which at-least-once receivers accept.
   * - A partition with a failure is paused and resumed after a backoff (redeliveryDelayMs,
   *   doubling to 10 s, reset by a clean batch), so a handler that keeps failing does not spin,
   *   while the other partitions go on.
   * - Heartbeats continue while handlers run, so a long batch does not cost the group membership.
   */
  private async onBatch(payload: EachBatchPayload, handler: MessageHandler): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, commitOffsetsIfNecessary, uncommittedOffsets, pause } = payload;
    const { topic, partition } = batch;
    this.reads.messages += batch.messages.length;
    let heartbeatError: unknown;
    const beat = setInterval(() => {
      heartbeat().catch((err) => {
        heartbeatError ??= err;
      });
    }, this.heartbeatIntervalMs);

    try {
      const handled: boolean[] = batch.messages.map(() => false);
      const decoded: Decoded[] = batch.messages.map((raw, index) => {
        const envelope = toEnvelope(topic, raw);
        const result = decodeMessage(raw.value, {
          secret: this.opts.secret,
          signature: envelope.headers[SIGNATURE_HEADER],
        });
        return result.ok
          ? { index, envelope, ok: true, message: result.message }
          : { index, envelope, ok: false, error: result.error, raw };
      });

      const unreadable = decoded.filter((d): d is Extract<Decoded, { ok: false }> => !d.ok);
      if (unreadable.length > 0) {
        try {
          await this.deadLetter(topic, partition, unreadable);
          for (const d of unreadable) {
            handled[d.index] = true;
            this.logger.warn(
              { topic, partition, offset: d.raw.offset, key: d.envelope.key, error: d.error },
              'unreadable message sent to the dead-letter topic',
            );
          }
        } catch (err) {
          this.logger.error({ topic, partition, err }, 'could not dead-letter unreadable messages; will read them again');
        }
      }

      const byKey = new Map<string, Extract<Decoded, { ok: true }>[]>();
      for (const d of decoded) {
        if (!d.ok) continue;
        const key = d.envelope.key ?? '';
        const list = byKey.get(key);
        if (list) list.push(d);
        else byKey.set(key, [d]);
      }
      await Promise.all(
        [...byKey.values()].map(async (list) => {
          for (const d of list) {
            if (!isRunning()) return; // stopping: leave the rest for whoever gets the partition
            try {
              await handler(d.message, d.envelope);
              handled[d.index] = true;
            } catch (err) {
              this.logger.error(
                {
                  topic,
                  partition,
                  offset: batch.messages[d.index].offset,
                  txId: d.message.txId,
                  type: d.message.type,
                  err,
                },
                'message handler failed; the message will be redelivered',
              );
              return;
            }
          }
        }),
      );

      let complete = true;
      for (let i = 0; i < batch.messages.length; i++) {
        if (!handled[i]) {
          complete = false;
          break;
        }
        resolveOffset(batch.messages[i].offset);
      }

      this.lags.set(partition, { lag: complete ? Math.max(0, Number(batch.offsetLag())) : batch.messages.length, at: Date.now() });
      if (complete) {
        this.failures.delete(partition);
      } else if (isRunning()) {
        const n = (this.failures.get(partition) ?? 0) + 1;
        this.failures.set(partition, n);
        const delay = Math.min(this.redeliveryDelayMs * 2 ** (n - 1), MAX_REDELIVERY_DELAY_MS);
        const resume = pause();
        const timer = setTimeout(() => {
          this.resumeTimers.delete(timer);
          resume();
        }, delay);
        this.resumeTimers.add(timer);
      }
      // Stopping: everything handled is committed now, so whoever gets the partition next starts after it.
      await (isRunning() ? commitOffsetsIfNecessary() : commitOffsetsIfNecessary(uncommittedOffsets()));
    } finally {
      clearInterval(beat);
    }
    // A heartbeat that failed (typically: the group is rebalancing) is passed on to kafkajs,
    // which rejoins; what was handled since the last commit is delivered again after it.
    if (heartbeatError) throw heartbeatError;
  }

  private async deadLetter(topic: string, partition: number, items: Extract<Decoded, { ok: false }>[]): Promise<void> {
    const producer = await this.connectedProducer();
    await producer.send({
      topic: this.topics.deadLetter,
      acks: -1,
      messages: items.map(({ raw, error }) => ({
        key: raw.key,
        value: raw.value,
        headers: {
          ...(raw.headers ?? {}),
          [ERROR_HEADER]: error,
          [SOURCE_TOPIC_HEADER]: topic,
          [SOURCE_PARTITION_HEADER]: String(partition),
          [SOURCE_OFFSET_HEADER]: raw.offset,
        },
      })),
    });
  }

  private connectedProducer(): Promise<Producer> {
    if (!this.producerConnecting) {
      const producer = this.kafka.producer({
        allowAutoTopicCreation: true,
        idempotent: false,
        // Java-compatible murmur2 partitioning, so members written in other languages agree.
        createPartitioner: KeyPartitioner,
      });
      this.producerConnecting = producer.connect().then(
        () => producer,
        (err) => {
          this.producerConnecting = undefined; // the next call tries again
          throw err;
        },
      );
    }
    return this.producerConnecting;
  }

  private connectedAdmin(): Promise<Admin> {
    if (!this.adminConnecting) {
      const admin = this.kafka.admin();
      this.adminConnecting = admin.connect().then(
        () => admin,
        (err) => {
          this.adminConnecting = undefined;
          throw err;
        },
      );
    }
    return this.adminConnecting;
  }

  private logKafkajs({ namespace, level, log }: LogEntry): void {
    const { message, timestamp: _t, logger: _l, ...extra } = log as LogEntry['log'] & { logger?: string };
    const obj = { kafkajs: namespace, ...extra };
    if (level === logLevel.INFO || level === logLevel.DEBUG) this.logger.info(obj, message);
    else this.logger.warn(obj, message);
  }
}

function toEnvelope(topic: string, raw: KafkaMessage): Envelope {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(raw.headers ?? {})) {
    // A repeated header arrives as an array; like Kafka's lastHeader(), the last one counts.
    const last = Array.isArray(value) ? value[value.length - 1] : value;
    headers[name] = last === undefined ? undefined : Buffer.isBuffer(last) ? last.toString('utf8') : String(last);
  }
  return { topic, key: raw.key ? raw.key.toString('utf8') : null, value: raw.value, headers };
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms);
  });
  promise.catch(() => undefined); // a late rejection after the timeout is not unhandled
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const silentLogger: TransportLogger = { info() {}, warn() {}, error() {} };
