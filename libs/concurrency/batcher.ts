export interface BatcherOptions<I> {
  /** Batches under way at once; an item that finds fewer under way goes out at once. */
  maxInFlight: number;
  /** Items in one batch at most. */
  maxItems: number;
  /** With `maxWeight`: a batch's items weigh at most this much together (one heavier item goes alone). */
  weigh?: (item: I) => number;
  maxWeight?: number;
}

interface Waiting<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for any round trip: `run(item)` hands one item to `runBatch` together with every
 * other item that arrives while `maxInFlight` batches are already under way. With nothing under
 * way an item goes out at once, so an idle system pays no delay; under load, many items share one
 * round trip. Items go out in arrival order; with `maxInFlight` 1 batches also finish in that
 * order. `runBatch` answers each item in order (one result per item); when it throws, every item
 * of that batch is rejected with the error, and the next batch goes on.
 */
export class Batcher<I, O> {
  private readonly waiting: Waiting<I, O>[] = [];
  private inFlight = 0;

  constructor(
    private readonly runBatch: (items: I[]) => Promise<O[]>,
    private readonly opts: BatcherOptions<I>,
  ) {
    if (opts.maxInFlight < 1 || opts.maxItems < 1) throw new Error('Batcher: maxInFlight and maxItems must be at least 1');
  }

  run(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (this.inFlight < this.opts.maxInFlight) void this.next();
    });
  }

  /** Items waiting for a batch (not counting those under way). */
  get queued(): number {
    return this.waiting.length;
  }

  private async next(): Promise<void> {
    this.inFlight++;
    try {
      while (this.waiting.length > 0) {
        const batch = this.take();
        try {
          const out = await this.runBatch(batch.map((w) => w.item));
          if (out.length !== batch.length) throw new Error(`Batcher: ${out.length} results for ${batch.length} items`);
          batch.forEach((w, i) => w.resolve(out[i]));
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.inFlight--;
    }
  }

  private take(): Waiting<I, O>[] {
    const { maxItems, weigh, maxWeight } = this.opts;
    if (!weigh || maxWeight === undefined) return this.waiting.splice(0, maxItems);
    let n = 0;
    let weight = 0;
    while (n < this.waiting.length && n < maxItems) {
      const w = weigh(this.waiting[n].item);
      if (n > 0 && weight + w > maxWeight) break;
      weight += w;
      n++;
    }
    return this.waiting.splice(0, n);
  }
}
