/**
 * How long participants take to answer, as this coordinator sees it: from a step's send to an
 * answer to it (vote or ack), queueing on the way included. TCP's retransmission timer (RFC 6298)
 * applied to resends: a smoothed answer time and its variation, and a timeout of the two together
 * before which an answer is not yet overdue. Under overload answers take seconds, and resending
 * after the fixed first interval (500 ms) doubled the messages that made them late: at concurrency
 * 256 half the prepares were resends and throughput fell to a quarter. Only answers to a first
 * send are samples (Karn): an answer after a resend may be to either send.
 */
export class AnswerTimes {
  private smoothed: number | null = null;
  private variation = 0;

  /** One answer `ms` after the send it answers. */
  observe(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    if (this.smoothed === null) {
      this.smoothed = ms;
      this.variation = ms / 2;
      return;
    }
    this.variation = 0.75 * this.variation + 0.25 * Math.abs(this.smoothed - ms);
    this.smoothed = 0.875 * this.smoothed + 0.125 * ms;
  }

  /** How long after a send its answer is overdue; 0 before the first sample. */
  timeoutMs(): number {
    return this.smoothed === null ? 0 : this.smoothed + 4 * this.variation;
  }
}
