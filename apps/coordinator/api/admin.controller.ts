import { Body, Controller, Get, Headers, HttpCode, Inject, Param, Post, Query, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { PinoLogger } from 'nestjs-pino';
import { createHash } from 'node:crypto';
import { DataSource } from 'typeorm';
import { z } from 'zod';
import { keptAs, StepResult } from '../../../libs/engine';
import { CONFIG, CoordinatorConfig } from '../config/config';
import { AuditRow } from '../log/audit.entity';
import { DecisionLog } from '../log/decision-log';
import { CoordinatorService } from '../protocol/coordinator.service';
import { ApiKeyGuard } from './auth.guard';
import { ApiJson, ApiProblems, ApiQueryFrom, ApiTxId, jsonSchema } from './openapi';
import { present } from './present';
import { ProblemException } from './problem';
import { txIdSchema } from './schemas';
import { validate } from './validate';

const actionSchema = z.object({ reason: z.string().min(1).max(500).optional() }).strict();
const auditQuerySchema = z.object({
  txId: txIdSchema.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
}).strict();

type Action = 'resend' | 'abort';

/**
 * Operators' hand tools (txctl): resend a transaction's recorded outcome now, or abort one that
 * has no decision. Both go through the engine like every other event (under the transaction's row
 * lock), so they can never contradict a decision; each attempt, refused ones included, is written
 * to tx_audit. Behind the same API keys as the rest of /v1.
 */
@ApiTags('admin')
@ApiBearerAuth('api-key')
@Controller('v1/admin')
@UseGuards(ApiKeyGuard)
export class AdminController {
  constructor(
    private readonly coordinator: CoordinatorService,
    private readonly log: DecisionLog,
    private readonly db: DataSource,
    @Inject(CONFIG) private readonly config: CoordinatorConfig,
    private readonly logger: PinoLogger,
  ) {
    this.logger.setContext('admin');
  }

  /**
   * Sends the recorded decision again, now, to every participant that has not acknowledged it
   * (the engine's `recovered` event, as after a restart). 409 when there is no decision yet.
   */
  @Post('transactions/:id/resend')
  @HttpCode(200)
  @ApiOperation({ summary: 'Resend the recorded outcome now (txctl resend)', description: 'To every participant that has not acknowledged it; written to the audit trail.' })
  @ApiTxId()
  @ApiBody({ required: false, schema: jsonSchema(actionSchema) })
  @ApiJson(200, 'AdminActionResult', 'Done: `result` says whether anything was sent.')
  @ApiProblems(400, 401, 404, 409, 413, 415, 429, 503)
  async resend(@Param('id') id: string, @Body() raw: unknown, @Headers('authorization') auth: string | undefined) {
    const txId = validate(txIdSchema, id, 'path.id');
    const { reason } = validate(actionSchema, raw ?? {}, 'body');
    const record = this.recorder('resend', txId, this.actor(auth), reason);

    const before = await this.log.get(txId);
    if (!before) throw await record.notFound();
    // The outcome never changes once set, so this check cannot go stale before the step below.
    if (before.outcome === null) {
      await record.write('refused', `no decision yet (state ${before.phase})`);
      throw ProblemException.of(409, 'no-decision',
        `Transaction ${txId} has no decision yet (state ${before.phase}): there is no outcome to resend. ` +
        'It will be decided by the votes or at its deadline; abort it to decide now.');
    }
    const r = await this.coordinator.apply(txId, { type: 'recovered' });
    if (!r) throw await record.notFound();
    if (r.error) throw await record.refused(r);
    const sent = r.effects.flatMap((e) => (e.type === 'send' ? [`${e.message.type}:${e.message.participant}`] : []));
    const result = sent.length ? 'resent' : 'nothing-to-resend';
    await record.write(result, sent.length ? `sent ${sent.join(', ')}` : `every participant has acknowledged (state ${r.state.phase})`);
    return { action: 'resend', result, sent, transaction: present(r.state) };
  }

  /** Aborts a transaction that has no decision (presumed abort, by hand). 409 once it committed. */
  @Post('transactions/:id/abort')
  @HttpCode(200)
  @ApiOperation({ summary: 'Abort a transaction that has no decision (txctl abort)', description: 'Written to the audit trail; 409 once the outcome is commit.' })
  @ApiTxId()
  @ApiBody({ required: false, schema: jsonSchema(actionSchema) })
  @ApiJson(200, 'AdminActionResult', 'Aborted, or already aborted.')
  @ApiProblems(400, 401, 404, 409, 413, 415, 429, 503)
  async abort(@Param('id') id: string, @Body() raw: unknown, @Headers('authorization') auth: string | undefined) {
    const txId = validate(txIdSchema, id, 'path.id');
    const { reason } = validate(actionSchema, raw ?? {}, 'body');
    const record = this.recorder('abort', txId, this.actor(auth), reason);

    const r = await this.coordinator.apply(txId, { type: 'abort-requested' });
    if (!r) throw await record.notFound();
    if (r.error) throw await record.refused(r);
    const changed = keptAs(r) === 'persist';
    const sent = r.effects.flatMap((e) => (e.type === 'send' ? [`${e.message.type}:${e.message.participant}`] : []));
    const result = changed ? 'aborted' : 'already-aborted';
    await record.write(result, changed ? `decided abort${sent.length ? `; sent ${sent.join(', ')}` : ''}` : `outcome was already abort (state ${r.state.phase})`);
    return { action: 'abort', result, sent, transaction: present(r.state) };
  }

  /** The audit trail, newest first; `txId` narrows it to one transaction. */
  @Get('audit')
  @ApiOperation({ summary: 'The audit trail of operator actions, newest first' })
  @ApiQueryFrom(auditQuerySchema, { txId: 'Only this transaction.', limit: 'How many.' })
  @ApiJson(200, 'AuditPage', 'The entries.')
  @ApiProblems(400, 401, 429, 503)
  async audit(@Query() query: unknown) {
    const q = validate(auditQuerySchema, query, 'query');
    const rows = await this.db.getRepository(AuditRow).find({
      where: q.txId ? { txId: q.txId } : {},
      order: { at: 'DESC', id: 'DESC' },
      take: q.limit,
    });
    return {
      items: rows.map((a) => ({
        id: Number(a.id), at: a.at.toISOString(), actor: a.actor, action: a.action, txId: a.txId,
        result: a.result, reason: a.reason, detail: a.detail,
      })),
    };
  }

  /** Who acted: a prefix of the key's SHA-256 (never the key), or `anonymous` without keys. */
  private actor(authorization: string | undefined): string {
    if (this.config.apiKeys.length === 0) return 'anonymous';
    const key = /^Bearer (\S+)$/.exec(authorization ?? '')?.[1] ?? '';
    return `key:${createHash('sha256').update(key).digest('hex').slice(0, 12)}`;
  }

  private recorder(action: Action, txId: string, actor: string, reason: string | undefined) {
    const write = async (result: string, detail: string) => {
      await this.db.getRepository(AuditRow).insert({ at: new Date(), actor, action, txId, result, reason: reason ?? null, detail });
      this.logger.info({ txId, action, actor, result, detail, reason }, 'operator action');
    };
    return {
      write,
      notFound: async () => {
        await write('not-found', 'no such transaction');
        return ProblemException.of(404, 'transaction-not-found', `No transaction ${txId}.`);
      },
      refused: async (r: StepResult) => {
        const error = r.error!;
        await write('refused', error.message);
        if (action === 'abort' && r.state?.outcome === 'commit') {
          return ProblemException.of(409, 'already-committed',
            `Transaction ${txId} has committed (outcome commit): it cannot be aborted. ` +
            'Participants that have not acknowledged keep being sent commit; resend sends it now.');
        }
        return ProblemException.of(error.code === 'conflict' ? 409 : 400, error.code, error.message);
      },
    };
  }
}
