import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * For speed at any size of the log:
 * - tx_transaction.version, bumped by every saved step: a step saves only if the version is still
 *   the one it read (optimistic concurrency between replicas), instead of holding a row lock
 *   across the read, the step and the write;
 * - an index of finished transactions by completion time, for the retention purge.
 */
export class Performance1796300000000 implements MigrationInterface {
  name = 'Performance1796300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tx_transaction ADD COLUMN version integer NOT NULL DEFAULT 0`);
    await q.query(`CREATE INDEX tx_transaction_completed ON tx_transaction (completed_at) WHERE completed_at IS NOT NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX tx_transaction_completed`);
    await q.query(`ALTER TABLE tx_transaction DROP COLUMN version`);
  }
}
