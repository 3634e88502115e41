import type { QueryResult } from 'pg';
import type { QueryRunner } from 'typeorm';

/*
 * Statements sent in the same round trip as the START TRANSACTION or the COMMIT of a TypeORM query
 * runner's transaction.
 *
 * Why: every statement is a round trip to Postgres, and on a busy machine each one costs two
 * context switches and a wait for both processes to be scheduled (the bench's participants spent
 * more of their time in socket writes to Postgres than anywhere else). TypeORM's startTransaction()
 * and commitTransaction() send START TRANSACTION and COMMIT as queries of their own; here that one
 * query carries ours as well, as a simple-protocol query string, whose statements Postgres runs in
 * order, each with its own snapshot (so a read after a lock sees what the lock's previous holder
 * committed), stopping at the first that fails (so a failed write is never followed by its COMMIT).
 * TypeORM still does its bookkeeping and fires its transaction events; only its query log does not
 * show the combined statement. Values in the statements must be literals (the simple protocol has
 * no parameters): quote them with the driver's escapeLiteral().
 *
 * Should a TypeORM version send something else, the statements go in a round trip of their own,
 * after the start or before the commit, as they would without this.
 */

type Driver = { query(sql: string): Promise<QueryResult | QueryResult[]> };

/** Starts `q`'s transaction with `statements` in the same round trip; returns each one's rows. */
export async function startTransactionWith(q: QueryRunner, statements: string[]): Promise<unknown[][]> {
  const driver = (await q.connect()) as Driver;
  const sql = statements.join(';\n');
  let rows: unknown[][] | undefined;
  await whileReplacingFirstQuery(q, () => q.startTransaction(), async (query, passThrough) => {
    if (query !== 'START TRANSACTION') return passThrough();
    rows = rowsOf(await driver.query(`${query};\n${sql}`)).slice(1);
  });
  return rows ?? rowsOf(await driver.query(sql));
}

/** Commits `q`'s transaction with `statements` run just before it, in the same round trip. */
export async function commitTransactionWith(q: QueryRunner, statements: string[]): Promise<void> {
  if (statements.length === 0) return q.commitTransaction();
  const driver = (await q.connect()) as Driver;
  const sql = statements.join(';\n');
  await whileReplacingFirstQuery(q, () => q.commitTransaction(), async (query, passThrough) => {
    if (query === 'COMMIT') return void (await driver.query(`${sql};\n${query}`));
    await driver.query(sql);
    return passThrough();
  });
}

/**
 * Runs `act` with the first parameterless query it sends through `q` handed to `replace` instead
 * (which may still send it as TypeORM would, with passThrough); later queries go their usual way.
 */
async function whileReplacingFirstQuery(
  q: QueryRunner,
  act: () => Promise<void>,
  replace: (query: string, passThrough: () => Promise<unknown>) => Promise<unknown>,
): Promise<void> {
  const ownProperty = Object.prototype.hasOwnProperty.call(q, 'query');
  const typeormQuery = q.query as (...args: unknown[]) => Promise<unknown>;
  let replaced = false;
  q.query = (async (query: string, parameters?: unknown[], structured?: boolean) => {
    const passThrough = () => typeormQuery.call(q, query, parameters, structured);
    if (replaced || parameters !== undefined) return passThrough();
    replaced = true;
    return (await replace(query, passThrough)) ?? (structured ? { records: [], raw: [] } : []);
  }) as QueryRunner['query'];
  try {
    await act();
  } finally {
    if (ownProperty) q.query = typeormQuery as QueryRunner['query'];
    else delete (q as { query?: unknown }).query;
  }
}

function rowsOf(result: QueryResult | QueryResult[]): unknown[][] {
  return (Array.isArray(result) ? result : [result]).map((r) => r.rows);
}
