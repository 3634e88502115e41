/**
 * Lookups against a large log: the coordinator's get and list answer from indexes, so they should
 * cost the same with a million finished transactions in the log as with ten thousand. Seeds the
 * coordinator's database directly (finished transactions with one participant each), then times
 * the REST calls.
 */
import { Agent, get } from 'node:http';
import { Client } from 'pg';
import { percentile } from './stats';

export interface LookupFigures {
  logged: number;
  getP50: number;
  listP50: number;
  listByStateP50: number;
  listByParticipantP50: number;
}

/** Adds finished transactions to the log until it holds `total`. */
export async function seedFinished(databaseUrl: string, total: number): Promise<void> {
  const db = new Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const [{ n }] = (await db.query('SELECT count(*)::int AS n FROM tx_transaction')).rows as { n: number }[];
    for (let done = n; done < total; ) {
      const batch = Math.min(100_000, total - done);
      await db.query('BEGIN');
      const ids = await db.query(
        `INSERT INTO tx_transaction (id, protocol, state, outcome, reason, timeout_ms, metadata, created_at, deadline,
                                     decided_at, completed_at, updated_at)
         SELECT gen_random_uuid(), '2pc', 'committed', 'commit', NULL, 30000, '{}', t, t + interval '30 s', t, t, t
           FROM (SELECT now() - interval '1 day' - (g * interval '1 ms') AS t FROM generate_series(1, $1) g) s
         RETURNING id, created_at`,
        [batch],
      );
      await db.query(
        `INSERT INTO tx_participant (tx_id, name, position, payload, vote, pre_committed, acked, tx_created_at)
         SELECT x.id, 'seed-' || (abs(hashtext(x.id::text)) % 50), 0, '{}', 'yes', false, true, x.created_at
           FROM unnest($1::uuid[], $2::timestamptz[]) AS x(id, created_at)`,
        [ids.rows.map((r: { id: string }) => r.id), ids.rows.map((r: { created_at: Date }) => r.created_at)],
      );
      await db.query('COMMIT');
      done += batch;
    }
    await db.query('ANALYZE tx_transaction');
    await db.query('ANALYZE tx_participant');
  } finally {
    await db.end();
  }
}

export async function measureLookups(coordinatorUrl: string, databaseUrl: string, samples = 200): Promise<LookupFigures> {
  const db = new Client({ connectionString: databaseUrl });
  await db.connect();
  let ids: string[];
  let logged: number;
  try {
    ids = (await db.query('SELECT id FROM tx_transaction TABLESAMPLE SYSTEM (1) LIMIT $1', [samples])).rows.map((r: { id: string }) => r.id);
    if (ids.length < samples) ids = (await db.query('SELECT id FROM tx_transaction LIMIT $1', [samples])).rows.map((r: { id: string }) => r.id);
    logged = (await db.query('SELECT count(*)::int AS n FROM tx_transaction')).rows[0].n;
  } finally {
    await db.end();
  }
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const time = async (paths: string[]) => {
    const t: number[] = [];
    for (const path of paths) {
      const t0 = performance.now();
      await fetchStatus(agent, `${coordinatorUrl}${path}`);
      t.push(performance.now() - t0);
    }
    return percentile(t, 50);
  };
  const n = ids.length;
  const figures = {
    logged,
    getP50: await time(ids.map((id) => `/v1/transactions/${id}`)),
    listP50: await time(Array.from({ length: n }, () => '/v1/transactions?limit=50')),
    listByStateP50: await time(Array.from({ length: n }, () => '/v1/transactions?limit=50&state=committed')),
    listByParticipantP50: await time(Array.from({ length: n }, (_, i) => `/v1/transactions?limit=50&participant=seed-${i % 50}`)),
  };
  agent.destroy();
  return figures;
}

function fetchStatus(agent: Agent, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(200) : reject(new Error(`${url} answered ${res.statusCode}`))));
    }).on('error', reject);
  });
}
