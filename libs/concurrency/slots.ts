/**
 * At most `size` holders at once; the others wait in arrival order, each for at most the time it
 * gives. Bounds the work handed to one destination (posts on its connections) so that a busy
 * receiver is fed at the pace it answers, and tells a caller that waited too long apart from one
 * whose work failed.
 */
export class Slots {
  private held = 0;
  private readonly waiting: { grant: () => void; timer: NodeJS.Timeout }[] = [];

  constructor(readonly size: number) {
    if (!(size >= 1)) throw new Error('Slots: size must be at least 1');
  }

  /** Resolves true with a slot held (give it back with release()), or false after waitMs without one. */
  acquire(waitMs: number): Promise<boolean> {
    if (this.held < this.size) {
      this.held++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const entry = {
        grant: () => {
          clearTimeout(entry.timer);
          resolve(true);
        },
        timer: setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(entry), 1);
          resolve(false);
        }, waitMs),
      };
      this.waiting.push(entry);
    });
  }

  /** Hands the slot to the first waiter, if any. */
  release(): void {
    const next = this.waiting.shift();
    if (next) next.grant();
    else this.held--;
  }

  /** Holders now, and callers waiting for a slot. */
  get usage(): { held: number; waiting: number } {
    return { held: this.held, waiting: this.waiting.length };
  }
}
