import { escapeLiteral } from 'pg';
import type { DataSource, QueryRunner } from 'typeorm';
import type { CommitProtocol } from '../protocol';
import { PARTICIPANT_LOG_TABLE as T, PARTICIPANT_MOVE_FUNCTION } from './schema';
import { startTransactionWith } from './typeorm-transaction';
import type { ParticipantTxState } from './types';

/** One row of `tx_participant_log`. */
export interface ParticipantRecord {
  txId: string;
  participant: string;
  protocol: CommitProtocol;
  state: ParticipantTxState;
  payload: Record<string, unknown> | null;
  deadline: Date | null;
  reason: string | null;
  updatedAt: Date;
}

interface Row {
  tx_id: string;
  participant: string;
  protocol: CommitProtocol;
  state: ParticipantTxState;
  payload: Record<string, unknown> | null;
  deadline: Date | null;
  reason: string | null;
  updated_at: Date;
}

const COLUMNS = 'tx_id, participant, protocol, state, payload, deadline, reason, updated_at';

function toRecord(r: Row): ParticipantRecord {
  return {
    txId: r.tx_id,
    participant: r.participant,
    protocol: r.protocol,
    state: r.state,
    payload: r.payload,
    deadline: r.deadline,
    reason: r.reason,
    updatedAt: r.updated_at,
  };
}

export const IN_DOUBT: ReadonlySet<ParticipantTxState> = new Set(['prepared', 'precommitted']);

/** The savepoint a handler's work is rolled back to when it fails (set by startLockedTx). */
export const HANDLER_SAVEPOINT = 'txp_handler';

/**
 * Starts the local transaction that handles one message of (transaction, participant), and
 * returns its record. In the round trip of START TRANSACTION (startTransactionWith): a lock that
 * serializes work on the pair across every process sharing the database, for the rest of the
 * transaction (taken before reading the record, so it also covers the case where none exists
 * yet); the read, a statement of its own so that it sees what the lock's previous holder
 * committed; and HANDLER_SAVEPOINT.
 */
export async function startLockedTx(q: QueryRunner, txId: string, participant: string): Promise<ParticipantRecord | null> {
  const [, rows] = await startTransactionWith(q, [
    `SELECT pg_advisory_xact_lock(hashtextextended(${escapeLiteral(`${T}:${participant}:${txId}`)}, 0))`,
    selectRecordSql(txId, participant),
    `SAVEPOINT ${HANDLER_SAVEPOINT}`,
  ]);
  return firstRecord(rows as Row[]);
}

/** The record as it is now, outside any local transaction of the library's. */
export async function findRecord(ds: DataSource, txId: string, participant: string): Promise<ParticipantRecord | null> {
  return firstRecord(await ds.query(selectRecordSql(txId, participant)));
}

/** The read of one record, values quoted, so that startLockedTx can send it with START TRANSACTION. */
function selectRecordSql(txId: string, participant: string): string {
  return `SELECT ${COLUMNS} FROM ${T} WHERE tx_id = ${escapeLiteral(txId)} AND participant = ${escapeLiteral(participant)}`;
}

function firstRecord(rows: Row[]): ParticipantRecord | null {
  return rows.length ? toRecord(rows[0]) : null;
}

type NewRecord = Pick<ParticipantRecord, 'txId' | 'participant' | 'protocol' | 'state'> &
  Partial<Pick<ParticipantRecord, 'payload' | 'deadline' | 'reason'>>;

/** The INSERT of a new record, values quoted, for sending with a COMMIT (commitTransactionWith). */
export function insertRecordSql(r: NewRecord): string {
  const literal = (v: string | null | undefined) => (v === null || v === undefined ? 'NULL' : escapeLiteral(v));
  const payload = r.payload === undefined || r.payload === null ? null : JSON.stringify(r.payload);
  return `INSERT INTO ${T} (tx_id, participant, protocol, state, payload, deadline, reason)
     VALUES (${literal(r.txId)}, ${literal(r.participant)}, ${literal(r.protocol)}, ${literal(r.state)},
             ${literal(payload)}::jsonb, ${literal(r.deadline?.toISOString())}::timestamptz, ${literal(r.reason)})`;
}

/**
 * The move of a record from `from` to `to`, values quoted, for sending with a COMMIT
 * (commitTransactionWith): if the record is not in `from`, Postgres raises an error (SQLSTATE
 * P0001) and the COMMIT after it does not run.
 */
export function moveRecordSql(txId: string, participant: string, from: ParticipantTxState, to: ParticipantTxState, reason?: string): string {
  const reasonLiteral = reason === undefined ? 'NULL' : escapeLiteral(reason);
  return `SELECT ${PARTICIPANT_MOVE_FUNCTION}(${escapeLiteral(txId)}, ${escapeLiteral(participant)}, ${escapeLiteral(from)}, ${escapeLiteral(to)}, ${reasonLiteral})`;
}

/** Every record of this participant still waiting for a decision. */
export async function listInDoubt(ds: DataSource, participant: string): Promise<ParticipantRecord[]> {
  const rows: Row[] = await ds.query(
    `SELECT ${COLUMNS} FROM ${T} WHERE participant = $1 AND state IN ('prepared', 'precommitted')
      ORDER BY updated_at`,
    [participant],
  );
  return rows.map(toRecord);
}
