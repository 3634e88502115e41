/** Resends allowed per second when little or nothing is being answered. */
const MIN_PER_SECOND = 50;

/**
 * Congestion control for resends: in any second, at most as many transactions resend as messages
 * arrived lately (answers: votes, acks), and at least MIN_PER_SECOND. Resends exist for lost
 * messages, which are rare; late ones are common under load, and resending them only adds to the
 * load that made them late. After a crash with thousands in flight, every transaction's first
 * resend would fall due before any answer could come back; the budget turns that flood into a
 * trickle that grows with the answers. A resend over budget waits one more interval.
 */
export class ResendBudget {
  private tokens: number;
  private rate: number;
  private received = 0;
  private windowStart: number;
  private lastRefill: number;

  constructor(private readonly now: () => number = Date.now, private readonly minPerSecond = MIN_PER_SECOND) {
    this.tokens = minPerSecond;
    this.rate = minPerSecond;
    this.windowStart = this.lastRefill = now();
  }

  /** A message arrived from a participant. */
  onReceived(): void {
    this.received++;
  }

  /** True when a resend may go now (and counts it). */
  take(): boolean {
    const now = this.now();
    if (now - this.windowStart >= 1000) {
      this.rate = Math.max(this.minPerSecond, (this.received * 1000) / (now - this.windowStart));
      this.received = 0;
      this.windowStart = now;
    }
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.lastRefill) * this.rate) / 1000);
    this.lastRefill = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}
