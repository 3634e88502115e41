import { Controller, Get, Inject, Res, ServiceUnavailableException } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { Response } from 'express';
import { MessageTransport } from '../../../libs/transport/transport';
import { DecisionLog } from '../log/decision-log';
import { ApiJson } from '../api/openapi';
import { LifecycleService } from '../protocol/lifecycle.service';
import { TRANSPORT } from '../protocol/tokens';

const within = <T>(ms: number, p: Promise<T>) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref())]);

/** Liveness: the process answers. Readiness: log store and transport reachable, recovery finished, not shutting down. */
@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly log: DecisionLog,
    private readonly lifecycle: LifecycleService,
    @Inject(TRANSPORT) private readonly transport: MessageTransport,
  ) {}

  @Get('live')
  @ApiOperation({ summary: 'Liveness: the process answers' })
  @ApiJson(200, 'Liveness', 'Alive.')
  live() {
    return { status: 'ok' };
  }

  @Get('ready')
  @HealthCheck({ noCache: true, swaggerDocumentation: false })
  @ApiOperation({
    summary: 'Readiness',
    description: 'Ready when the log store and the transport are reachable, start-up recovery has finished and the coordinator is not shutting down.',
  })
  @ApiJson(200, 'Readiness', 'Ready.')
  @ApiJson(503, 'Readiness', 'Not ready: `error` says which check failed.')
  async ready(@Res({ passthrough: true }) res: Response) {
    try {
      return await this.health.check([
        () => this.probe('shutdown', async () => {
          if (this.lifecycle.phase !== 'running') throw new Error(`shutting down (${this.lifecycle.phase})`);
        }),
        () => this.probe('logStore', () => within(2000, this.log.ping()), () => breakers({ decisionLog: this.log.breakerState() })),
        () => this.probe('transport', () => within(3000, this.transport.check()), () => breakers(transportBreakers(this.transport))),
        () => this.probe('recovery', async () => {
          if (!this.lifecycle.recoveryDone) throw new Error('recovery of unfinished transactions still running');
        }),
      ]);
    } catch (err) {
      if (!(err instanceof ServiceUnavailableException)) throw err;
      res.status(503);
      return err.getResponse();
    }
  }

  private async probe(key: string, check: () => Promise<unknown>, details: () => Record<string, unknown> = () => ({})) {
    const indicator = this.indicators.check(key);
    try {
      await check();
      return indicator.up(details());
    } catch (err) {
      return indicator.down({ message: err instanceof Error ? err.message : String(err), ...details() });
    }
  }
}

/** Circuit breaker states as health details: `{ breakers: { name: { state, failures, … } } }`, or nothing. */
function breakers(all: Record<string, object | null | undefined>): Record<string, unknown> {
  const known = Object.entries(all).filter(([, v]) => v);
  return known.length ? { breakers: Object.fromEntries(known) } : {};
}

/** A transport that has circuit breakers (KafkaTransport) says so through `breakers()`. */
function transportBreakers(t: MessageTransport): Record<string, object> {
  const withBreakers = t as MessageTransport & { breakers?: () => Record<string, object> };
  return typeof withBreakers.breakers === 'function' ? withBreakers.breakers() : {};
}
