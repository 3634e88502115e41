import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { SlicedGate } from '../../../libs/concurrency/sliced-gate';
import { MessageTransport } from '../../../libs/transport/transport';
import { CONFIG, CoordinatorConfig } from '../config/config';
import { DecisionLog } from '../log/decision-log';
import { CoordinatorService } from './coordinator.service';
import { TRANSPORT } from './tokens';

const PAGE = 500;
/** Transactions recovered concurrently. */
const RECOVER_AT_ONCE = 32;
/** Start-up recovery lets the held sends go after this many transactions at most (bounds memory). */
const HOLD_AT_MOST = 10_000;
/** Held sends go this many transactions per turn of the event loop. */
const RELEASE_SLICE = 200;

/**
 * running → draining (SIGTERM: readiness 503, no new transactions; the protocol goes on for
 * TX_SHUTDOWN_DELAY_MS) → stopping (no protocol messages, timers or changes through the API; the
 * steps under way finish; the transport stops) → the process exits.
 */
export type Phase = 'running' | 'draining' | 'stopping';

/**
 * Starts the protocol side after the HTTP server listens (so liveness answers while recovering):
 * consume participant messages, recover every unfinished transaction from the log, then sweep
 * periodically for unfinished transactions whose timers no replica holds.
 */
@Injectable()
export class LifecycleService implements OnApplicationShutdown {
  private recovered = false;
  private current: Phase = 'running';
  private sweeper?: NodeJS.Timeout;
  private sweeping = false;

  constructor(
    private readonly coordinator: CoordinatorService,
    private readonly log: DecisionLog,
    @Inject(TRANSPORT) private readonly transport: MessageTransport,
    @Inject(CONFIG) private readonly config: CoordinatorConfig,
    private readonly logger: PinoLogger,
  ) {
    this.logger.setContext('lifecycle');
  }

  get recoveryDone(): boolean {
    return this.recovered;
  }

  get phase(): Phase {
    return this.current;
  }

  /**
   * Graceful shutdown (SIGTERM), before the application closes. Readiness turns 503 and new
   * transactions are refused at once; the protocol goes on for `shutdownDelayMs` (load balancers
   * stop sending, transactions under way can finish); then intake stops, the steps under way get
   * until `deadline` (epoch ms) to finish, and the transport stops (Kafka consumers leave their
   * group). Whatever is unfinished is in the log and recovery finishes it after the restart.
   */
  async shutdown(deadline: number): Promise<void> {
    if (this.current !== 'running') return;
    this.current = 'draining';
    this.logger.info({ delayMs: this.config.shutdownDelayMs }, 'shutting down: readiness 503, no new transactions');
    if (this.config.shutdownDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.config.shutdownDelayMs));

    this.current = 'stopping';
    clearInterval(this.sweeper);
    this.coordinator.closeIntake();
    // Keep a little of the budget for stopping the transport and closing the log store.
    const left = deadline - Date.now();
    const unfinished = await this.coordinator.settled(Math.max(0, left - Math.min(5000, left / 3)));
    if (unfinished) this.logger.warn({ steps: unfinished }, 'protocol steps still under way at the shutdown deadline; left to recovery');
    else this.logger.info('protocol steps under way have finished');
    await this.transport.stop().catch((err) => this.logger.warn({ err: String(err) }, 'transport did not stop cleanly'));
    this.logger.info('transport stopped');
  }

  async start(): Promise<void> {
    const started = Date.now();
    // Recovery runs while the consumer joins its group (seconds, when a crashed member's session
    // has to expire first): its resends need only the producer, and the answers they bring wait
    // in the topic until the consumer reads them.
    const [, count] = await Promise.all([this.transport.start((m) => this.coordinator.receive(m)), this.recoverAll(new Date(), true)]);
    if (this.current !== 'running') return; // shut down while recovering: the next start recovers the rest
    this.recovered = true;
    this.logger.info({ transactions: count, ms: Date.now() - started }, 'recovery finished');
    this.sweeper = setInterval(() => void this.sweep(), this.config.sweepIntervalMs);
    this.sweeper.unref();
  }

  /**
   * Recovery: every unfinished transaction gets a `recovered` event (resend, or presumed abort).
   * With `holdSends` (start-up), the messages of the transactions read wait until all are read (or
   * HOLD_AT_MOST of them): reading and stepping thousands is quick, encoding their sends is not,
   * and doing both at once made each page wait for the sends of the one before.
   */
  private async recoverAll(before: Date, holdSends = false): Promise<number> {
    let count = 0;
    let held = 0;
    let afterId: string | undefined;
    // In slices, so that health checks and the consumer's join are answered while they go.
    const hold = () => (holdSends ? new SlicedGate(RELEASE_SLICE) : undefined);
    let gate = hold();
    try {
      for (;;) {
        const page = await this.log.unfinished(before, PAGE, afterId);
        // A step resolves once its state is saved (its messages leave in the background), so a few
        // dozen at a time keep the database busy without flooding the transport.
        for (let i = 0; i < page.length; i += RECOVER_AT_ONCE) {
          if (this.current === 'stopping') return count;
          await Promise.all(page.slice(i, i + RECOVER_AT_ONCE).map((tx) => this.coordinator.recover(tx, gate?.wait()).catch((err) =>
            this.logger.error({ txId: tx.id, err: String(err) }, 'recovery of transaction failed; the sweep will retry'))));
        }
        count += page.length;
        held += page.length;
        if (page.length < PAGE) return count;
        if (held >= HOLD_AT_MOST) {
          gate?.open();
          gate = hold();
          held = 0;
        }
        afterId = page[page.length - 1].id;
      }
    } finally {
      gate?.open();
    }
  }

  /** Picks up unfinished transactions idle for longer than the longest resend delay. */
  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const idle = new Date(Date.now() - 2 * this.config.resendMaxMs);
      const found = await this.recoverAll(idle);
      if (found) this.logger.debug({ transactions: found }, 'sweep');
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'sweep failed');
    } finally {
      this.sweeping = false;
    }
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.sweeper);
    await this.transport.stop().catch(() => undefined);
  }
}
