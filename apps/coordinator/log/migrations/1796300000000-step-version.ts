import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * tx_transaction.version: bumped by every saved step. A step saves only if the version is still the
 * one it read (optimistic concurrency between replicas), instead of holding a row lock across the
 * read, the step and the write.
 */
export class StepVersion1796300000000 implements MigrationInterface {
  name = 'StepVersion1796300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tx_transaction ADD COLUMN version integer NOT NULL DEFAULT 0`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tx_transaction DROP COLUMN version`);
  }
}
