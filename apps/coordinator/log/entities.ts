import { Column, Entity, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';

// The schema itself is in migrations/; these map it for TypeORM (synchronize is never used).

/** One row per transaction: its state and, once decided, the durable decision (outcome). */
@Entity('tx_transaction')
export class TransactionRow {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') protocol!: string;
  @Column('text') state!: string;
  @Column('text', { nullable: true }) outcome!: string | null;
  @Column('text', { nullable: true }) reason!: string | null;
  @Column('integer', { name: 'timeout_ms' }) timeoutMs!: number;
  @Column('jsonb') metadata!: Record<string, unknown>;
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz') deadline!: Date;
  @Column('timestamptz', { name: 'decided_at', nullable: true }) decidedAt!: Date | null;
  @Column('timestamptz', { name: 'completed_at', nullable: true }) completedAt!: Date | null;
  @Column('timestamptz', { name: 'updated_at' }) updatedAt!: Date;
  @Column('text', { name: 'idempotency_key', nullable: true }) idempotencyKey!: string | null;
  @Column('text', { name: 'request_hash', nullable: true }) requestHash!: string | null;
  /** Bumped by every saved step; a step saves only if it is still the version it read. */
  @Column('integer', { default: 0 }) version!: number;
}

/** One row per enlisted participant, with its vote and whether it acknowledged the outcome. */
@Entity('tx_participant')
export class ParticipantRow {
  @PrimaryColumn('uuid', { name: 'tx_id' }) txId!: string;
  @PrimaryColumn('text') name!: string;
  @Column('integer') position!: number;
  @Column('jsonb') payload!: Record<string, unknown>;
  @Column('text', { nullable: true }) url!: string | null;
  @Column('text', { nullable: true }) vote!: string | null;
  @Column('text', { name: 'vote_reason', nullable: true }) voteReason!: string | null;
  @Column('boolean', { name: 'pre_committed' }) preCommitted!: boolean;
  @Column('boolean') acked!: boolean;
  /** The transaction's created_at, so that one participant's transactions list newest first from an index. */
  @Column('timestamptz', { name: 'tx_created_at' }) txCreatedAt!: Date;
  @ManyToOne(() => TransactionRow, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'tx_id' })
  tx?: TransactionRow;
}
