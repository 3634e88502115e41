import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/**
 * One operator action taken by hand (txctl, or the admin API directly): who, what, on which
 * transaction, and what came of it. Written for refused and failed attempts too. The schema is in
 * migrations/1795400000000-audit.ts.
 */
@Entity('tx_audit')
export class AuditRow {
  /** bigserial: TypeORM hands it back as a string. */
  @PrimaryGeneratedColumn('increment', { type: 'bigint' }) id!: string;
  @Column('timestamptz') at!: Date;
  /** `key:<first 12 hex digits of the API key's SHA-256>`, or `anonymous` when no keys are configured. */
  @Column('text') actor!: string;
  /** `resend` | `abort`. */
  @Column('text') action!: string;
  @Column('uuid', { name: 'tx_id' }) txId!: string;
  /** `resent`, `nothing-to-resend`, `aborted`, `already-aborted`, `refused`, `not-found`. */
  @Column('text') result!: string;
  /** What the operator gave as the reason, if anything. */
  @Column('text', { nullable: true }) reason!: string | null;
  /** What happened, in words: the messages sent, or why the action was refused. */
  @Column('text', { nullable: true }) detail!: string | null;
}
