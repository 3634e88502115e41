import { writeSync } from 'node:fs';

/**
 * TEST-ONLY fault injection. With `TX_TEST_CRASH_AT=<point>` (or `<point>@<n>`) a process kills
 * itself with SIGKILL — no clean-up, no flush, exactly like `kill -9` — the n-th time (default: the
 * first) it reaches that point of the protocol. The crash tests (test/crash) use it to stop the
 * coordinator or a participant between two exact steps. Unset, which is the default and the only
 * sane production setting, it does nothing. Each process validates the value against the points it
 * knows at start and refuses to start on an unknown one.
 */
export const CRASH_ENV = 'TX_TEST_CRASH_AT';

export interface CrashSpec<P extends string> {
  point: P;
  /** Crash on the n-th time the point is reached (1 = the first). */
  nth: number;
}

/** Parses `<point>[@<n>]`; returns null when unset, throws a one-line Error naming the variable when invalid. */
export function parseCrashSpec<P extends string>(raw: string | undefined | null, known: readonly P[]): CrashSpec<P> | null {
  if (raw === undefined || raw === null || raw === '') return null;
  const m = /^([a-z-]+)(?:@([1-9]\d{0,5}))?$/.exec(raw);
  if (!m || !(known as readonly string[]).includes(m[1])) {
    throw new Error(`${CRASH_ENV} must be one of ${known.join(', ')}, optionally followed by @<n> (test only; got ${JSON.stringify(raw)})`);
  }
  return { point: m[1] as P, nth: m[2] ? Number(m[2]) : 1 };
}

/** Counts how often each armed point is reached and kills the process at the configured one. */
export class CrashPoints<P extends string> {
  private seen = 0;

  constructor(private readonly spec: CrashSpec<P> | null, private readonly who: string) {}

  /** Whether `point` is the armed one (and its turn may still come). */
  armed(point: P): boolean {
    return this.spec !== null && this.spec.point === point && this.seen < this.spec.nth;
  }

  /** Whether the next `hit(point)` kills the process. */
  isNext(point: P): boolean {
    return this.armed(point) && this.seen + 1 === this.spec!.nth;
  }

  /**
   * Reached `point` where the caller cuts its work short before dying: true on the occurrence
   * that kills (the caller does the part that happens before the crash, then hit()s); an earlier
   * occurrence is counted here and false.
   */
  cutsHere(point: P): boolean {
    if (!this.armed(point)) return false;
    if (this.isNext(point)) return true;
    this.hit(point);
    return false;
  }

  /** Reached `point`: on its n-th time, say so on stderr (synchronously) and die at once. */
  hit(point: P): void {
    if (!this.armed(point)) return;
    this.seen += 1;
    if (this.seen < this.spec!.nth) return;
    writeSync(2, `${CRASH_ENV}: ${this.who} crashing at ${point}@${this.seen} (SIGKILL)\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
