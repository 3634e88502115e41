import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { CONFIG, CoordinatorConfig } from '../config/config';
import { DecisionLog } from '../log/decision-log';

/** Rows deleted per statement: short statements, so the purge never holds up the protocol. */
const BATCH = 1000;

/**
 * Retention: finished transactions are deleted from the log TX_RETENTION_MS after they finished
 * (0 keeps them), so that the log holds what is in flight plus a window of history, and lookups,
 * listing, recovery and the sweep cost the same after a million transactions as after a thousand.
 * An Idempotency-Key is remembered as long as its transaction is. Every replica purges; the
 * deletes are idempotent.
 */
@Injectable()
export class RetentionService implements OnApplicationBootstrap, OnApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private running = false;

  constructor(
    private readonly log: DecisionLog,
    @Inject(CONFIG) private readonly config: CoordinatorConfig,
    private readonly logger: PinoLogger,
  ) {
    this.logger.setContext('retention');
  }

  onApplicationBootstrap(): void {
    if (this.config.retentionMs === 0) return;
    const every = Math.min(60_000, Math.max(1000, Math.floor(this.config.retentionMs / 2)));
    this.timer = setInterval(() => void this.purge(), every);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** Deletes what is past retention, batch by batch; a failure waits for the next round. */
  async purge(): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    let total = 0;
    try {
      const before = new Date(Date.now() - this.config.retentionMs);
      for (;;) {
        const n = await this.log.purgeFinished(before, BATCH);
        total += n;
        if (n < BATCH) break;
      }
      if (total) this.logger.info({ transactions: total, finishedBefore: before.toISOString() }, 'finished transactions past retention deleted');
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'retention purge failed; will try again');
    } finally {
      this.running = false;
    }
    return total;
  }
}
