/**
 * Writes `count` transactions straight into a coordinator's log as a crash right after their
 * commit requests leaves them: 2PC, `preparing`, no votes, one deadline `deadlineS` seconds ahead,
 * each with `participants` (in that order). For the recovery bench and the deadline-storm test;
 * resolves with their ids.
 */
import type { Client } from 'pg';

export async function seedInFlight(
  db: Client,
  count: number,
  participants: { name: string; url: string | null }[],
  deadlineS: number,
): Promise<string[]> {
  const { rows } = await db.query(
    `INSERT INTO tx_transaction (id, protocol, state, timeout_ms, metadata, created_at, deadline, updated_at)
     SELECT gen_random_uuid(), '2pc', 'preparing', 60000, '{}', now(), now() + make_interval(secs => $2), now()
       FROM generate_series(1, $1)
     RETURNING id`,
    [count, deadlineS],
  );
  const ids = rows.map((r: { id: string }) => r.id);
  for (const [position, p] of participants.entries()) {
    await db.query(
      `INSERT INTO tx_participant (tx_id, name, position, payload, url, pre_committed, acked, tx_created_at)
       SELECT id, $2, $3, '{}', $4, false, false, now() FROM unnest($1::uuid[]) AS id`,
      [ids, p.name, position, p.url],
    );
  }
  return ids;
}
