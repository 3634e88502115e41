/**
 * Recovery speed: the coordinator is killed (-9) with `inFlight` transactions in flight (here:
 * written straight into its log as `preparing`, no votes yet, deadline a minute ahead, as a crash
 * right after the commit requests would leave them), then restarted. Measured from the restart:
 * to /health/ready (recovery done: every one of them stepped again and its prepares handed to the
 * transport), to the first vote received (answers are being read: the coordinator is driving
 * them), and to all of them committed; and how many were committed along the way.
 */
import { Client } from 'pg';
import { seedInFlight } from '../support/in-flight';
import { Cluster } from './cluster';
import { coordinatorMetrics, metricSum } from './coordinator-metrics';
import { ProcessSampler } from './stats';

export interface RecoveryFigures {
  inFlight: number;
  readyMs: number;
  /** From the restart to the first vote written to the log after it. */
  firstVoteMs: number | null;
  /** From the restart to every one of them decided (committed, or aborted at its deadline). */
  allDecidedMs: number | null;
  /** Every 10 s from the restart: how many had committed and aborted, and how many votes the coordinator had received. */
  progress: { s: number; committed: number; aborted: number; votes: number }[];
  /** The restarted coordinator's peak resident memory while driving them, and its peak JS heap in use. */
  peakRssMb: number;
  peakHeapMb: number;
}

export async function measureRecovery(cluster: Cluster, inFlight: number, finishTimeoutMs = 120_000): Promise<RecoveryFigures> {
  await cluster.coordinator.kill();
  const db = new Client({ connectionString: cluster.coordinatorDatabaseUrl });
  await db.connect();
  try {
    const ids = await seedInFlight(db, inFlight, cluster.participants, 60);
    const started = Date.now();
    const restart = cluster.coordinator.start();
    // start() has spawned the process: sampled from now, so memory during start-up recovery counts.
    const sampler = new ProcessSampler(cluster.coordinator.pid!);
    let peakHeap = 0;
    const heapTimer = setInterval(() => {
      void heapUsed(cluster.coordinatorUrl).then((b) => (peakHeap = Math.max(peakHeap, b)), () => undefined);
    }, 500);
    // Watched on its own, every 100 ms from the restart: the progress loop below waits for counts
    // from a busy database and would see the first vote a second or more late. Votes that decide
    // nothing are held in the coordinator's memory, not logged: its metrics count what it received.
    let firstVoteMs: number | null = null;
    let watching = false;
    const voteTimer = setInterval(() => {
      if (watching || firstVoteMs !== null) return;
      watching = true;
      void votesReceived(cluster.coordinatorUrl)
        .then((votes) => {
          if (votes > 0 && firstVoteMs === null) firstVoteMs = Date.now() - started;
        }, () => undefined)
        .finally(() => (watching = false));
    }, 100);
    await restart;
    const readyMs = Date.now() - started;
    let allDecidedMs: number | null = null;
    const progress: RecoveryFigures['progress'] = [];
    try {
      while (Date.now() - started < finishTimeoutMs) {
        const { committed, aborted } = (await db.query(
          `SELECT (SELECT count(*)::int FROM tx_transaction WHERE id = ANY($1::uuid[]) AND outcome = 'commit') AS committed,
                  (SELECT count(*)::int FROM tx_transaction WHERE id = ANY($1::uuid[]) AND outcome = 'abort') AS aborted`,
          [ids],
        )).rows[0];
        const votes = await votesReceived(cluster.coordinatorUrl).catch(() => 0);
        const elapsed = Date.now() - started;
        if (elapsed >= (progress.length + 1) * 10_000) progress.push({ s: (progress.length + 1) * 10, committed, aborted, votes });
        if (committed + aborted === inFlight) {
          allDecidedMs = elapsed;
          break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      clearInterval(heapTimer);
      clearInterval(voteTimer);
    }
    return { inFlight, readyMs, firstVoteMs, allDecidedMs, progress, peakRssMb: sampler.stop().peakRssMb, peakHeapMb: peakHeap / 1e6 };
  } finally {
    await db.end();
  }
}

/** The coordinator's heap in use and the votes it has received, from its metrics. */
const heapUsed = async (url: string) => metricSum(await coordinatorMetrics(url), 'txcoord_nodejs_heap_size_used_bytes');
const votesReceived = async (url: string) => metricSum(await coordinatorMetrics(url), 'txcoord_messages_received_total', 'type="vote"');
