import { Inject, Injectable } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { Effect, TxState } from '../../../libs/engine';
import { MessageTransport } from '../../../libs/transport/transport';
import { DecisionLog } from '../log/decision-log';
import { TRANSPORT } from '../protocol/tokens';

/** Prometheus metrics of the coordinator, served on GET /metrics. */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  private readonly begun = new Counter({ name: 'txcoord_transactions_begun_total', help: 'Transactions begun', labelNames: ['protocol'], registers: [this.registry] });
  private readonly decided = new Counter({
    name: 'txcoord_transactions_decided_total', help: 'Decisions made durable, by outcome and reason', labelNames: ['protocol', 'outcome', 'reason'], registers: [this.registry],
  });
  private readonly completed = new Counter({
    name: 'txcoord_transactions_completed_total', help: 'Transactions every participant acknowledged', labelNames: ['protocol', 'outcome'], registers: [this.registry],
  });
  private readonly toDecision = new Histogram({
    name: 'txcoord_decision_seconds', help: 'From begin to the durable decision', labelNames: ['protocol', 'outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [this.registry],
  });
  private readonly toCompletion = new Histogram({
    name: 'txcoord_completion_seconds', help: 'From the decision to the last acknowledgement', labelNames: ['protocol', 'outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [this.registry],
  });
  private readonly sent = new Counter({ name: 'txcoord_messages_sent_total', help: 'Protocol messages sent', labelNames: ['type', 'cause'], registers: [this.registry] });
  private readonly resends = new Counter({ name: 'txcoord_resends_total', help: 'Messages sent again because no answer came', labelNames: ['type'], registers: [this.registry] });
  private readonly received = new Counter({ name: 'txcoord_messages_received_total', help: 'Protocol messages received', labelNames: ['type'], registers: [this.registry] });
  private readonly deadLetters = new Counter({ name: 'txcoord_dead_letters_total', help: 'Unreadable messages sent to the dead-letter topic or refused', registers: [this.registry] });
  private readonly resendsPostponed = new Counter({ name: 'txcoord_resends_postponed_total', help: 'Resends put off because their answer was not overdue yet or the coordinator inbox had a backlog', registers: [this.registry] });
  private readonly answerTimeout = new Gauge({ name: 'txcoord_answer_timeout_seconds', help: 'How long after a send its answer counts as overdue (from the answer times lately seen); resends wait for it', registers: [this.registry] });
  private readonly sendFailures = new Counter({ name: 'txcoord_send_failures_total', help: 'Sends that failed and wait for their resend', registers: [this.registry] });

  constructor(log: DecisionLog, @Inject(TRANSPORT) transport: MessageTransport) {
    collectDefaultMetrics({ register: this.registry, prefix: 'txcoord_' });
    // A counter that follows a running total kept elsewhere: each scrape adds what it grew by.
    const following = (name: string, help: string, total: () => number) => {
      let counted = 0;
      new Counter({
        name, help, registers: [this.registry],
        collect() {
          const now = total();
          this.inc(now - counted);
          counted = now;
        },
      });
    };
    // Saturation: the event loop's lag says how late a callback ran, not how much of the time the
    // loop had work; its busy time (rate() of this counter: 1 means never idle) says the latter,
    // also while the process waits for a core and so shows little CPU.
    following('txcoord_event_loop_busy_seconds_total', 'Time the event loop spent running callbacks rather than waiting for I/O',
      () => performance.eventLoopUtilization().active / 1000);
    // The inbox's pace (Kafka): fetches a second, and messages per fetch as the ratio of the two
    // rates. The test broker hands over one record batch per partition per fetch; a real broker
    // hands over everything waiting, up to the fetch's size limit.
    const reads = transport.inboxReads?.bind(transport);
    if (reads) {
      following('txcoord_inbox_fetches_total', 'Fetches of the coordinator topic by this replica', () => reads().fetches);
      following('txcoord_inbox_messages_total', 'Messages those fetches brought (unreadable and repeated ones included)', () => reads().messages);
    }
    // Unfinished transactions by state, read from the log at scrape time (a partial index serves it).
    new Gauge({
      name: 'txcoord_transactions_unfinished', help: 'Unfinished transactions by state (in flight; committing/aborting/precommitted are in doubt for participants)',
      labelNames: ['state'], registers: [this.registry],
      async collect() {
        const counts = await log.countUnfinished();
        this.reset();
        for (const state of ['active', 'preparing', 'precommitted', 'committing', 'aborting']) this.set({ state }, counts[state] ?? 0);
      },
    });
  }

  onBegin(s: TxState): void {
    this.begun.inc({ protocol: s.protocol });
  }

  /** Called after every step that the driver carried out. */
  onStep(before: TxState, after: TxState, effects: Effect[], cause: string): void {
    if (after.outcome && !before.outcome) {
      this.decided.inc({ protocol: after.protocol, outcome: after.outcome, reason: reasonLabel(after.reason) });
      this.toDecision.observe({ protocol: after.protocol, outcome: after.outcome }, ((after.decidedAt ?? 0) - after.createdAt) / 1000);
    }
    if (after.completedAt !== null && before.completedAt === null && after.outcome) {
      this.completed.inc({ protocol: after.protocol, outcome: after.outcome });
      if (after.decidedAt !== null) this.toCompletion.observe({ protocol: after.protocol, outcome: after.outcome }, (after.completedAt - after.decidedAt) / 1000);
    }
    for (const e of effects) {
      if (e.type !== 'send') continue;
      this.sent.inc({ type: e.message.type, cause });
      if (cause === 'resend') this.resends.inc({ type: e.message.type });
    }
  }

  onReceived(type: string): void {
    this.received.inc({ type });
  }

  onDeadLetter(): void {
    this.deadLetters.inc();
  }

  onSendFailed(): void {
    this.sendFailures.inc();
  }

  onAnswerTimeout(ms: number): void {
    this.answerTimeout.set(ms / 1000);
  }

  onResendPostponed(): void {
    this.resendsPostponed.inc();
  }
}

/** Reasons without participant names, so that label values stay few. */
function reasonLabel(reason: string | null): string {
  if (reason === null) return 'none';
  return reason.startsWith('vote-no:') ? 'vote-no' : reason;
}
