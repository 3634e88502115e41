/**
 * The system under test: the built coordinator and `n` benchmark participants as processes, on a
 * fresh Postgres database each, over Kafka (the test broker) or HTTP.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'pg';
import { topics } from '../../libs/protocol';
import { ManagedProcess } from '../support/processes';
import { freePort } from '../support/ports';

export type Transport = 'kafka' | 'http';

/** The coordinator's Node options, as k8s/base/coordinator-deployment.yaml sets them. */
const COORDINATOR_NODE_OPTIONS = '--max-old-space-size=160 --max-semi-space-size=8';

export interface ClusterSettings {
  transport: Transport;
  participants: number;
  bootstrap: string;
  pgAdminUrl: string;
  maxWaitMs: number;
  logDir: string;
  logLevel: string;
  /** Creates a topic with the benchmark's partition count (before anything uses it). */
  createTopic: (topic: string) => Promise<void>;
  /** Where the coordinator (and, in a folder each, the participants) write a V8 CPU profile (.cpuprofile) when they exit; none when unset. */
  profileDir?: string;
}

export interface Cluster {
  coordinator: ManagedProcess;
  coordinatorUrl: string;
  coordinatorPid: number;
  coordinatorDatabaseUrl: string;
  /** Prefix of every topic name (TX_TOPIC_PREFIX). */
  topicPrefix: string;
  participants: { name: string; url: string | null; pid: number }[];
  /** Each process's database: the coordinator's and every participant's. */
  databases: { name: string; database: string }[];
  stop(): Promise<void>;
}

/** Creates (or re-creates) a database and returns its URL. */
export async function freshDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropDatabases(adminUrl: string, names: string[]): Promise<void> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    for (const name of names) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/**
 * Waits until the coordinator has finished every transaction it holds (the previous cell's
 * backlog: under overload thousands are still being driven when the clients stop), so that a cell
 * measures its own load. Resolves with how many are still unfinished after `timeoutMs` (0: drained).
 */
export async function drained(cluster: Cluster, timeoutMs: number): Promise<number> {
  const db = new Client({ connectionString: cluster.coordinatorDatabaseUrl });
  await db.connect();
  try {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const { n } = (await db.query('SELECT count(*)::int AS n FROM tx_transaction WHERE completed_at IS NULL')).rows[0];
      if (n === 0 || Date.now() >= until) return n;
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await db.end();
  }
}

export async function startCluster(s: ClusterSettings): Promise<Cluster> {
  const run = `txbench_${randomUUID().slice(0, 8)}`;
  const prefix = `${run}.`;
  const databaseOf = (name: string) => `${run}_${name}`;
  const databases: string[] = [];
  const database = async (name: string) => {
    databases.push(databaseOf(name));
    return freshDatabase(s.pgAdminUrl, databaseOf(name));
  };
  const kafkaEnv: Record<string, string> =
    s.transport === 'kafka'
      ? { KAFKA_BROKERS: s.bootstrap, TX_TOPIC_PREFIX: prefix, KAFKA_MAX_WAIT_MS: String(s.maxWaitMs), KAFKA_SESSION_TIMEOUT_MS: '6000' }
      : {};
  const names = Array.from({ length: s.participants }, (_, i) => `p${i + 1}`);
  if (s.transport === 'kafka') {
    const t = topics(prefix);
    for (const topic of [t.coordinator, t.deadLetter, ...names.map(t.participant)]) await s.createTopic(topic);
  }
  const port = await freePort();
  const coordinatorUrl = `http://127.0.0.1:${port}`;
  const coordinatorDatabaseUrl = await database('coordinator');
  const coordinator = new ManagedProcess(
    'coordinator',
    'apps/coordinator/main.js',
    [],
    {
      ...kafkaEnv,
      PORT: String(port),
      DATABASE_URL: coordinatorDatabaseUrl,
      COORDINATOR_URL: coordinatorUrl,
      TX_RATE_LIMIT_PER_MINUTE: '0',
      LOG_LEVEL: s.logLevel,
      // As deployed (k8s/base): a V8 heap cap that fits the container.
      NODE_OPTIONS: process.env.BENCH_COORDINATOR_NODE_OPTIONS ?? COORDINATOR_NODE_OPTIONS,
    },
    join(s.logDir, 'coordinator.log'),
    async (p) => {
      for (;;) {
        if (!p.running) throw new Error('coordinator exited while starting (see its log)');
        const ok = await fetch(`${coordinatorUrl}/health/ready`).then((r) => r.status === 200, () => false);
        if (ok) return;
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    s.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${s.profileDir}`] : [],
  );
  const started: ManagedProcess[] = [];
  const stopAll = async () => {
    await Promise.all(started.map((p) => p.stop()));
    await dropDatabases(s.pgAdminUrl, databases).catch(() => undefined);
  };
  try {
    await coordinator.start();
    started.push(coordinator);
    const participants = await Promise.all(
      names.map(async (name) => {
        const env: Record<string, string> = { ...kafkaEnv, DATABASE_URL: await database(name), LOG_LEVEL: s.logLevel };
        if (s.transport === 'http') {
          env.PORT = String(await freePort());
          env.COORDINATOR_URL = coordinatorUrl;
        }
        let url: string | null = null;
        const p = new ManagedProcess(
          name,
          'tools/bench/participant.js',
          ['--name', name],
          env,
          join(s.logDir, `${name}.log`),
          async (_p, seen) => {
            const line = await seen(/bench participant ready/);
            url = (JSON.parse(line) as { url: string | null }).url;
          },
          s.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(s.profileDir, name)}`] : [],
        );
        await p.start();
        started.push(p);
        return { name, url, pid: p.pid! };
      }),
    );
    return { coordinator, coordinatorUrl, coordinatorPid: coordinator.pid!, coordinatorDatabaseUrl, topicPrefix: prefix, participants,
      databases: ['coordinator', ...names].map((name) => ({ name, database: databaseOf(name) })), stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
