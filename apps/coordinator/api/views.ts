import { z } from 'zod';
import { protocolSchema } from '../../../libs/protocol';
import { TX_STATES } from './schemas';

/**
 * What the API answers, as zod schemas: the OpenAPI document's response schemas are generated from
 * these (openapi.ts), and the OpenAPI test checks real answers against that document. Objects are
 * open (extra fields allowed): the contract only ever adds fields.
 */

/** An object that may carry more fields than listed. */
const open = <T extends z.ZodRawShape>(shape: T) => z.object(shape).passthrough();

const isoTime = z.string().datetime();
const nullableTime = isoTime.nullable();
const jsonObject = z.record(z.unknown());

export const participantViewSchema = open({
  name: z.string(),
  vote: z.enum(['yes', 'no']).nullable().describe('null until the participant voted'),
  acked: z.boolean().describe('the participant acknowledged the outcome'),
  payload: jsonObject,
  url: z.string().nullable().describe('where the HTTP transport reaches it (enlisted with a url); null otherwise'),
  voteReason: z.string().nullable().describe("the participant's own words with a no vote"),
  preCommitted: z.boolean().optional().describe('3PC only: the participant acknowledged pre-commit'),
});

export const transactionViewSchema = open({
  id: z.string().uuid(),
  protocol: protocolSchema,
  state: z.enum(TX_STATES),
  outcome: z.enum(['commit', 'abort']).nullable().describe('null until the decision is durable; never changes after'),
  reason: z.string().nullable().describe('why it aborted, e.g. vote-no:inventory, timeout:prepare, client-abort'),
  timeoutMs: z.number().int(),
  createdAt: isoTime,
  decidedAt: nullableTime,
  completedAt: nullableTime,
  deadline: isoTime,
  participants: z.array(participantViewSchema),
  metadata: jsonObject,
  waitingFor: z.array(z.string()).describe('participants that have not yet given the answer the current state needs'),
  stuck: z.boolean().describe('unfinished for longer than TX_STUCK_AFTER_MS (an active transaction before its deadline never is)'),
});

export const transactionListSchema = open({
  items: z.array(transactionViewSchema).describe('newest first'),
  nextCursor: z.string().nullable().describe('pass as ?cursor= for the next page; null on the last one'),
});

/** RFC 9457 problem document (application/problem+json); see problem.ts. */
export const problemSchema = open({
  type: z.string().describe('urn:txcoord:problem:<slug>'),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  errors: z.array(open({ field: z.string(), message: z.string() })).optional().describe('each bad field'),
});

export const liveSchema = open({ status: z.literal('ok') });

const indicator = z.record(open({ status: z.enum(['up', 'down']), message: z.string().optional() }));

/** @nestjs/terminus's report: `info` the checks that passed, `error` those that failed. */
export const readinessSchema = open({
  status: z.enum(['ok', 'error']),
  info: indicator.optional(),
  error: indicator.optional(),
  details: indicator,
});

export const adminActionResultSchema = open({
  action: z.enum(['resend', 'abort']),
  result: z.enum(['resent', 'nothing-to-resend', 'aborted', 'already-aborted']),
  sent: z.array(z.string()).describe('messages sent now, as type:participant'),
  transaction: transactionViewSchema,
});

export const auditListSchema = open({
  items: z.array(open({
    id: z.number().int(),
    at: isoTime,
    actor: z.string().describe('key:<first 12 hex digits of the API key\'s SHA-256>, or anonymous'),
    action: z.string(),
    txId: z.string().uuid(),
    result: z.string(),
    reason: z.string().nullable(),
    detail: z.string().nullable(),
  })),
});

export const emptyObjectSchema = z.object({}).strict();
