/**
 * The world of the crash tests (test/crash): the Kafka test broker, example participants (each on
 * its own Postgres database), and a coordinator process on one decision-log database that a test
 * starts, lets kill itself at an exact protocol step (TX_TEST_CRASH_AT, test-only), and restarts.
 *
 * Observation is black-box where it can be (REST API, the participants' own tables) plus the two
 * durable records the promises are about: the coordinator's `tx_transaction` row (was a decision
 * durable at the moment of the crash?) and each participant's `tx_participant_log` row (what did it
 * do?).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { topics } from '../../libs/protocol';
import { startTestBroker, TestBroker } from './broker';
import { api, startParticipant, TestParticipant, uniquePrefix } from './coordinator';
import { dropCreatedDatabases, freshDatabase, query } from './postgres';
import { eventually, freePort, RunningProcess, startApp, waitForHttp } from './processes';

export type ParticipantLogState = 'prepared' | 'precommitted' | 'committed' | 'aborted';

export interface CrashWorld {
  broker: TestBroker;
  prefix: string;
  names: string[];
  /** Database URL of each participant. */
  dbs: Record<string, string>;
  participants: Record<string, TestParticipant>;
  coordinatorDbUrl: string;
  url: string;
  /** The variables every coordinator of this world starts with. */
  coordinatorEnv: Record<string, string>;
  coordinator?: RunningProcess;
  /** Every coordinator process this world started, for post-mortem output. */
  history: RunningProcess[];
  /** Every participant process this world started. */
  participantHistory: RunningProcess[];
  /** The crash point the running coordinator was started with. */
  armedWith?: string | null;
}

export interface WorldOptions {
  /** Extra variables of every coordinator. */
  coordinatorEnv?: Record<string, string>;
  /** Extra variables of every participant. */
  participantEnv?: Record<string, string>;
  /** Extra variables of one participant (e.g. its TX_TEST_CRASH_AT). */
  participantEnvByName?: Record<string, Record<string, string>>;
  /** Start a coordinator right away, armed with this crash point ('' for none). */
  firstCrashPoint?: string;
  /** A Postgres URL the coordinator should use instead of the direct one (e.g. through a proxy). */
  coordinatorDbUrl?: (direct: string) => string;
}

/** Unique per run, so that concurrent runs (other engineers, CI) never share a database. */
export function runName(what: string): string {
  return `txcrash_${what}_${randomUUID().slice(0, 8)}`;
}

export async function startWorld(run: string, names: string[], opts: WorldOptions = {}): Promise<CrashWorld> {
  const broker = await startTestBroker();
  const prefix = uniquePrefix();
  const direct = await freshDatabase(`${run}_coordinator`);
  const coordinatorDbUrl = opts.coordinatorDbUrl ? opts.coordinatorDbUrl(direct) : direct;
  const port = await freePort();
  const w: CrashWorld = {
    broker,
    prefix,
    names,
    dbs: {},
    participants: {},
    coordinatorDbUrl: direct,
    url: `http://127.0.0.1:${port}`,
    coordinatorEnv: {
      PORT: String(port),
      DATABASE_URL: coordinatorDbUrl,
      KAFKA_BROKERS: broker.bootstrap,
      TX_TOPIC_PREFIX: prefix,
      KAFKA_MAX_WAIT_MS: '5',
      // A coordinator killed with -9 stays a member of its group until its session times out; the
      // restarted one can only take the partitions over after that.
      KAFKA_SESSION_TIMEOUT_MS: '3000',
      TX_RESEND_INITIAL_MS: '200',
      TX_RESEND_MAX_MS: '1000',
      TX_SWEEP_INTERVAL_MS: '1000',
      ...opts.coordinatorEnv,
    },
    history: [],
    participantHistory: [],
  };
  // The first coordinator starts beside the participants (process starts are the slow part).
  const first = opts.firstCrashPoint === undefined ? undefined
    : launchCoordinator(w, opts.firstCrashPoint ? { TX_TEST_CRASH_AT: opts.firstCrashPoint } : {}).then(() => { w.armedWith = opts.firstCrashPoint ?? null; });
  await Promise.all([first, ...names.map(async (name) => {
    w.dbs[name] = await freshDatabase(`${run}_${name}`);
    w.participants[name] = await launchParticipant(w, name, { ...opts.participantEnv, ...opts.participantEnvByName?.[name] });
  })]);
  return w;
}

export function participantEnv(w: CrashWorld, extra: Record<string, string> = {}): Record<string, string> {
  return { KAFKA_MAX_WAIT_MS: '5', KAFKA_SESSION_TIMEOUT_MS: '3000', ...extra };
}

/** Starts (or restarts) the example participant `name` on its database. */
export async function launchParticipant(w: CrashWorld, name: string, env: Record<string, string> = {}): Promise<TestParticipant> {
  const p = await startParticipant(name, { brokers: w.broker.bootstrap, prefix: w.prefix, databaseUrl: w.dbs[name], env: participantEnv(w, env) });
  w.participantHistory.push(p);
  return p;
}

/**
 * Starts a coordinator with the world's variables plus `env`. Resolves when it is ready, or — when
 * `mayCrash` — also when it has already died (a crash point reached during start-up recovery).
 */
export async function launchCoordinator(w: CrashWorld, env: Record<string, string> = {}, mayCrash = false): Promise<RunningProcess> {
  const proc = startApp('apps/coordinator/main.js', [], { ...w.coordinatorEnv, ...env });
  w.coordinator = proc;
  w.history.push(proc);
  const died = proc.exited.then(() => {
    if (!mayCrash) throw new Error(`coordinator exited during start:\n${proc.output().slice(-4000)}`);
  });
  await Promise.race([waitForHttp(`${w.url}/health/ready`, 60_000), died]);
  return proc;
}

/** Waits for the running coordinator to kill itself at `point`; returns how long that took. */
export async function crashed(w: CrashWorld, point: string, timeoutMs = 20_000): Promise<void> {
  const proc = w.coordinator!;
  await proc.waitFor(new RegExp(`TX_TEST_CRASH_AT: coordinator crashing at ${point}`), timeoutMs);
  await proc.exited;
  expect(proc.child.signalCode).toBe('SIGKILL');
}

export async function stopWorld(w: CrashWorld | undefined): Promise<void> {
  if (!w) return;
  // CRASH_DUMP=<dir>: keep every process's output for a post-mortem.
  if (process.env.CRASH_DUMP) {
    mkdirSync(process.env.CRASH_DUMP, { recursive: true });
    w.history.forEach((p, i) => writeFileSync(join(process.env.CRASH_DUMP!, `coordinator-${i}.log`), p.output()));
    w.participantHistory.forEach((p, i) => writeFileSync(join(process.env.CRASH_DUMP!, `participant-${i}.log`), p.output()));
  }
  await Promise.all(Object.values(w.participants).map((p) => p.stop()));
  await w.coordinator?.stop();
  await w.broker.stop();
  await dropCreatedDatabases();
}

export const call = (w: CrashWorld, method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  api(w.url, method, path, body, headers);

/** Like `call`, but a refused or reset connection (the process is dying) is an answer too. */
export async function callMayFail(w: CrashWorld, method: string, path: string, body?: unknown) {
  try {
    return await call(w, method, path, body);
  } catch (err) {
    return { status: 0, headers: new Headers(), body: String(err) };
  }
}

/** The coordinator's durable record of a transaction, read straight from its database. */
export async function durable(w: CrashWorld, txId: string): Promise<{ state: string; outcome: string | null } | null> {
  const rows = await query<{ state: string; outcome: string | null }>(w.coordinatorDbUrl, 'SELECT state, outcome FROM tx_transaction WHERE id = $1', [txId]);
  return rows[0] ?? null;
}

/** Each participant's durable state of a transaction (null: no record). */
export async function participantStates(w: CrashWorld, txId: string, names = w.names): Promise<Record<string, ParticipantLogState | null>> {
  const out: Record<string, ParticipantLogState | null> = {};
  for (const name of names) {
    const rows = await query<{ state: ParticipantLogState }>(w.dbs[name], 'SELECT state FROM tx_participant_log WHERE tx_id = $1 AND participant = $2', [txId, name]);
    out[name] = rows[0]?.state ?? null;
  }
  return out;
}

export async function stock(w: CrashWorld, name: string, sku: string): Promise<number | null> {
  const rows = await query<{ qty: number }>(w.dbs[name], 'SELECT qty FROM example_stock WHERE participant = $1 AND sku = $2', [name, sku]);
  return rows.length ? Number(rows[0].qty) : null;
}

export async function reservations(w: CrashWorld, name: string, txId: string): Promise<number> {
  return (await query(w.dbs[name], 'SELECT 1 FROM example_reservation WHERE tx_id = $1', [txId])).length;
}

export const getTx = async (w: CrashWorld, id: string) => (await call(w, 'GET', `/v1/transactions/${id}`)).body;

export const finished = (w: CrashWorld, id: string, timeoutMs = 30_000) =>
  eventually(() => getTx(w, id), (t) => t?.state === 'committed' || t?.state === 'aborted', timeoutMs, `transaction ${id} to finish`);

/**
 * The end state every crash must reach: the transaction final with `outcome`, every participant's
 * record saying the same, its reservation gone, and its stock moved exactly once (or not at all).
 */
export async function expectConsistent(w: CrashWorld, txId: string, sku: string, qty: number, outcome: 'commit' | 'abort', names = w.names): Promise<void> {
  const done = await finished(w, txId);
  expect({ state: done.state, outcome: done.outcome }).toEqual({ state: outcome === 'commit' ? 'committed' : 'aborted', outcome });
  const final = outcome === 'commit' ? 'committed' : 'aborted';
  const states = await eventually(() => participantStates(w, txId, names), (s) => Object.values(s).every((x) => x === final || (outcome === 'abort' && x === null)), 20_000, `participants to record ${final}`);
  for (const name of names) {
    expect([name, states[name] ?? 'aborted']).toEqual([name, final]);
    expect([name, await reservations(w, name, txId)]).toEqual([name, 0]);
    const q = await stock(w, name, sku);
    if (outcome === 'commit') expect([name, q]).toEqual([name, 100 - qty]);
    else expect([name, q === null || q === 100]).toEqual([name, true]);
  }
}

/** No process of the world ever refused a decision as a protocol violation. */
export function expectNoViolation(w: CrashWorld): void {
  for (const p of w.participantHistory) {
    expect(p.output().match(/.*PROTOCOL VIOLATION.*/)?.[0] ?? null).toBeNull();
  }
  for (const c of w.history) expect(c.output().match(/.*InvariantViolation.*/)?.[0] ?? null).toBeNull();
}

export interface CoordinatorCrashCase {
  protocol: '2pc' | '3pc';
  /** TX_TEST_CRASH_AT of the first coordinator. */
  point: string;
  timeoutMs: number;
  /** Restart only once the transaction's deadline has passed (it was down across the deadline). */
  restartAfterDeadline?: boolean;
  /** This participant votes no (its reservation cannot be made). */
  noVoter?: string;
  /** The outcome expected when no decision was durable at the crash. */
  undecided?: 'commit' | 'abort';
  /** More checks of the durable records at the moment of the crash. */
  atCrash?: (at: CrashSnapshot) => void;
  /** While the coordinator is down, before its restart. */
  whileDown?: (w: CrashWorld, txId: string) => Promise<void>;
}

export interface CrashSnapshot {
  coordinator: { state: string; outcome: string | null } | null;
  participants: Record<string, ParticipantLogState | null>;
  /** The client's commit call: 0 when the connection broke. */
  commitStatus: number;
  commitOutcome: string | null;
}

const QTY = 3;

/**
 * One coordinator crash: begin and commit a transaction with a coordinator armed to kill itself at
 * `point`; check the durable records at the crash (nothing committed anywhere unless a commit
 * decision was durable); restart on the same log; check every participant ends with the same
 * outcome — the durable decision, or the expected one when nothing was decided.
 *
 * To save a process start per case, the restarted coordinator is already armed with the next
 * case's point (`next`): crash points only fire in transactions begun by the running process, so
 * it recovers this case's transaction undisturbed.
 */
export async function coordinatorCrash(w: CrashWorld, c: CoordinatorCrashCase, next?: string): Promise<CrashSnapshot> {
  const t0 = Date.now();
  const lap = (what: string) => process.env.CRASH_TIMING && console.log(`${c.point} ${what} +${Date.now() - t0}ms`);
  const running = w.coordinator && w.coordinator.child.exitCode === null && w.coordinator.child.signalCode === null;
  if (!running || w.armedWith !== c.point) {
    if (running) await w.coordinator!.stop();
    await launchCoordinator(w, { TX_TEST_CRASH_AT: c.point });
    w.armedWith = c.point;
    lap('launched');
  }
  const sku = `sku-${randomUUID()}`;
  const begun = await call(w, 'POST', '/v1/transactions', {
    protocol: c.protocol,
    timeoutMs: c.timeoutMs,
    participants: w.names.map((name) => ({ name, payload: { sku, qty: name === c.noVoter ? 1000 : QTY } })),
  });
  expect(begun.status).toBe(201);
  const txId: string = begun.body.id;
  const deadline = Date.parse(begun.body.deadline);
  const commit = await callMayFail(w, 'POST', `/v1/transactions/${txId}/commit`);
  await crashed(w, c.point);
  lap('crashed');

  const at: CrashSnapshot = {
    coordinator: await durable(w, txId),
    participants: await participantStates(w, txId),
    commitStatus: commit.status,
    commitOutcome: commit.status === 200 ? commit.body.outcome : null,
  };
  const states = Object.values(at.participants);
  // Write-ahead, seen from outside: no participant has committed (or pre-committed) anything
  // unless the commit decision was durable, and nothing aborted after a durable commit.
  if (at.coordinator?.outcome !== 'commit') expect(states.filter((s) => s === 'committed' || s === 'precommitted')).toEqual([]);
  if (at.coordinator?.outcome === 'commit') expect(states.filter((s) => s === 'aborted')).toEqual([]);
  // A client that was told the outcome was told the durable one.
  if (at.commitOutcome !== null) expect(at.commitOutcome).toBe(at.coordinator?.outcome);
  c.atCrash?.(at);

  await c.whileDown?.(w, txId);
  if (c.restartAfterDeadline) {
    const wait = deadline + 300 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  lap('restarting');
  await launchCoordinator(w, next ? { TX_TEST_CRASH_AT: next } : {});
  w.armedWith = next ?? null;
  lap('restarted');
  const expected = (at.coordinator?.outcome ?? c.undecided) as 'commit' | 'abort';
  expect(expected).toBeDefined();
  await expectConsistent(w, txId, sku, QTY, expected);
  lap('consistent');
  expectNoViolation(w);
  return at;
}

/**
 * Drops everything queued on a participant's topic while it is down, as if those messages had been
 * lost: joins its consumer group (once the dead member's session has expired), commits the group's
 * offsets at the end of every partition, and leaves. Returns the types of the messages dropped.
 */
export async function dropQueued(w: CrashWorld, name: string): Promise<string[]> {
  const kafka = new Kafka({ brokers: w.broker.brokers, logLevel: logLevel.NOTHING });
  const topic = topics(w.prefix).participant(name);
  const admin = kafka.admin();
  await admin.connect();
  const consumer = kafka.consumer({ groupId: `txp.${name}`, sessionTimeout: 3000, heartbeatInterval: 1000, maxWaitTimeInMs: 5, rebalanceTimeout: 10_000 });
  const dropped: string[] = [];
  try {
    const ends = await admin.fetchTopicOffsets(topic);
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    let joined!: () => void;
    const join = new Promise<void>((r) => (joined = r));
    consumer.on(consumer.events.GROUP_JOIN, () => joined());
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => {
        try {
          dropped.push(JSON.parse(String(message.value)).type);
        } catch {
          dropped.push('unreadable');
        }
      },
    });
    await join;
    await consumer.commitOffsets(ends.map((e) => ({ topic, partition: e.partition, offset: e.high })));
    const committed = await admin.fetchOffsets({ groupId: `txp.${name}`, topics: [topic] });
    const byPartition = new Map(committed[0].partitions.map((p) => [p.partition, p.offset]));
    for (const e of ends) expect([e.partition, byPartition.get(e.partition)]).toEqual([e.partition, e.high]);
  } finally {
    await consumer.disconnect();
    await admin.disconnect();
  }
  return dropped;
}
