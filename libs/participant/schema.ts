import type { DataSource, MigrationInterface, QueryRunner } from 'typeorm';

/** The library's one table: its state per (transaction, participant). */
export const PARTICIPANT_LOG_TABLE = 'tx_participant_log';
/** Which of the library's migrations have run in this database. */
export const PARTICIPANT_MIGRATIONS_TABLE = 'tx_participant_migrations';

/**
 * Creates `tx_participant_log`. A TypeORM migration class, so a service that runs its own TypeORM
 * migrations may list it there too; `up` is idempotent, so running it twice is harmless.
 */
export class CreateParticipantLog1732300000000 implements MigrationInterface {
  name = 'CreateParticipantLog1732300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE IF NOT EXISTS ${PARTICIPANT_LOG_TABLE} (
        tx_id       uuid        NOT NULL,
        participant text        NOT NULL,
        protocol    text        NOT NULL CHECK (protocol IN ('2pc', '3pc')),
        state       text        NOT NULL CHECK (state IN ('prepared', 'precommitted', 'committed', 'aborted')),
        payload     jsonb,
        deadline    timestamptz,
        reason      text,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tx_id, participant)
      )`);
    // Start-up recovery reads the in-doubt records of one participant.
    await q.query(`
      CREATE INDEX IF NOT EXISTS ${PARTICIPANT_LOG_TABLE}_in_doubt
        ON ${PARTICIPANT_LOG_TABLE} (participant) WHERE state IN ('prepared', 'precommitted')`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS ${PARTICIPANT_LOG_TABLE}`);
  }
}

/** Moves one record from one state to another, and fails loudly if it was not in the first. */
export const PARTICIPANT_MOVE_FUNCTION = 'tx_participant_move';

/**
 * Creates `tx_participant_move(tx_id, participant, from, to, reason)`: the update of a record's
 * state with its guard (exactly one record in state `from`) raised as an error by Postgres, so the
 * update can be sent in the round trip of the COMMIT that follows it and still stop that COMMIT.
 */
export class AddParticipantMove1796600000000 implements MigrationInterface {
  name = 'AddParticipantMove1796600000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE OR REPLACE FUNCTION ${PARTICIPANT_MOVE_FUNCTION}(
        p_tx_id uuid, p_participant text, p_from text, p_to text, p_reason text
      ) RETURNS void LANGUAGE plpgsql AS $fn$
      BEGIN
        UPDATE ${PARTICIPANT_LOG_TABLE} SET state = p_to, reason = COALESCE(p_reason, reason), updated_at = now()
         WHERE tx_id = p_tx_id AND participant = p_participant AND state = p_from;
        IF NOT FOUND THEN
          RAISE EXCEPTION '${PARTICIPANT_LOG_TABLE}: expected one % record of %/% to move to %', p_from, p_tx_id, p_participant, p_to;
        END IF;
      END
      $fn$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION IF EXISTS ${PARTICIPANT_MOVE_FUNCTION}(uuid, text, text, text, text)`);
  }
}

/** The library's migrations, oldest first. Only ever append. */
export const PARTICIPANT_MIGRATIONS: MigrationInterface[] = [
  new CreateParticipantLog1732300000000(),
  new AddParticipantMove1796600000000(),
];

/**
 * Runs the library's pending migrations in one transaction, under an advisory lock so
 * that several instances starting at once do not race. Independent of the service's own TypeORM
 * migrations (its DataSource need not know about ours).
 */
export async function runParticipantMigrations(dataSource: DataSource): Promise<string[]> {
  const applied: string[] = [];
  const q = dataSource.createQueryRunner();
  await q.connect();
  try {
    await q.startTransaction();
    try {
      await q.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [PARTICIPANT_MIGRATIONS_TABLE]);
      await q.query(`
        CREATE TABLE IF NOT EXISTS ${PARTICIPANT_MIGRATIONS_TABLE} (
          name       text        PRIMARY KEY,
          applied_at timestamptz NOT NULL DEFAULT now()
        )`);
      const rows: { name: string }[] = await q.query(`SELECT name FROM ${PARTICIPANT_MIGRATIONS_TABLE}`);
      const done = new Set(rows.map((r) => r.name));
      for (const m of PARTICIPANT_MIGRATIONS) {
        const name = m.name ?? m.constructor.name;
        if (done.has(name)) continue;
        await m.up(q);
        await q.query(`INSERT INTO ${PARTICIPANT_MIGRATIONS_TABLE} (name) VALUES ($1)`, [name]);
        applied.push(name);
      }
      await q.commitTransaction();
    } catch (err) {
      await q.rollbackTransaction().catch(() => undefined);
      throw err;
    }
  } finally {
    await q.release();
  }
  return applied;
}
