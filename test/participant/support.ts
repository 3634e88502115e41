/**
 * Shared helpers of the participant tests: a fresh Postgres database per suite, a fake coordinator
 * (a real KafkaTransport consuming the coordinator topic), message builders, and a participant
 * that records its calls.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Client } from 'pg';
import pino, { Logger } from 'pino';
import { DataSource } from 'typeorm';
import { CommitProtocol, ProtocolMessage, topics } from '../../libs/protocol';
import { KafkaTransport } from '../../libs/transport/kafka-transport';
import type {
  DecisionContext,
  PrepareContext,
  TransactionParticipant,
  VoteResult,
} from '../../libs/participant';
import type { TestBroker } from '../support/broker';

export const PG_ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  name: string;
  url: string;
  /** A DataSource for the test's own checks. */
  ds: DataSource;
  drop(): Promise<void>;
}

export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `txp_${label}_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  const ds = new DataSource({ type: 'postgres', url, entities: [], synchronize: false });
  await ds.initialize();
  return {
    name,
    url,
    ds,
    drop: async () => {
      await ds.destroy().catch(() => undefined);
      const c = new Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A topic prefix no other suite uses. */
export function uniquePrefix(label: string): string {
  return `t${randomBytes(3).toString('hex')}.${label}.`;
}

/** Test transports: small fetch wait (the mock broker always waits it out), quick rebalances. */
export function testTransport(
  broker: TestBroker,
  o: { groupId: string; listenTopic: string; topicPrefix: string; logger?: Logger; secret?: string },
): KafkaTransport {
  return new KafkaTransport({
    brokers: broker.brokers,
    clientId: o.groupId,
    groupId: o.groupId,
    listenTopic: o.listenTopic,
    topicPrefix: o.topicPrefix,
    maxWaitTimeInMs: 5,
    sessionTimeoutMs: 3000,
    heartbeatIntervalMs: 500,
    redeliveryDelayMs: 100,
    logger: o.logger,
    secret: o.secret,
  });
}

/** The transport a participant of this name would build from the environment, but test-tuned. */
export function participantTransport(broker: TestBroker, prefix: string, name: string, logger?: Logger): KafkaTransport {
  return testTransport(broker, {
    groupId: `txp.${name}`,
    listenTopic: topics(prefix).participant(name),
    topicPrefix: prefix,
    logger,
  });
}

/** Plays the coordinator: sends coordinator → participant messages and records what comes back. */
export class FakeCoordinator {
  readonly received: ProtocolMessage[] = [];
  /** Runs when a message arrives, before it is recorded (e.g. to look at the database "at that moment"). */
  onReceive?: (m: ProtocolMessage) => Promise<void>;
  private waiters: { pred: (m: ProtocolMessage) => boolean; resolve(m: ProtocolMessage): void }[] = [];

  private constructor(private readonly transport: KafkaTransport) {}

  static async start(broker: TestBroker, prefix: string, o: { secret?: string } = {}): Promise<FakeCoordinator> {
    const transport = testTransport(broker, {
      groupId: `coordinator.${prefix}`,
      listenTopic: topics(prefix).coordinator,
      topicPrefix: prefix,
      secret: o.secret,
    });
    const c = new FakeCoordinator(transport);
    await transport.start(async (m) => {
      if (c.onReceive) await c.onReceive(m);
      c.received.push(m);
      c.waiters = c.waiters.filter((w) => {
        if (!w.pred(m)) return true;
        w.resolve(m);
        return false;
      });
    });
    return c;
  }

  send(...messages: ProtocolMessage[]): Promise<void> {
    return this.transport.send(messages);
  }

  /** Messages received so far about one transaction, optionally of one type. */
  about(txId: string, type?: ProtocolMessage['type']): ProtocolMessage[] {
    return this.received.filter((m) => m.txId === txId && (!type || m.type === type));
  }

  /** The first message (already received or still to come) matching `pred`. */
  waitFor(pred: (m: ProtocolMessage) => boolean, timeoutMs = 15_000, what = 'a message'): Promise<ProtocolMessage> {
    const seen = this.received.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        pred,
        resolve: (m: ProtocolMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Waits until `count` messages match `pred`. */
  async waitForCount(pred: (m: ProtocolMessage) => boolean, count: number, timeoutMs = 15_000): Promise<ProtocolMessage[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const matching = this.received.filter(pred);
      if (matching.length >= count) return matching;
      if (Date.now() > until) throw new Error(`timed out waiting for ${count} messages, have ${matching.length}`);
      await sleep(20);
    }
  }

  vote(txId: string) {
    return this.waitFor((m) => m.txId === txId && m.type === 'vote', 15_000, `the vote of ${txId}`) as Promise<
      Extract<ProtocolMessage, { type: 'vote' }>
    >;
  }

  ack(txId: string, of: 'commit' | 'abort' | 'pre-commit') {
    return this.waitFor(
      (m) => m.txId === txId && m.type === 'ack' && m.of === of,
      15_000,
      `the ${of} ack of ${txId}`,
    ) as Promise<Extract<ProtocolMessage, { type: 'ack' }>>;
  }

  stop(): Promise<void> {
    return this.transport.stop();
  }
}

const base = (txId: string, participant: string, protocol: CommitProtocol = '2pc') => ({
  v: 1 as const,
  txId,
  participant,
  protocol,
  sentAt: new Date().toISOString(),
});

export const msg = {
  prepare: (
    txId: string,
    participant: string,
    payload: Record<string, unknown> = {},
    o: { deadlineInMs?: number; protocol?: CommitProtocol } = {},
  ): ProtocolMessage => ({
    ...base(txId, participant, o.protocol),
    type: 'prepare',
    deadline: new Date(Date.now() + (o.deadlineInMs ?? 30_000)).toISOString(),
    payload,
  }),
  commit: (txId: string, participant: string, protocol?: CommitProtocol): ProtocolMessage => ({
    ...base(txId, participant, protocol),
    type: 'commit',
  }),
  abort: (txId: string, participant: string, reason = 'client-abort', protocol?: CommitProtocol): ProtocolMessage => ({
    ...base(txId, participant, protocol),
    type: 'abort',
    reason,
  }),
  preCommit: (txId: string, participant: string): ProtocolMessage => ({
    ...base(txId, participant, '3pc'),
    type: 'pre-commit',
  }),
};

/**
 * A participant that records every call and writes one row per effect (`test_effect`) through
 * `ctx.manager`, so a test can tell calls whose transaction rolled back from ones that counted.
 * Its behaviour comes from the payload: `{ vote: 'no', reason }`, `{ throw: 'message' }`,
 * `{ failCommit: n }` (the first n commit calls throw), `{ swallowCommitSqlError: n }` (the first n
 * commit calls swallow a failed statement), `{ failAbort: n }`, `{ sqlError: 'throw' | 'swallow' }`.
 */
export class RecordingParticipant implements TransactionParticipant {
  readonly calls: { kind: string; txId: string }[] = [];

  count(txId: string, kind: string): number {
    return this.calls.filter((c) => c.txId === txId && c.kind === kind).length;
  }

  static async createTable(ds: DataSource): Promise<void> {
    await ds.query(`CREATE TABLE IF NOT EXISTS test_effect (tx_id uuid, participant text, kind text, at timestamptz DEFAULT now())`);
  }

  async prepare(ctx: PrepareContext): Promise<VoteResult> {
    this.calls.push({ kind: 'prepare', txId: ctx.txId });
    await this.effect(ctx, 'prepare');
    const p = ctx.payload as {
      vote?: 'yes' | 'no';
      reason?: string;
      throw?: string;
      delayMs?: number;
      sqlError?: 'throw' | 'swallow';
    };
    if (p.delayMs) await sleep(p.delayMs);
    if (p.sqlError) {
      const failing = ctx.manager.query(`SELECT * FROM no_such_table`);
      if (p.sqlError === 'throw') await failing;
      else await failing.catch(() => undefined); // a buggy handler: swallows the error, votes yes
    }
    if (p.throw) throw new Error(p.throw);
    if (p.vote === 'no') return p.reason ? { vote: 'no', reason: p.reason } : 'no';
    return 'yes';
  }

  async commit(ctx: DecisionContext): Promise<void> {
    this.calls.push({ kind: 'commit', txId: ctx.txId });
    const n = this.count(ctx.txId, 'commit');
    await this.effect(ctx, 'commit');
    const p = ctx.payload as { failCommit?: number; swallowCommitSqlError?: number };
    if (n <= Number(p.swallowCommitSqlError ?? 0)) {
      await ctx.manager.query(`SELECT * FROM no_such_table`).catch(() => undefined); // a buggy handler
    }
    const fail = Number(p.failCommit ?? 0);
    if (n <= fail) throw new Error(`commit failure ${n} of ${fail}`);
  }

  async abort(ctx: DecisionContext): Promise<void> {
    this.calls.push({ kind: 'abort', txId: ctx.txId });
    const n = this.count(ctx.txId, 'abort');
    await this.effect(ctx, 'abort');
    const fail = Number((ctx.payload as { failAbort?: number }).failAbort ?? 0);
    if (n <= fail) throw new Error(`abort failure ${n} of ${fail}`);
  }

  async preCommit(ctx: DecisionContext): Promise<void> {
    this.calls.push({ kind: 'pre-commit', txId: ctx.txId });
    await this.effect(ctx, 'pre-commit');
  }

  private async effect(ctx: { manager: PrepareContext['manager']; txId: string; participant: string }, kind: string) {
    await ctx.manager.query(`INSERT INTO test_effect (tx_id, participant, kind) VALUES ($1, $2, $3)`, [
      ctx.txId,
      ctx.participant,
      kind,
    ]);
  }
}

/** Effects that were committed, per kind. */
export async function effects(ds: DataSource, txId: string): Promise<Record<string, number>> {
  const rows: { kind: string; n: string }[] = await ds.query(
    `SELECT kind, count(*) AS n FROM test_effect WHERE tx_id = $1 GROUP BY kind`,
    [txId],
  );
  return Object.fromEntries(rows.map((r) => [r.kind, Number(r.n)]));
}

export async function record(ds: DataSource, txId: string, participant: string) {
  const rows: { state: string; reason: string | null; protocol: string; payload: unknown }[] = await ds.query(
    `SELECT state, reason, protocol, payload FROM tx_participant_log WHERE tx_id = $1 AND participant = $2`,
    [txId, participant],
  );
  return rows[0] ?? null;
}

/** A pino logger whose lines are kept (parsed) in `lines` instead of printed. */
export function captureLogger(level = 'info'): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line));
      cb();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const newTxId = (): string => randomUUID();
