import { TxState } from '../../../libs/engine';

/**
 * A change to a transaction kept in this process only (the engine's `remember`: a yes vote or an
 * acknowledgement that decides nothing), on top of the log's row as it was at `version`.
 */
export interface HeldChange {
  /** The transaction with the held change. */
  state: TxState;
  /** The transaction as the log has it at `version`. */
  saved: TxState;
  version: number;
  /** When the log was last seen at `version` (a read or the write that made it). */
  checkedAt: number;
}

/**
 * Held changes by transaction, at most `atMost` (the oldest go first: losing one costs only a
 * resend). A change checked against the log less than `trustMs` ago is stepped on without reading
 * the log again; another replica's step in between is caught by the version check of the next
 * save, and a trust this short bounds how long a change held on a stale row can go unnoticed.
 */
export class HeldChanges {
  private readonly byId = new Map<string, HeldChange>();

  constructor(private readonly atMost: number, private readonly trustMs: number) {}

  get(id: string): HeldChange | undefined {
    return this.byId.get(id);
  }

  trusted(held: HeldChange, now = Date.now()): boolean {
    return now - held.checkedAt < this.trustMs;
  }

  set(id: string, held: HeldChange): void {
    this.byId.delete(id); // to the end of the eviction order
    this.byId.set(id, held);
    if (this.byId.size > this.atMost) this.byId.delete(this.byId.keys().next().value as string);
  }

  delete(id: string): void {
    this.byId.delete(id);
  }

  get size(): number {
    return this.byId.size;
  }
}
