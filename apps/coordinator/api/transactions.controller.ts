import { Body, Controller, Get, Headers, HttpCode, Inject, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Response } from 'express';
import { createHash, randomUUID } from 'node:crypto';
import { keptAs, StepResult, TxState } from '../../../libs/engine';
import { CONFIG, CoordinatorConfig } from '../config/config';
import { DecisionLog } from '../log/decision-log';
import { CoordinatorService } from '../protocol/coordinator.service';
import { ApiKeyGuard } from './auth.guard';
import { decodeCursor, encodeCursor, present } from './present';
import { ApiIdempotencyKey, ApiJson, ApiJsonBody, ApiProblems, ApiQueryFrom, ApiTxId } from './openapi';
import { ProblemException } from './problem';
import { beginSchema, idempotencyKeySchema, listSchema, participantSchema, txIdSchema, waitSchema } from './schemas';
import { validate } from './validate';

/** By default commit waits until the deadline, plus this much for the deadline's own abort to land. */
const DEADLINE_GRACE_MS = 2000;

/** The REST API of CONTRACT section 2. Every change goes through the coordinator's engine. */
@ApiTags('transactions')
@ApiBearerAuth('api-key')
@Controller('v1/transactions')
@UseGuards(ApiKeyGuard)
export class TransactionsController {
  constructor(
    private readonly coordinator: CoordinatorService,
    private readonly log: DecisionLog,
    @Inject(CONFIG) private readonly config: CoordinatorConfig,
  ) {}

  @Post()
  @ApiOperation({ summary: 'Begin a transaction', description: 'Optionally with its participants; the coordinator chooses the id. While the coordinator shuts down: 503.' })
  @ApiIdempotencyKey()
  @ApiJsonBody('NewTransaction', 'Every field is optional: protocol (default 2pc), timeoutMs (default TX_DEFAULT_TIMEOUT_MS), participants, metadata.', false)
  @ApiJson(201, 'Transaction', 'Begun.', { Location: '/v1/transactions/{id}' })
  @ApiJson(200, 'Transaction', 'A repeated idempotent request: the transaction its first request began.', { Location: '/v1/transactions/{id}' })
  @ApiProblems(400, 401, 413, 415, 422, 429, 503)
  async begin(@Body() raw: unknown, @Headers('idempotency-key') key: string | undefined, @Res({ passthrough: true }) res: Response) {
    const body = validate(beginSchema, raw ?? {}, 'body');
    const idempotency = key === undefined ? undefined : {
      key: validate(idempotencyKeySchema, key, 'header Idempotency-Key'),
      hash: createHash('sha256').update(canonicalJson(body)).digest('hex'),
    };
    const r = await this.coordinator.begin({
      id: randomUUID(),
      protocol: body.protocol ?? '2pc',
      timeoutMs: body.timeoutMs ?? this.config.defaultTimeoutMs,
      participants: body.participants ?? [],
      metadata: body.metadata ?? {},
    }, idempotency);
    if ('error' in r) throw ProblemException.of(400, 'invalid-request', r.error);
    if (!r.created && !r.sameRequest) {
      throw ProblemException.of(422, 'idempotency-key-reused', 'This Idempotency-Key was used with another request body.');
    }
    res.status(r.created ? 201 : 200).location(`/v1/transactions/${r.state.id}`);
    return present(r.state);
  }

  @Post(':id/participants')
  @ApiOperation({ summary: 'Enlist a participant', description: 'Enlisting the same name again with the same payload is a no-op.' })
  @ApiTxId()
  @ApiJsonBody('Enlistment', 'The participant: its name, its payload (handed to its prepare) and, over HTTP, its url.')
  @ApiJson(201, 'Transaction', 'Enlisted.')
  @ApiJson(200, 'Transaction', 'Already enlisted with the same payload: nothing changed.')
  @ApiProblems(400, 401, 404, 409, 413, 415, 429, 503)
  async enlist(@Param('id') id: string, @Body() raw: unknown, @Res({ passthrough: true }) res: Response) {
    const txId = validate(txIdSchema, id, 'path.id');
    const body = validate(participantSchema, raw ?? {}, 'body');
    const r = found(txId, await this.coordinator.apply(txId, { type: 'enlist', name: body.name, payload: body.payload, url: body.url }));
    res.status(keptAs(r) === 'persist' ? 201 : 200);
    return present(r.state);
  }

  @Post(':id/commit')
  @ApiOperation({
    summary: 'Commit',
    description:
      'Runs the commit protocol with every enlisted participant and answers once the outcome is durable (not waiting for ' +
      'acknowledgements), or after waitMs with 202 and the current state. Asking again returns the same outcome. ' +
      'No participants: commits at once.',
  })
  @ApiTxId()
  @ApiQueryFrom(waitSchema, { waitMs: 'How long to wait for the outcome (default: until the transaction\'s deadline).' })
  @ApiJson(200, 'Transaction', 'Decided: read `outcome` (a no vote or a timeout gives "abort", with its `reason`).')
  @ApiJson(202, 'Transaction', 'Still deciding after waitMs: the current state.')
  @ApiProblems(400, 401, 404, 409, 429, 503)
  async commit(@Param('id') id: string, @Query() query: unknown, @Res({ passthrough: true }) res: Response) {
    const txId = validate(txIdSchema, id, 'path.id');
    const { waitMs } = validate(waitSchema, query, 'query');
    const r = found(txId, await this.coordinator.apply(txId, { type: 'commit-requested' }));
    const state = r.state.outcome !== null ? r.state
      : await this.coordinator.waitForOutcome(txId, waitMs ?? Math.max(0, r.state.deadline - Date.now()) + DEADLINE_GRACE_MS, r.state);
    const current = state ?? r.state;
    res.status(current.outcome === null ? 202 : 200);
    return present(current);
  }

  @Post(':id/abort')
  @HttpCode(200)
  @ApiOperation({ summary: 'Abort', description: 'Rolls the transaction back (outcome abort, reason client-abort); aborting an aborted one is a no-op.' })
  @ApiTxId()
  @ApiJson(200, 'Transaction', 'Aborted (or already aborted).')
  @ApiProblems(400, 401, 404, 409, 429, 503)
  async abort(@Param('id') id: string) {
    const txId = validate(txIdSchema, id, 'path.id');
    return present(found(txId, await this.coordinator.apply(txId, { type: 'abort-requested' })).state);
  }

  @Get(':id')
  @ApiOperation({ summary: 'One transaction' })
  @ApiTxId()
  @ApiJson(200, 'Transaction', 'The transaction.')
  @ApiProblems(400, 401, 404, 429, 503)
  async get(@Param('id') id: string) {
    const txId = validate(txIdSchema, id, 'path.id');
    const state = await this.log.get(txId);
    if (!state) throw notFound(txId);
    return present(state);
  }

  @Get()
  @ApiOperation({ summary: 'List transactions', description: 'Newest first, cursor-paginated.' })
  @ApiQueryFrom(listSchema, {
    state: 'Only transactions in this state.',
    participant: 'Only transactions this participant is enlisted in.',
    limit: 'Page size.',
    cursor: 'The nextCursor of the previous page.',
  })
  @ApiJson(200, 'TransactionPage', 'One page.')
  @ApiProblems(400, 401, 429, 503)
  async list(@Query() query: unknown) {
    const q = validate(listSchema, query, 'query');
    const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
    if (after === null) throw ProblemException.of(400, 'invalid-request', 'Invalid query: cursor is not one this API returned.', [{ field: 'query.cursor', message: 'unknown cursor' }]);
    // One extra row tells whether there is a next page.
    const rows: TxState[] = await this.log.list({ state: q.state, participant: q.participant, limit: q.limit + 1, after });
    const items = rows.slice(0, q.limit);
    return { items: items.map(present), nextCursor: rows.length > q.limit ? encodeCursor(items[items.length - 1]) : null };
  }
}

function notFound(txId: string): ProblemException {
  return ProblemException.of(404, 'transaction-not-found', `No transaction ${txId}.`);
}

/** The step result, or the right problem: 404 unknown, 409 refused by the engine. */
function found(txId: string, r: StepResult | null): StepResult {
  if (!r) throw notFound(txId);
  if (r.error) throw ProblemException.of(r.error.code === 'conflict' ? 409 : 400, r.error.code, r.error.message);
  return r;
}

/** JSON with sorted keys, so that equal bodies hash equally whatever their key order. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
