/**
 * Recovery speed: the coordinator is killed (-9) with `inFlight` transactions in flight (here:
 * written straight into its log as `preparing`, no votes yet, deadline a minute ahead, as a crash
 * right after the commit requests would leave them), then restarted. Measured: from the restart
 * to /health/ready (recovery done: every one of them stepped again and its prepares handed to the
 * transport), and to all of them committed.
 */
import { Client } from 'pg';
import { Cluster } from './cluster';
import { ProcessSampler } from './stats';

export interface RecoveryFigures {
  inFlight: number;
  readyMs: number;
  allCommittedMs: number | null;
  /** The restarted coordinator's peak resident memory while driving them. */
  peakRssMb: number;
}

export async function measureRecovery(cluster: Cluster, inFlight: number, finishTimeoutMs = 120_000): Promise<RecoveryFigures> {
  await cluster.coordinator.kill();
  const db = new Client({ connectionString: cluster.coordinatorDatabaseUrl });
  await db.connect();
  try {
    const ids = (
      await db.query(
        `INSERT INTO tx_transaction (id, protocol, state, timeout_ms, metadata, created_at, deadline, updated_at)
         SELECT gen_random_uuid(), '2pc', 'preparing', 60000, '{}', now(), now() + interval '60 s', now()
           FROM generate_series(1, $1)
         RETURNING id`,
        [inFlight],
      )
    ).rows.map((r: { id: string }) => r.id);
    for (const [position, p] of cluster.participants.entries()) {
      await db.query(
        `INSERT INTO tx_participant (tx_id, name, position, payload, url, pre_committed, acked)
         SELECT id, $2, $3, '{}', $4, false, false FROM unnest($1::uuid[]) AS id`,
        [ids, p.name, position, p.url],
      );
    }
    const started = Date.now();
    await cluster.coordinator.start();
    const readyMs = Date.now() - started;
    const sampler = new ProcessSampler(cluster.coordinator.pid!);
    let allCommittedMs: number | null = null;
    while (Date.now() - started < finishTimeoutMs) {
      const { n } = (await db.query(`SELECT count(*)::int AS n FROM tx_transaction WHERE id = ANY($1::uuid[]) AND state <> 'committed'`, [ids])).rows[0];
      if (n === 0) {
        allCommittedMs = Date.now() - started;
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    return { inFlight, readyMs, allCommittedMs, peakRssMb: sampler.stop().peakRssMb };
  } finally {
    await db.end();
  }
}
