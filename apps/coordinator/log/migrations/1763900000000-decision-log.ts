import { MigrationInterface, QueryRunner } from 'typeorm';

/** The decision log: transactions (with the decision) and their participants (with votes and acks). */
export class DecisionLog1763900000000 implements MigrationInterface {
  name = 'DecisionLog1763900000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE tx_transaction (
        id uuid PRIMARY KEY,
        protocol text NOT NULL CHECK (protocol IN ('2pc', '3pc')),
        state text NOT NULL,
        outcome text CHECK (outcome IN ('commit', 'abort')),
        reason text,
        timeout_ms integer NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL,
        deadline timestamptz NOT NULL,
        decided_at timestamptz,
        completed_at timestamptz,
        updated_at timestamptz NOT NULL,
        idempotency_key text,
        request_hash text
      )`);
    await q.query(`
      CREATE TABLE tx_participant (
        tx_id uuid NOT NULL REFERENCES tx_transaction(id) ON DELETE CASCADE,
        name text NOT NULL,
        position integer NOT NULL,
        payload jsonb NOT NULL DEFAULT '{}',
        url text,
        vote text CHECK (vote IN ('yes', 'no')),
        vote_reason text,
        pre_committed boolean NOT NULL DEFAULT false,
        acked boolean NOT NULL DEFAULT false,
        PRIMARY KEY (tx_id, name)
      )`);
    // Idempotent begin; newest-first listing with its cursor; the state filter; recovery and sweep scans
    // of unfinished transactions only; the participant filter.
    await q.query(`CREATE UNIQUE INDEX tx_transaction_idempotency_key ON tx_transaction (idempotency_key) WHERE idempotency_key IS NOT NULL`);
    await q.query(`CREATE INDEX tx_transaction_created ON tx_transaction (created_at DESC, id DESC)`);
    await q.query(`CREATE INDEX tx_transaction_state_created ON tx_transaction (state, created_at DESC, id DESC)`);
    await q.query(`CREATE INDEX tx_transaction_unfinished ON tx_transaction (updated_at) WHERE completed_at IS NULL`);
    await q.query(`CREATE INDEX tx_participant_name ON tx_participant (name, tx_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE tx_participant`);
    await q.query(`DROP TABLE tx_transaction`);
  }
}
