/**
 * `--watch s`: while a cell runs, one line every s seconds on where transactions wait, so that a
 * long run that degrades shows where: the decisions made in the window, the unfinished
 * transactions by state and the age of the oldest, each consumer group's lag (messages produced
 * to its topic and not yet committed as read; offsets are committed at most once a second), the
 * oldest offset each topic still holds (the test broker trims a partition's log at 5 MB), the
 * share of the window the coordinator's event loop was busy, its inbox's fetches a second and
 * messages a fetch (Kafka), the CPU each process used in the window, and how much of it each
 * process's main thread spent waiting for a core (a loop busy all the time on half a core of CPU
 * is waiting for one).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Admin, Kafka, logLevel } from 'kafkajs';
import { Client } from 'pg';
import { topics } from '../../libs/protocol';
import { coordinatorMetrics, metricSum } from './coordinator-metrics';
import { cpuPercents, cpuSeconds, runQueueSeconds } from './stats';

export interface WatchTarget {
  coordinatorUrl: string;
  coordinatorDatabaseUrl: string;
  /** Kafka only; over HTTP there are no groups to read. */
  bootstrap?: string;
  topicPrefix: string;
  /** Processes by the name to print them under. */
  pids: Map<string, number>;
  participants: string[];
  /** The databases whose backends' CPU is shown apart, by the name of the process they serve. */
  databases: { name: string; database: string }[];
}

/** One Postgres server process: its CPU seconds, and the database it serves (backends only). */
interface PostgresProcess {
  cpu: number;
  database?: string;
}

/** Every Postgres server process (the backends of every database), by pid. */
function postgresProcesses(): Map<number, PostgresProcess> {
  const byPid = new Map<number, PostgresProcess>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'postgres') continue;
      // A backend's title: "postgres: 15/main: <user> <database> <client> <activity>".
      const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim().split(/\s+/);
      byPid.set(Number(entry), { cpu: cpuSeconds(Number(entry)), database: title.length >= 5 ? title[3] : undefined });
    } catch {
      /* gone between listing and reading */
    }
  }
  return byPid;
}

/**
 * CPU seconds Postgres used between two readings, in all and by the database a backend serves; a
 * backend that started in between counts whole, one that ended is not seen.
 */
function postgresCpuDelta(before: Map<number, PostgresProcess>, now: Map<number, PostgresProcess>): { total: number; byDatabase: Map<string, number> } {
  let total = 0;
  const byDatabase = new Map<string, number>();
  for (const [pid, p] of now) {
    const used = p.cpu - (before.get(pid)?.cpu ?? 0);
    total += used;
    if (p.database) byDatabase.set(p.database, (byDatabase.get(p.database) ?? 0) + used);
  }
  return { total, byDatabase };
}

interface Reading {
  at: number;
  cpu: Map<string, number>;
  waits: Map<string, number>;
  postgres: Map<number, PostgresProcess>;
  committed: number;
  aborted: number;
  resends: number;
  loopBusyS: number;
  inboxFetches: number;
  inboxMessages: number;
}

export class Watch {
  private readonly timer: NodeJS.Timeout;
  private readonly db: Client;
  private readonly admin?: Admin;
  private last?: Reading;
  private readonly startedAt = Date.now();
  private busy = false;

  constructor(private readonly target: WatchTarget, everyS: number, private readonly say: (line: string) => void) {
    this.db = new Client({ connectionString: target.coordinatorDatabaseUrl });
    // Its database is dropped when the cell ends; an idle connection's error must not end the bench.
    this.db.on('error', () => undefined);
    if (target.bootstrap) {
      this.admin = new Kafka({ clientId: 'bench-watch', brokers: target.bootstrap.split(','), logLevel: logLevel.NOTHING }).admin();
    }
    this.timer = setInterval(() => void this.tick(), everyS * 1000);
  }

  async start(): Promise<void> {
    try {
      await this.db.connect();
      await this.admin?.connect();
      this.last = await this.read();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.admin?.disconnect().catch(() => undefined);
    await this.db.end().catch(() => undefined);
  }

  private async read(): Promise<Reading> {
    const cpu = new Map<string, number>();
    const waits = new Map<string, number>();
    for (const [name, pid] of this.target.pids) {
      try {
        cpu.set(name, cpuSeconds(pid));
        // The broker's main thread only reads commands; the mock cluster's own thread does its work.
        if (name !== 'broker') waits.set(name, runQueueSeconds(pid));
      } catch {
        cpu.set(name, NaN);
      }
    }
    const text = await coordinatorMetrics(this.target.coordinatorUrl).catch(() => '');
    return {
      at: Date.now(),
      cpu,
      waits,
      postgres: postgresProcesses(),
      committed: metricSum(text, 'txcoord_transactions_decided_total', 'outcome="commit"'),
      aborted: metricSum(text, 'txcoord_transactions_decided_total', 'outcome="abort"'),
      resends: metricSum(text, 'txcoord_resends_total'),
      loopBusyS: metricSum(text, 'txcoord_event_loop_busy_seconds_total'),
      inboxFetches: metricSum(text, 'txcoord_inbox_fetches_total'),
      inboxMessages: metricSum(text, 'txcoord_inbox_messages_total'),
    };
  }

  /** Lag of a group on a topic, and the lowest offset any of its partitions still holds. */
  private async lag(groupId: string, topic: string): Promise<{ lag: number; trimmed: number }> {
    const [ends, committed] = await Promise.all([
      this.admin!.fetchTopicOffsets(topic),
      this.admin!.fetchOffsets({ groupId, topics: [topic] }),
    ]);
    const read = new Map(committed[0].partitions.map((p) => [p.partition, Number(p.offset)]));
    let lag = 0;
    let trimmed = 0;
    for (const e of ends) {
      const at = read.get(e.partition) ?? -1;
      // The two reads are not one snapshot: a commit read after the end offsets may pass them.
      lag += Math.max(0, Number(e.high) - (at < 0 ? Number(e.low) : at));
      trimmed += Number(e.low);
    }
    return { lag, trimmed };
  }

  private async tick(): Promise<void> {
    if (this.busy || !this.last) return;
    this.busy = true;
    try {
      const now = await this.read();
      const s = (now.at - this.last.at) / 1000;
      const states = (
        await this.db.query(
          `SELECT state, count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float AS oldest
             FROM tx_transaction WHERE completed_at IS NULL GROUP BY state ORDER BY state`,
        )
      ).rows as { state: string; n: number; oldest: number }[];
      const unfinished = states.reduce((a, r) => a + r.n, 0);
      const oldest = states.reduce((a, r) => Math.max(a, r.oldest), 0);
      const parts = [
        `at ${String(Math.round((now.at - this.startedAt) / 1000)).padStart(4)} s:`,
        `${((now.committed - this.last.committed) / s).toFixed(0)} commits/s, ${now.aborted - this.last.aborted} aborts, ${now.resends - this.last.resends} resends;`,
        `unfinished ${unfinished}${states.length ? ` (${states.map((r) => `${r.state} ${r.n}`).join(', ')})` : ''}, oldest ${oldest.toFixed(1)} s;`,
      ];
      if (this.admin) {
        const t = topics(this.target.topicPrefix);
        const groups: [string, string, string][] = [
          ['coordinator', `${this.target.topicPrefix}coordinator`, t.coordinator],
          ...this.target.participants.map((p): [string, string, string] => [p, `txp.${p}`, t.participant(p)]),
        ];
        const lags = await Promise.all(groups.map(([, g, topic]) => this.lag(g, topic)));
        parts.push(`lag ${groups.map(([name], i) => `${name} ${lags[i].lag}`).join(', ')};`);
        const trimmed = lags.reduce((a, l) => a + l.trimmed, 0);
        if (trimmed > 0) parts.push(`trimmed ${trimmed};`);
      }
      parts.push(`coordinator loop busy ${(((now.loopBusyS - this.last.loopBusyS) / s) * 100).toFixed(0)} %;`);
      const fetches = now.inboxFetches - this.last.inboxFetches;
      if (this.admin) parts.push(`inbox ${(fetches / s).toFixed(0)} fetches/s, ${fetches ? ((now.inboxMessages - this.last.inboxMessages) / fetches).toFixed(1) : 0} messages a fetch;`);
      const cpu = cpuPercents(this.last.cpu, now.cpu, s);
      const pg = postgresCpuDelta(this.last.postgres, now.postgres);
      const byDatabase = this.target.databases.map((d) => `${d.name} ${(((pg.byDatabase.get(d.database) ?? 0) / s) * 100).toFixed(0)}`);
      cpu.push(`postgres ${((pg.total / s) * 100).toFixed(0)}${byDatabase.length ? ` (${byDatabase.join(', ')})` : ''}`);
      parts.push(`cpu % ${cpu.join(', ')};`);
      parts.push(`waiting for a core % ${cpuPercents(this.last.waits, now.waits, s).join(', ')}`);
      this.say(`      ${parts.join(' ')}`);
      this.last = now;
    } catch (err) {
      this.say(`      watch: ${(err as Error).message}`);
    } finally {
      this.busy = false;
    }
  }
}
