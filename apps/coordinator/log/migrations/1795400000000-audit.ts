import { MigrationInterface, QueryRunner } from 'typeorm';

/** tx_audit: every operator action (resend, abort) with who, on what, when and with what result. */
export class Audit1795400000000 implements MigrationInterface {
  name = 'Audit1795400000000';

  async up(q: QueryRunner): Promise<void> {
    // No foreign key to tx_transaction: an attempt on an unknown id is recorded too.
    await q.query(`
      CREATE TABLE tx_audit (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        actor text NOT NULL,
        action text NOT NULL CHECK (action IN ('resend', 'abort')),
        tx_id uuid NOT NULL,
        result text NOT NULL,
        reason text,
        detail text
      )`);
    await q.query(`CREATE INDEX tx_audit_at ON tx_audit (at DESC, id DESC)`);
    await q.query(`CREATE INDEX tx_audit_tx ON tx_audit (tx_id, at DESC)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE tx_audit`);
  }
}
