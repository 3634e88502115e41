import { NextFunction, Request, Response } from 'express';
import { Phase } from '../protocol/lifecycle.service';
import { problem } from './problem';

/** What a client is told to wait before retrying a request refused while shutting down. */
export const SHUTDOWN_RETRY_AFTER_S = 5;

function refuse(res: Response, detail: string): void {
  res
    .status(503)
    .set({ 'Retry-After': String(SHUTDOWN_RETRY_AFTER_S), 'Content-Type': 'application/problem+json', Connection: 'close' })
    .send(JSON.stringify(problem(503, 'shutting-down', detail)));
}

/**
 * Express middleware of graceful shutdown: from SIGTERM on, `POST /v1/transactions` (a new
 * transaction) answers 503 problem+json with Retry-After; once the protocol stops (phase
 * `stopping`), so does every other change under /v1 (enlist, commit, abort, admin actions,
 * protocol messages). Reads are served until the server closes. Nothing refused here was changed.
 */
export function shutdownGate(phase: () => Phase) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const now = phase();
    if (now === 'running' || req.method === 'GET' || req.method === 'HEAD' || !req.path.startsWith('/v1/')) return next();
    if (req.method === 'POST' && /^\/v1\/transactions\/?$/.test(req.path)) {
      return refuse(res, 'The coordinator is shutting down and takes no new transactions; retry (another replica, or this one after its restart).');
    }
    if (now === 'stopping') {
      return refuse(res, 'The coordinator is shutting down; nothing was changed. Retry (another replica, or this one after its restart).');
    }
    next();
  };
}

/** Counts requests being answered, so that shutdown can let them finish before closing the server. */
export class RequestsInProgress {
  private count = 0;
  private readonly idleWaiters = new Set<() => void>();

  readonly middleware = (_req: Request, res: Response, next: NextFunction): void => {
    this.count++;
    let done = false;
    const finished = () => {
      if (done) return;
      done = true;
      if (--this.count === 0) this.idleWaiters.forEach((w) => w());
    };
    res.once('finish', finished);
    res.once('close', finished);
    next();
  };

  /** Resolves when no request is in progress, or after `timeoutMs`; returns how many still are. */
  async idle(timeoutMs: number): Promise<number> {
    if (this.count === 0) return 0;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.idleWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      this.idleWaiters.add(done);
    });
    return this.count;
  }
}
