import { ExecutionContext, Injectable } from '@nestjs/common';
import { ThrottlerGuard, ThrottlerLimitDetail, ThrottlerModuleOptions } from '@nestjs/throttler';
import { Request } from 'express';
import { CoordinatorConfig } from '../config/config';
import { problem, ProblemException } from './problem';

/**
 * @nestjs/throttler options: TX_RATE_LIMIT_PER_MINUTE requests per client address in each minute,
 * all of /v1 together (fixed window, in this process's memory: each replica counts on its own);
 * 0 turns it off.
 */
export function rateLimitOptions(config: CoordinatorConfig): ThrottlerModuleOptions {
  return {
    throttlers: [{ name: 'default', ttl: 60_000, limit: Math.max(1, config.rateLimitPerMinute) }],
    skipIf: () => config.rateLimitPerMinute === 0,
    // One budget per client for all of /v1 (the library's default key is per route).
    generateKey: (_context, tracker, throttler) => `${throttler}:${tracker}`,
  };
}

/**
 * Limits the REST API under /v1, before the API key is checked (so guessing keys is limited
 * too). Not limited: protocol messages (POST /v1/messages: refusing a vote or an ack would only
 * bring it again, later), health probes, /metrics and /docs. Registered as a global guard.
 * Too many: 429 problem+json with Retry-After (seconds).
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  protected override async shouldSkip(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const path = context.switchToHttp().getRequest<Request>().path;
    return !path.startsWith('/v1/') || path === '/v1/messages' || path.startsWith('/v1/messages/');
  }

  protected override async throwThrottlingException(_context: ExecutionContext, limit: ThrottlerLimitDetail): Promise<void> {
    const retryAfter = Math.max(1, Math.ceil(limit.timeToBlockExpire));
    throw new ProblemException(
      problem(429, 'rate-limited', `Too many requests: at most ${limit.limit} per minute from one client. Retry after ${retryAfter} s.`),
      { 'Retry-After': String(retryAfter) },
    );
  }
}
