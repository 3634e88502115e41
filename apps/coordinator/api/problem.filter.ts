import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import { Request, Response } from 'express';
import { PinoLogger } from 'nestjs-pino';
import { isStoreUnavailable, retryAfterSeconds } from '../log/store-errors';
import { problem, Problem, ProblemException } from './problem';

const SLUGS: Record<number, string> = { 401: 'unauthorized', 404: 'not-found', 405: 'method-not-allowed', 429: 'rate-limited' };

export { isStoreUnavailable };

/** Every error leaves as application/problem+json (RFC 9457); bad input is a 4xx, never a 5xx. */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  constructor(private readonly logger: PinoLogger) {}

  catch(err: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const res = http.getResponse<Response>();
    const req = http.getRequest<Request & { id?: unknown }>();
    // The request, for lines that say something went wrong (no request-scoped logger: see logger.ts).
    const request = { reqId: req.id, method: req.method, url: req.originalUrl };
    let body: Problem;
    let headers: Record<string, string> = {};
    if (err instanceof ProblemException) {
      body = err.problem;
      headers = err.headers;
    } else if (err instanceof HttpException) {
      const status = err.getStatus();
      const r = err.getResponse();
      const detail = typeof r === 'string' ? r : String((r as { message?: unknown }).message ?? err.message);
      body = problem(status, SLUGS[status] ?? 'http-error', detail);
    } else if (isStoreUnavailable(err)) {
      this.logger.warn({ err: String(err), ...request }, 'decision log unreachable');
      body = problem(503, 'log-store-unavailable', 'The decision log is unreachable; no transaction was left half-changed. Retry later.');
      headers = { 'Retry-After': String(retryAfterSeconds(err)) };
    } else {
      this.logger.error({ err, ...request }, 'unexpected error');
      body = problem(500, 'internal', 'Unexpected error; the request may be retried.');
    }
    res.status(body.status).set({ ...headers, 'Content-Type': 'application/problem+json' }).send(JSON.stringify(body));
  }
}
