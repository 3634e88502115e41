import { z } from 'zod';

/** Wire protocol version carried in every message's `v` field (CONTRACT section 3). */
export const PROTOCOL_VERSION = 1;

/** Participant names become Kafka topic suffixes, so they use Kafka's legal topic characters. */
export const PARTICIPANT_NAME = /^[A-Za-z0-9._-]{1,100}$/;

export const protocolSchema = z.enum(['2pc', '3pc']);
export type CommitProtocol = z.infer<typeof protocolSchema>;

const uuid = z.string().uuid();
const isoDate = z.string().datetime({ offset: true });
const participantName = z.string().regex(PARTICIPANT_NAME, 'must be 1-100 of A-Z a-z 0-9 . _ -');
/** A JSON object; payloads and metadata are objects so that services can extend them. */
export const jsonObject = z.record(z.unknown());

const base = {
  v: z.literal(PROTOCOL_VERSION),
  txId: uuid,
  participant: participantName,
  protocol: protocolSchema,
  sentAt: isoDate,
};

const prepare = z.object({ ...base, type: z.literal('prepare'), deadline: isoDate, payload: jsonObject });
const preCommit = z.object({ ...base, type: z.literal('pre-commit') });
const commit = z.object({ ...base, type: z.literal('commit') });
const abort = z.object({ ...base, type: z.literal('abort'), reason: z.string().max(500).optional() });
const vote = z.object({
  ...base,
  type: z.literal('vote'),
  vote: z.enum(['yes', 'no']),
  reason: z.string().max(500).optional(),
});
const ack = z.object({ ...base, type: z.literal('ack'), of: z.enum(['pre-commit', 'commit', 'abort']) });
const statusRequest = z.object({ ...base, type: z.literal('status-request') });

/** Every message of CONTRACT section 3; unknown extra fields are kept (contracts only add fields). */
export const messageSchema = z.discriminatedUnion('type', [
  prepare.passthrough(),
  preCommit.passthrough(),
  commit.passthrough(),
  abort.passthrough(),
  vote.passthrough(),
  ack.passthrough(),
  statusRequest.passthrough(),
]);

export type ProtocolMessage = z.infer<typeof messageSchema>;
export type MessageType = ProtocolMessage['type'];
export type PrepareMessage = Extract<ProtocolMessage, { type: 'prepare' }>;
export type PreCommitMessage = Extract<ProtocolMessage, { type: 'pre-commit' }>;
export type CommitMessage = Extract<ProtocolMessage, { type: 'commit' }>;
export type AbortMessage = Extract<ProtocolMessage, { type: 'abort' }>;
export type VoteMessage = Extract<ProtocolMessage, { type: 'vote' }>;
export type AckMessage = Extract<ProtocolMessage, { type: 'ack' }>;
export type StatusRequestMessage = Extract<ProtocolMessage, { type: 'status-request' }>;

/** Messages the coordinator sends to participants, and those participants send back. */
export type CoordinatorToParticipant = PrepareMessage | PreCommitMessage | CommitMessage | AbortMessage;
export type ParticipantToCoordinator = VoteMessage | AckMessage | StatusRequestMessage;

const TO_PARTICIPANT: ReadonlySet<MessageType> = new Set(['prepare', 'pre-commit', 'commit', 'abort']);

export function isForParticipant(m: ProtocolMessage): m is CoordinatorToParticipant {
  return TO_PARTICIPANT.has(m.type);
}

export function isForCoordinator(m: ProtocolMessage): m is ParticipantToCoordinator {
  return !TO_PARTICIPANT.has(m.type);
}
