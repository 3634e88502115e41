import type { QueryResult } from 'pg';
import type { QueryRunner } from 'typeorm';

/**
 * Starts `q`'s transaction with `statements` sent in the same round trip as its
 * `START TRANSACTION`, and returns the rows of each of them, in order.
 *
 * Why: every statement is a round trip to Postgres, and on a busy machine each one costs two
 * context switches and a wait for both processes to be scheduled (the bench's participants spent
 * more of their time in socket writes to Postgres than anywhere else). TypeORM's startTransaction()
 * sends START TRANSACTION as a query of its own; here that one query carries ours as well, as a
 * simple-protocol query string, whose statements Postgres runs in order, each with its own snapshot
 * (so a read after a lock sees what the lock's previous holder committed). TypeORM still does its
 * bookkeeping and fires its transaction events around it; only its query log does not show the
 * statement. Values in `statements` must be literals (the simple protocol has no parameters): quote
 * them with the driver's escapeLiteral().
 *
 * Should a TypeORM version start transactions differently, `statements` go in a round trip of their
 * own after startTransaction(), as before. If they fail, the transaction is open and aborted: the
 * caller rolls it back as after any failed statement.
 */
export async function startTransactionWith(q: QueryRunner, statements: string[]): Promise<unknown[][]> {
  const client = (await q.connect()) as { query(sql: string): Promise<QueryResult | QueryResult[]> };
  const sql = statements.join(';\n');
  let rows: unknown[][] | undefined;
  const rowsOf = (r: QueryResult | QueryResult[]) => (Array.isArray(r) ? r : [r]).map((x) => x.rows);

  const ownQuery = Object.prototype.hasOwnProperty.call(q, 'query');
  const typeormQuery = q.query;
  q.query = (async (query: string, parameters?: unknown[], structured?: boolean) => {
    if (rows === undefined && query === 'START TRANSACTION' && parameters === undefined) {
      rows = rowsOf(await client.query(`START TRANSACTION;\n${sql}`)).slice(1);
      return structured ? { records: [], raw: [] } : [];
    }
    return (typeormQuery as (...args: unknown[]) => Promise<unknown>).call(q, query, parameters, structured);
  }) as QueryRunner['query'];
  try {
    await q.startTransaction();
  } finally {
    if (ownQuery) q.query = typeormQuery;
    else delete (q as { query?: unknown }).query;
  }
  return rows ?? rowsOf(await client.query(sql));
}
