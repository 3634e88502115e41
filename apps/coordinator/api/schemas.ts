import { z } from 'zod';
import { PARTICIPANT_NAME, protocolSchema } from '../../../libs/protocol';

/** Every transaction state (CONTRACT section 2); the last two are final. */
export const TX_STATES = ['active', 'preparing', 'precommitted', 'committing', 'aborting', 'committed', 'aborted'] as const;

/**
 * Field-size limits, below the body limit (TX_BODY_LIMIT_BYTES): a participant's payload travels
 * in every prepare (and a Kafka message has a size limit of its own, 1 MB by default), and each is
 * stored in the decision log. Measured as the bytes of the field's JSON.
 */
export const MAX_PAYLOAD_BYTES = 64 * 1024;
export const MAX_METADATA_BYTES = 16 * 1024;

const jsonBytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v) ?? '', 'utf8');

/** A JSON object of at most `maxBytes` bytes once serialized. */
const jsonObject = (maxBytes: number) =>
  z.record(z.unknown())
    .refine((v) => jsonBytes(v) <= maxBytes, `must be at most ${maxBytes} bytes of JSON`)
    .describe(`a JSON object of at most ${maxBytes} bytes (serialized)`);

export const participantSchema = z.object({
  name: z.string().regex(PARTICIPANT_NAME, 'must be 1-100 characters of A-Z a-z 0-9 . _ -'),
  payload: jsonObject(MAX_PAYLOAD_BYTES).optional(),
  url: z.string().url().regex(/^https?:\/\//, 'must be an http(s) URL').max(2000).optional(),
}).strict();

export const beginSchema = z.object({
  protocol: protocolSchema.optional(),
  timeoutMs: z.number().int().min(100).max(3_600_000).optional(),
  participants: z.array(participantSchema).max(100).optional()
    .refine((ps) => !ps || new Set(ps.map((p) => p.name)).size === ps.length, 'participant names must be unique'),
  metadata: jsonObject(MAX_METADATA_BYTES).optional(),
}).strict();

export const txIdSchema = z.string().uuid('must be a UUID');

export const waitSchema = z.object({
  waitMs: z.coerce.number().int().min(0).max(3_600_000).optional(),
}).strict();

export const listSchema = z.object({
  state: z.enum(TX_STATES).optional(),
  participant: z.string().regex(PARTICIPANT_NAME, 'must be a participant name').optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
}).strict();

export const idempotencyKeySchema = z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

export type BeginBody = z.infer<typeof beginSchema>;
export type ParticipantBody = z.infer<typeof participantSchema>;
export type ListParams = z.infer<typeof listSchema>;
