/**
 * `npm run bench`: the coordinator against the floor it runs on.
 *
 * Starts the Kafka test broker, fresh Postgres databases, the built coordinator and participant
 * processes on the participant library (tools/bench/participant.ts), drives the REST API with a
 * fixed number of closed-loop clients (begin with participants, then commit), and prints committed
 * transactions per second, latency p50/p95/p99, coordinator CPU and peak memory, per cell of the
 * matrix; then the floor (bare Kafka round trip, bare Postgres commit, bare kafkajs ceiling of the
 * same message pattern) and the ratios.
 *
 *   npm run bench                       # the whole matrix (2pc/3pc × 1,3,10 participants × 1,16,64,256 clients × kafka/http)
 *   npm run bench -- --quick            # 2pc, 3 participants, kafka, concurrency 1 and 64
 *   npm run bench -- --protocol 3pc --participants 3 --concurrency 64 --transport kafka --duration 20
 *   npm run bench -- --quick --profile  # also a CPU profile of the coordinator: .data/bench/profile/*.cpuprofile
 *   npm run bench -- --recovery 10000   # restart with 10,000 transactions in flight: time to ready and to all committed
 *   npm run bench -- --lookups          # get and list with 10,000 and with 1,000,000 transactions in the log
 *   npm run bench -- --quick --watch 10 # also, every 10 s of a cell: unfinished by state, group lags, CPU per process
 *
 * Last line: `bench: tps=N p50=X ms floor=Y ms latency_ratio=R ceiling_ratio=Q rss=M MB`
 * (2pc, 3 participants, kafka: tps, ceiling and rss at concurrency 64, latency at concurrency 1).
 * The coordinator runs with the Node options k8s/base sets (a V8 heap cap; BENCH_COORDINATOR_NODE_OPTIONS
 * replaces them); BENCH_RECOVERY_WAIT_MS bounds how long --recovery watches (default 120 s).
 * Needs Postgres (BENCH_PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres) and
 * librdkafka-dev for the broker (the README's set-up). Process logs: .data/bench/*.log.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BrokerProcess, startBroker } from '../support/broker';
import { Cluster, drained, freshDatabase, dropDatabases, startCluster, Transport } from './cluster';
import { bareRounds, CeilingResult, kafkaRoundTrip, postgresCommit } from './floor';
import { runLoad } from './load';
import { measureLookups, seedFinished } from './log-scale';
import { measureRecovery } from './recovery';
import { latency, Latency, ProcessSampler } from './stats';
import { Watch, WatchTarget } from './watch';

type Protocol = '2pc' | '3pc';

interface Options {
  protocols: Protocol[];
  participants: number[];
  concurrency: number[];
  transports: Transport[];
  durationS: number;
  quick: boolean;
  logLevel: string;
  profile: boolean;
  /** Also measure recovery with this many transactions in flight (0: no). */
  recovery: number;
  /** Also measure get/list against a log of 10,000 and of 1,000,000 transactions. */
  lookups: boolean;
  /** Print where transactions wait every this many seconds during each cell (0: no). */
  watchS: number;
}

interface Cell {
  transport: Transport;
  protocol: Protocol;
  participants: number;
  concurrency: number;
  tps: number;
  latency: Latency;
  committed: number;
  aborted: number;
  errors: number;
  cpuCores: number;
  rssMb: number;
  firstError?: string;
}

const ROOT = join(__dirname, '..', '..', '..');
const LOG_DIR = join(ROOT, '.data', 'bench');
const PG_ADMIN = process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** Consumers' fetch wait, for the system and the floor alike (the test broker's long-poll never returns early). */
const MAX_WAIT_MS = 5;
/** How long a cell waits for the transactions of the cells before it to finish. */
const DRAIN_TIMEOUT_MS = 120_000;
/** Partitions of every topic, for the system and the ceiling alike. */
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 32);
const USAGE =
  'usage: npm run bench -- [--quick] [--protocol 2pc|3pc] [--participants n] [--concurrency n] [--transport kafka|http] [--duration s] [--log-level level] [--profile] [--recovery n] [--lookups] [--watch s]';

function parseArgs(argv: string[]): Options {
  const o: Options = {
    protocols: ['2pc', '3pc'],
    participants: [1, 3, 10],
    concurrency: [1, 16, 64, 256],
    transports: ['kafka', 'http'],
    durationS: 10,
    quick: false,
    logLevel: 'warn',
    profile: false,
    recovery: 0,
    lookups: false,
    watchS: 0,
  };
  const fail = (problem: string): never => {
    process.stderr.write(`bench: ${problem}\n${USAGE}\n`);
    process.exit(2);
  };
  const int = (name: string, v: string | undefined, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer between ${min} and ${max}`);
    return n;
  };
  const explicit = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) fail(`unexpected argument ${JSON.stringify(argv[i])}`);
    const [, name, inline] = m!;
    if (name === 'quick' || name === 'profile' || name === 'lookups') {
      o[name] = true;
      explicit.add(name);
      continue;
    }
    const v = inline ?? argv[++i];
    explicit.add(name);
    switch (name) {
      case 'protocol':
        if (v !== '2pc' && v !== '3pc') fail('--protocol must be 2pc or 3pc');
        o.protocols = [v as Protocol];
        break;
      case 'participants':
        o.participants = [int(name, v, 1, 10)];
        break;
      case 'concurrency':
        o.concurrency = [int(name, v, 1, 1024)];
        break;
      case 'transport':
        if (v !== 'kafka' && v !== 'http') fail('--transport must be kafka or http');
        o.transports = [v as Transport];
        break;
      case 'duration':
        o.durationS = int(name, v, 1, 3600);
        break;
      case 'watch':
        o.watchS = int(name, v, 1, 600);
        break;
      case 'recovery':
        o.recovery = int(name, v, 1, 1_000_000);
        break;
      case 'log-level':
        if (!['trace', 'debug', 'info', 'warn', 'error'].includes(v ?? '')) fail('--log-level must be trace, debug, info, warn or error');
        o.logLevel = v!;
        break;
      default:
        fail(`unknown option --${name}`);
    }
  }
  // The whole matrix (no option narrowing it) also measures recovery and lookups at scale.
  if (!o.quick && !['protocol', 'participants', 'concurrency', 'transport', 'recovery', 'lookups'].some((k) => explicit.has(k))) {
    o.recovery = 10_000;
    o.lookups = true;
  }
  // Only --recovery or --lookups: just those.
  if (!o.quick && (explicit.has('recovery') || explicit.has('lookups')) && !['protocol', 'participants', 'concurrency', 'transport'].some((k) => explicit.has(k))) {
    o.transports = [];
  }
  if (o.quick) {
    // A small matrix: what is not given explicitly is the headline cell's.
    if (!explicit.has('protocol')) o.protocols = ['2pc'];
    if (!explicit.has('participants')) o.participants = [3];
    if (!explicit.has('transport')) o.transports = ['kafka'];
    if (!explicit.has('concurrency')) o.concurrency = [1, 64];
  }
  return o;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-');

/**
 * Warm-up before a measurement, for a cell and for its bare ceiling alike. Under concurrency the
 * system takes 15–20 s to settle here (seen with --watch, 2PC, 3 participants, 64 clients: 41–53
 * commits/s in the first five seconds, 85–95 from the twentieth, on fresh processes and on warm
 * ones: the consumers settle a little behind, and then read and answer more per fetch), so two
 * seconds measured mostly the climb. A cluster's first cell also warms JIT, pools and group joins.
 */
function warmupFor(concurrency: number, firstOnCluster = false): number {
  return (concurrency > 1 ? 15_000 : 2_000) + (firstOnCluster ? 3_000 : 0);
}

async function measureCell(cluster: Cluster, o: Options, protocol: Protocol, concurrency: number, warmupMs: number, broker: BrokerProcess, transport: Transport): Promise<Omit<Cell, 'transport' | 'participants'>> {
  const sampler = new ProcessSampler(cluster.coordinatorPid);
  const watch = o.watchS > 0 ? new Watch(watchTarget(cluster, broker, transport), o.watchS, say) : undefined;
  await watch?.start();
  // The sampler's window should be the measured part only: start it after the warm-up.
  const load = runLoad({
    coordinatorUrl: cluster.coordinatorUrl,
    protocol,
    participants: cluster.participants,
    concurrency,
    durationMs: o.durationS * 1000,
    warmupMs,
  });
  await new Promise((r) => setTimeout(r, warmupMs));
  const measured = new ProcessSampler(cluster.coordinatorPid);
  const r = await load.finally(() => watch?.stop());
  const usage = measured.stop();
  const peak = sampler.stop();
  return {
    protocol,
    concurrency,
    tps: r.committed / r.seconds,
    latency: latency(r.latencies),
    committed: r.committed,
    aborted: r.aborted,
    errors: r.errors,
    cpuCores: usage.cpuCores,
    rssMb: peak.peakRssMb,
    firstError: r.firstError,
  };
}

function watchTarget(cluster: Cluster, broker: BrokerProcess, transport: Transport): WatchTarget {
  const pids = new Map<string, number>([['coordinator', cluster.coordinatorPid]]);
  for (const p of cluster.participants) pids.set(p.name, p.pid);
  if (transport === 'kafka') pids.set('broker', broker.pid);
  pids.set('bench', process.pid);
  return {
    coordinatorUrl: cluster.coordinatorUrl,
    coordinatorDatabaseUrl: cluster.coordinatorDatabaseUrl,
    bootstrap: transport === 'kafka' ? broker.bootstrap : undefined,
    topicPrefix: cluster.topicPrefix,
    pids,
    participants: cluster.participants.map((p) => p.name),
    databases: cluster.databases,
  };
}

function row(c: Cell): string {
  return [
    c.transport.padEnd(5),
    c.protocol,
    String(c.participants).padStart(4),
    String(c.concurrency).padStart(5),
    c.tps.toFixed(0).padStart(7),
    ms(c.latency.p50).padStart(8),
    ms(c.latency.p95).padStart(8),
    ms(c.latency.p99).padStart(8),
    (c.cpuCores * 100).toFixed(0).padStart(6),
    c.rssMb.toFixed(0).padStart(6),
    `${c.aborted}/${c.errors}`.padStart(8),
  ].join(' ');
}
const HEADER = 'trans proto part  conc     tps  p50 ms  p95 ms  p99 ms  cpu %  rss MB  abrt/err';

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  rmSync(LOG_DIR, { recursive: true, force: true });
  mkdirSync(LOG_DIR, { recursive: true });
  say(`bench: ${o.durationS} s per cell, log level ${o.logLevel}, consumer max wait ${MAX_WAIT_MS} ms; logs in ${LOG_DIR}`);
  const broker = await startBroker();
  const floorDbName = `txbench_floor_${process.pid}`;
  const cells: Cell[] = [];
  const createTopic = (topic: string) => broker.command(`create ${topic} ${PARTITIONS}`);
  try {
    say('');
    say(HEADER);
    for (const transport of o.transports) {
      for (const participants of o.participants) {
        const cluster = await startCluster({ transport, participants, bootstrap: broker.bootstrap, pgAdminUrl: PG_ADMIN, maxWaitMs: MAX_WAIT_MS, logDir: LOG_DIR, logLevel: o.logLevel, createTopic, profileDir: o.profile ? join(LOG_DIR, 'profile') : undefined });
        try {
          let first = true;
          for (const protocol of o.protocols) {
            for (const concurrency of o.concurrency) {
              if (!first) {
                const left = await drained(cluster, DRAIN_TIMEOUT_MS);
                if (left > 0) say(`      (${left} transactions of the cells before still unfinished after ${DRAIN_TIMEOUT_MS / 1000} s: this cell shares the machine with them)`);
              }
              const cell = { transport, participants, ...(await measureCell(cluster, o, protocol, concurrency, warmupFor(concurrency, first), broker, transport)) };
              first = false;
              cells.push(cell);
              say(row(cell));
              if (cell.firstError) say(`      first error: ${cell.firstError}`);
            }
          }
        } finally {
          await cluster.stop();
        }
      }
    }

    if (o.recovery > 0) {
      say('');
      const cluster = await startCluster({ transport: 'kafka', participants: 3, bootstrap: broker.bootstrap, pgAdminUrl: PG_ADMIN, maxWaitMs: MAX_WAIT_MS, logDir: LOG_DIR, logLevel: o.logLevel, createTopic, profileDir: o.profile ? join(LOG_DIR, 'profile') : undefined });
      try {
        const waitMs = Number(process.env.BENCH_RECOVERY_WAIT_MS ?? 120_000);
        const r = await measureRecovery(cluster, o.recovery, waitMs);
        const s = (ms: number | null) => (ms === null ? 'never' : `${(ms / 1000).toFixed(1)} s`);
        say(`recovery (kafka, 3 participants): killed with ${r.inFlight} transactions in flight; restarted and ready in ${s(r.readyMs)}, ` +
          `first vote received at ${s(r.firstVoteMs)}, all decided ${r.allDecidedMs === null ? `not within ${waitMs / 1000} s` : `in ${s(r.allDecidedMs)}`}; ` +
          `coordinator peak rss ${r.peakRssMb.toFixed(0)} MB, peak heap in use ${r.peakHeapMb.toFixed(0)} MB`);
        for (const p of r.progress) say(`  at ${String(p.s).padStart(3)} s: ${p.committed} committed, ${p.aborted} aborted, ${p.votes} votes received`);
      } finally {
        await cluster.stop();
      }
    }
    if (o.lookups) {
      say('');
      const cluster = await startCluster({ transport: 'http', participants: 0, bootstrap: broker.bootstrap, pgAdminUrl: PG_ADMIN, maxWaitMs: MAX_WAIT_MS, logDir: LOG_DIR, logLevel: o.logLevel, createTopic });
      try {
        for (const size of [10_000, 1_000_000]) {
          const t0 = Date.now();
          await seedFinished(cluster.coordinatorDatabaseUrl, size);
          const f = await measureLookups(cluster.coordinatorUrl, cluster.coordinatorDatabaseUrl);
          say(`lookups with ${f.logged} transactions in the log (seeded in ${((Date.now() - t0) / 1000).toFixed(0)} s): get p50 ${ms(f.getP50)} ms, ` +
            `list p50 ${ms(f.listP50)} ms, list by state ${ms(f.listByStateP50)} ms, list by participant ${ms(f.listByParticipantP50)} ms`);
        }
      } finally {
        await cluster.stop();
      }
    }

    say('');
    say('floor (same broker, same database server, same client settings):');
    const bare = { bootstrap: broker.bootstrap, maxWaitMs: MAX_WAIT_MS, logDir: LOG_DIR, createTopic };
    const roundTrip = await kafkaRoundTrip(bare, 5000);
    say(`  kafka round trip (produce, consume, produce back, consume): p50 ${ms(roundTrip.p50)} ms, p99 ${ms(roundTrip.p99)} ms`);
    const floorDb = await freshDatabase(PG_ADMIN, floorDbName);
    const commitP50 = await postgresCommit(floorDb, 500);
    say(`  postgres commit of one row: p50 ${ms(commitP50)} ms`);
    const floorOf = (p: Protocol) => (p === '2pc' ? 2 : 3) * roundTrip.p50 + commitP50;
    for (const p of o.protocols) say(`  latency floor ${p} (${p === '2pc' ? 2 : 3} × round trip + one commit): ${ms(floorOf(p))} ms`);

    const ceilings = new Map<string, CeilingResult>();
    const ceilingKey = (p: Protocol, n: number, c: number) => `${p}/${n}/${c}`;
    const kafkaCells = cells.filter((c) => c.transport === 'kafka');
    const wanted = new Set(kafkaCells.filter((c) => c.concurrency > 1).map((c) => ceilingKey(c.protocol, c.participants, c.concurrency)));
    for (const key of wanted) {
      const [p, n, c] = key.split('/');
      const watch = o.watchS > 0 ? { everyS: o.watchS, brokerPid: broker.pid, say } : undefined;
      const r = await bareRounds({ ...bare, watch }, { participants: Number(n), rounds: p === '2pc' ? 2 : 3, concurrency: Number(c), durationMs: o.durationS * 1000, warmupMs: warmupFor(Number(c)) });
      ceilings.set(key, r);
      say(`  bare kafkajs ceiling ${p}, ${n} participants, concurrency ${c}: ${r.tps.toFixed(0)} tx/s (p50 ${ms(r.latency.p50)} ms)`);
    }

    say('');
    say('ratios (kafka):');
    for (const c of kafkaCells) {
      const parts = [`${c.protocol} ${c.participants}p c${c.concurrency}:`];
      if (c.concurrency === 1) parts.push(`latency p50 ${ms(c.latency.p50)} / floor ${ms(floorOf(c.protocol))} = ${(c.latency.p50 / floorOf(c.protocol)).toFixed(2)}`);
      const ceiling = ceilings.get(ceilingKey(c.protocol, c.participants, c.concurrency));
      if (ceiling) parts.push(`throughput ${c.tps.toFixed(0)} / ceiling ${ceiling.tps.toFixed(0)} = ${(c.tps / ceiling.tps).toFixed(2)}`);
      say(`  ${parts.join(' ')}`);
    }

    // The headline: 2pc, 3 participants, kafka; throughput at 64 (or the highest run), latency at 1.
    const head = kafkaCells.filter((c) => c.protocol === '2pc' && c.participants === 3);
    const loaded = head.find((c) => c.concurrency === 64) ?? [...head].sort((a, b) => b.concurrency - a.concurrency)[0];
    const single = head.find((c) => c.concurrency === 1);
    if (loaded || single) {
      const ceiling = loaded ? ceilings.get(ceilingKey('2pc', 3, loaded.concurrency)) : undefined;
      const tps = loaded ? loaded.tps.toFixed(0) : '-';
      const p50 = single ? ms(single.latency.p50) : '-';
      const ratio = single ? (single.latency.p50 / floorOf('2pc')).toFixed(2) : '-';
      const cratio = loaded && ceiling ? (loaded.tps / ceiling.tps).toFixed(2) : '-';
      const rss = loaded ? loaded.rssMb.toFixed(0) : single!.rssMb.toFixed(0);
      say('');
      say(`bench: tps=${tps} p50=${p50} ms floor=${ms(floorOf('2pc'))} ms latency_ratio=${ratio} ceiling_ratio=${cratio} rss=${rss} MB`);
    } else {
      say('');
      say('bench: the headline cell (2pc, 3 participants, kafka) was not in this run');
    }
  } finally {
    await dropDatabases(PG_ADMIN, [floorDbName]).catch(() => undefined);
    await broker.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    process.exit(3);
  },
);
