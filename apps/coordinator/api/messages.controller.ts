import { Controller, Headers, HttpCode, Inject, Post, Req, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Request } from 'express';
import { SIGNATURE_HEADER } from '../../../libs/protocol';
import { HttpTransport } from '../../../libs/transport/http-transport';
import { MessageTransport } from '../../../libs/transport/transport';
import { TRANSPORT } from '../protocol/tokens';
import { ApiKeyGuard } from './auth.guard';
import { ApiJson, ApiJsonBody, ApiProblems } from './openapi';
import { problem, ProblemException } from './problem';

/**
 * Participants' protocol messages over HTTP (CONTRACT section 3b). The body arrives as raw bytes
 * (main.ts mounts a raw parser on this path) because the signature covers exactly those bytes.
 * On Kafka the route answers 404: the endpoint does not exist in that configuration.
 */
@ApiTags('protocol')
@ApiBearerAuth('api-key')
@Controller('v1/messages')
@UseGuards(ApiKeyGuard)
export class MessagesController {
  constructor(@Inject(TRANSPORT) private readonly transport: MessageTransport) {}

  @Post()
  @HttpCode(202)
  @ApiOperation({
    summary: 'A protocol message from a participant (HTTP transport)',
    description:
      'CONTRACT section 3b: participants post their vote, ack and status-request messages here when the coordinator runs ' +
      'without KAFKA_BROKERS (on Kafka this path answers 404). The body is read as raw bytes: the signature covers them exactly. ' +
      'Not rate-limited.',
  })
  @ApiHeader({ name: SIGNATURE_HEADER, required: false, description: 'hex HMAC-SHA256 of the body bytes; required when TX_MESSAGE_SECRET is set', schema: { type: 'string', pattern: '^[0-9a-f]{64}$' } })
  @ApiJsonBody('ProtocolMessage', 'One message (CONTRACT section 3), the same bytes as on Kafka.')
  @ApiJson(202, 'Accepted', 'Taken; processing may follow.')
  @ApiProblems(400, 401, 404, 413, 503)
  async receive(@Req() req: Request, @Headers(SIGNATURE_HEADER) signature: string | undefined) {
    if (!(this.transport instanceof HttpTransport)) {
      throw ProblemException.of(404, 'not-found', 'This coordinator carries protocol messages on Kafka (KAFKA_BROKERS is set); POST /v1/messages is served only without it.');
    }
    const body: unknown = req.body;
    const r = await this.transport.receive(Buffer.isBuffer(body) ? body : Buffer.alloc(0), signature);
    if (r.status === 400) throw ProblemException.of(400, 'unreadable-message', `Unreadable message: ${r.error}.`);
    if (r.status === 503) throw new ProblemException(problem(503, 'not-receiving', r.error), { 'Retry-After': '1' });
    return {};
  }
}
