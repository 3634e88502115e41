/** The two timers each transaction may have: its vote deadline and its next resend. */
type TimerKind = 'deadline' | 'resend';

interface Entry {
  deadline?: NodeJS.Timeout;
  resend?: NodeJS.Timeout;
  /** Resends since the last progress, for the engine's backoff. */
  attempt: number;
}

/**
 * In-process timers of the transactions this replica drives. Losing them is safe: the sweep finds
 * unfinished transactions that no replica holds timers for and recovers them.
 */
export class TxTimers {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly jitter = 0.2) {}

  set(txId: string, kind: TimerKind, at: number, now: number, fire: (attempt: number) => void, attempt = 0): void {
    const entry = this.entries.get(txId) ?? { attempt: 0 };
    if (entry[kind]) clearTimeout(entry[kind]);
    if (kind === 'resend') entry.attempt = attempt;
    // Jitter spreads resends of many transactions so that they do not arrive in bursts.
    const spread = kind === 'resend' ? 1 + (Math.random() * 2 - 1) * this.jitter : 1;
    const delay = Math.max(0, (at - now) * spread);
    entry[kind] = setTimeout(() => {
      delete entry[kind];
      if (!entry.deadline && !entry.resend) this.entries.delete(txId);
      fire(entry.attempt);
    }, delay);
    entry[kind].unref();
    this.entries.set(txId, entry);
  }

  has(txId: string): boolean {
    return this.entries.has(txId);
  }

  clear(txId: string): void {
    const entry = this.entries.get(txId);
    if (!entry) return;
    clearTimeout(entry.deadline);
    clearTimeout(entry.resend);
    this.entries.delete(txId);
  }

  clearAll(): void {
    for (const id of [...this.entries.keys()]) this.clear(id);
  }

  get size(): number {
    return this.entries.size;
  }
}
