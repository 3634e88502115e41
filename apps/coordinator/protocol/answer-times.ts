/**
 * How long participants take to answer, as this coordinator sees it: from a step's send to an
 * answer to it (vote or ack), queueing on the way included. TCP's retransmission timer (RFC 6298)
 * applied to resends: a smoothed answer time and its variation, and a timeout of the two together
 * before which an answer is not yet overdue. Under overload answers take seconds, and resending
 * after the fixed first interval (500 ms) doubled the messages that made them late: at concurrency
 * 256 half the prepares were resends and throughput fell to a quarter. Only answers to a first
 * send are samples (Karn): an answer after a resend may be to either send. So that answers slower
 * than the first resend interval are ever sampled, each resend doubles the timeout until the next
 * sample (TCP's back-off, kept for the following sends).
 */
export class AnswerTimes {
  /** `marginMs`: the least an answer may be late beyond the smoothed time (RFC 6298's G; here the first resend interval). */
  constructor(private readonly marginMs = 0) {}

  private smoothed: number | null = null;
  private variation = 0;
  private backedOff = 0;

  /** One answer `ms` after the send it answers. */
  observe(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.backedOff = 0;
    if (this.smoothed === null) {
      this.smoothed = ms;
      this.variation = ms / 2;
      return;
    }
    this.variation = 0.75 * this.variation + 0.25 * Math.abs(this.smoothed - ms);
    this.smoothed = 0.875 * this.smoothed + 0.125 * ms;
  }

  /** A resend went out: the timeout doubles (from at least `floorMs`, to at most `capMs`) until the next sample. */
  backOff(floorMs: number, capMs: number): void {
    this.backedOff = Math.min(capMs, 2 * Math.max(this.timeoutMs(), floorMs));
  }

  /** How long after a send its answer is overdue; 0 before the first sample or resend. */
  timeoutMs(): number {
    const estimate = this.smoothed === null ? 0 : this.smoothed + Math.max(this.marginMs, 4 * this.variation);
    return Math.max(estimate, this.backedOff);
  }
}
