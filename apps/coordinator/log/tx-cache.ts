import { TxState } from '../../../libs/engine';

/** A transaction as this process last knew it: the log's row at `version`, and what it holds on top. */
export interface CachedTx {
  /** The transaction as steps here see it: the log's row, or that with held changes. */
  state: TxState;
  /** The state carries changes the log does not have (the engine's `remember`: yes votes or
   * acknowledgements that decide nothing, not written yet); they are all in its participants. */
  held: boolean;
  version: number;
  /** When the log was last known to be at `version` (a read, or the write that made it). */
  checkedAt: number;
}

/**
 * The unfinished transactions this process read, wrote or holds changes of, at most `atMost` (the least
 * recently set go first: losing one costs a read, or a resend for a held change). One checked
 * against the log less than `trustMs` ago is stepped on without reading the log again. That is
 * safe because every durable save still carries the version it was based on (another replica's
 * step in between makes it fail, and the step is redone on the log's row), and a step that does not
 * save only sends what a stale state may send too (a prepare or a decision again); the short trust
 * bounds how long a held change on a stale row goes unnoticed.
 */
export class TxCache {
  private readonly byId = new Map<string, CachedTx>();

  constructor(private readonly atMost: number, private readonly trustMs: number) {}

  get(id: string): CachedTx | undefined {
    return this.byId.get(id);
  }

  trusted(entry: CachedTx, now = Date.now()): boolean {
    return now - entry.checkedAt < this.trustMs;
  }

  /** Keeps `entry` (a finished transaction takes no more steps worth a place: it is dropped instead). */
  set(id: string, entry: CachedTx): void {
    this.byId.delete(id); // to the end of the eviction order
    if (entry.state.completedAt !== null) return;
    this.byId.set(id, entry);
    if (this.byId.size > this.atMost) this.byId.delete(this.byId.keys().next().value as string);
  }

  delete(id: string): void {
    this.byId.delete(id);
  }

  get size(): number {
    return this.byId.size;
  }
}
