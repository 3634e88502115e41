/**
 * A gate that many wait on and that lets them through a slice at a time: after each slice, the
 * rest wait for the event loop's next turn (`setImmediate`). Opening it to ten thousand waiters
 * at once would run all their continuations in one go, with nothing else (a health check, a
 * consumer's heartbeat or join) answered until they were done.
 */
export class SlicedGate {
  private readonly waiting: (() => void)[] = [];
  private opened = false;

  constructor(private readonly slice: number) {}

  /** Resolves when the gate has opened and this waiter's slice has its turn. */
  wait(): Promise<void> {
    if (this.opened && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Lets the waiters through, in the order they came, a slice per turn of the event loop. */
  open(): void {
    if (this.opened) return;
    this.opened = true;
    this.next();
  }

  private next = (): void => {
    for (const resolve of this.waiting.splice(0, this.slice)) resolve();
    if (this.waiting.length > 0) setImmediate(this.next);
  };
}
