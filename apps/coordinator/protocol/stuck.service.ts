import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { waitingFor } from '../../../libs/engine';
import { setStuckAfterMs } from '../api/present';
import { CONFIG, CoordinatorConfig } from '../config/config';
import { DecisionLog } from '../log/decision-log';

/** Stuck transactions named one by one per check; beyond that, only counted. */
const REPORT_LIMIT = 100;

/**
 * Nothing retries forever unseen: every TX_STUCK_AFTER_MS (at most every minute, at least every
 * second) the transactions unfinished for longer than TX_STUCK_AFTER_MS are logged at warn, one
 * line each with txId, state and who has not answered (`waitingFor`). The REST view of a
 * transaction carries the same facts (`stuck`, `waitingFor`).
 */
@Injectable()
export class StuckReporter implements OnApplicationBootstrap, OnApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private running = false;

  constructor(
    private readonly log: DecisionLog,
    @Inject(CONFIG) private readonly config: CoordinatorConfig,
    private readonly logger: PinoLogger,
  ) {
    this.logger.setContext('stuck');
    setStuckAfterMs(config.stuckAfterMs);
  }

  onApplicationBootstrap(): void {
    const every = Math.min(60_000, Math.max(1000, this.config.stuckAfterMs));
    this.timer = setInterval(() => void this.check(), every);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** One round: logs each stuck transaction; returns how many there were. */
  async check(now = Date.now()): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    try {
      const { items, total } = await this.log.stuck(new Date(now - this.config.stuckAfterMs), new Date(now), REPORT_LIMIT);
      for (const s of items) {
        this.logger.warn({
          txId: s.id, protocol: s.protocol, state: s.phase, outcome: s.outcome, ageMs: now - s.createdAt,
          waitingFor: waitingFor(s), deadline: new Date(s.deadline).toISOString(),
        }, 'transaction stuck: unfinished for longer than TX_STUCK_AFTER_MS');
      }
      if (total > items.length) this.logger.warn({ stuck: total, named: items.length }, 'more stuck transactions than named');
      return total;
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'stuck-transaction check failed; next round retries');
      return 0;
    } finally {
      this.running = false;
    }
  }
}
